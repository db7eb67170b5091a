"""reproduce: an original study at its own settings, from a preset, with its figures checked.

    python -m ae_lightning.studies reproduce fcae   [--out DIR] [--smoke] [--resume] [--accelerator A]
    python -m ae_lightning.studies reproduce keras  [...]
    python -m ae_lightning.studies reproduce all    [...]        # every preset, one report

A preset is ``configs/studies/<name>.yaml``: the original's settings as config overrides under
every run (``config``), the readings chosen where the original is ambiguous (``readings``, each with
the flag that selects the alternative), the existing study modules to run with their parameters
(``studies``: entry name -> ``{study, dataset, variant, epochs, config, <study parameters>}``) and
the original's figures to compare with (``fidelity``: rows ``{id, figure, reference, goal, ours}``,
``ours`` a path into the entries' results, e.g. ``compression.by_latent.8.test.nrmse``).

Each preset writes ``<out>/<name>/``: ``report.md``, ``results.json``, ``fidelity.json``, one folder
per entry (its report, figures and TensorBoard); training runs go to ``--runs-dir``
(default ``<out>/runs``). ``<fidelity-dir>/fidelity.json`` and ``fidelity.md`` (default ``--out``)
gather the rows of every preset finished under ``--out``, with commands, machine and wall times.

``--resume`` reads back the entries already finished under ``--out`` and reuses the training runs
already finished under ``--runs-dir`` with the same config (continuing unfinished ones from their
``last.ckpt``), so a stopped run loses at most one epoch. ``--set PATH=VALUE`` changes the preset,
e.g. ``--set config.data.normalize=standardize_global`` (the alternative readings use it).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ae_lightning import files
from ae_lightning.config import CONFIG_DIR, SECTIONS, UserError, load_yaml, parse_value

PRESET_DIR = CONFIG_DIR / "studies"
GOALS = ("lower", "higher", "order", "within")
ENTRY_KEYS = {"study", "dataset", "variant", "epochs", "config"}
ROW_KEYS = {"id", "figure", "reference", "goal", "ours", "setting", "tolerance", "reference_epochs", "our_epochs"}
SMOKE = {"subset": 512, "test_subset": 256, "epochs": 1}


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ae_lightning.studies reproduce",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="a preset (" + ", ".join(presets()) + ") or all")
    p.add_argument("--out", default="studies/reproduce", help="output folder (default studies/reproduce)")
    p.add_argument("--runs-dir", help="where the training runs go (default <out>/runs)")
    p.add_argument("--fidelity-dir", help="where fidelity.json / fidelity.md of every finished preset go (default --out)")
    p.add_argument("--smoke", action="store_true", help="the same pipeline on a tiny subset, 1 epoch per run")
    p.add_argument("--resume", action="store_true", help="reuse what an earlier call with the same options finished")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, cuda or mps")
    p.add_argument("--data-dir", help="folder holding MNIST/raw and FashionMNIST/raw (default: found automatically)")
    p.add_argument("--only", metavar="ENTRY[,ENTRY]", help="run only these entries of the preset (e.g. two calls "
                   "in parallel on disjoint entries); with --resume the other finished entries are read back, the rest count as "
                   "not run until a later --resume call")
    p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                   help="change the preset, e.g. config.model.lr=0.01 or studies.compression.latents=[4,8]")
    return p


# -- presets ---------------------------------------------------------------------------------------
def load_preset(name: str, sets: list[str]) -> dict:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown preset {name!r}: choose one of {', '.join(presets())}, or all")
    preset = load_yaml(path)
    for item in sets:
        apply_set(preset, item)
    check_preset(name, preset)
    return preset


def apply_set(preset: dict, item: str) -> None:
    """``--set a.b.c=value``: the leaf must exist, except inside a ``config`` section (data, model, trainer)."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected PATH=VALUE, e.g. config.model.lr=0.01")
    path, text = item.split("=", 1)
    keys = path.split(".")
    node: Any = preset
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node:
            if isinstance(node, dict) and key in SECTIONS and i > 0 and keys[i - 1] == "config":
                node[key] = {}
            else:
                raise UserError(f"--set {path}: the preset has no {'.'.join(keys[:i + 1])}")
        node = node[key]
    leaf = keys[-1]
    in_config = len(keys) >= 2 and keys[-2] in SECTIONS
    if not isinstance(node, dict) or (leaf not in node and not in_config):
        raise UserError(f"--set {path}: the preset has no {path}")
    node[leaf] = parse_value(text)


def check_preset(name: str, preset: dict) -> None:
    from ae_lightning.studies import get

    where = f"preset {name}"
    for key in ("title", "dataset", "studies", "fidelity"):
        if key not in preset:
            raise UserError(f"{where}: missing {key!r}")
    if not isinstance(preset["studies"], dict) or not preset["studies"]:
        raise UserError(f"{where}: 'studies' must map entry names to study settings")
    for entry, spec in preset["studies"].items():
        if not isinstance(spec, dict) or "study" not in spec:
            raise UserError(f"{where}: studies.{entry} must name its 'study'")
        get(spec["study"])  # a UserError naming the known studies
    ids = set()
    for row in preset["fidelity"]:
        rid = row.get("id")
        if not rid or rid in ids:
            raise UserError(f"{where}: every fidelity row needs a unique id (got {rid!r})")
        ids.add(rid)
        unknown = set(row) - ROW_KEYS
        if unknown:
            raise UserError(f"{where}: fidelity row {rid}: unknown key(s) {', '.join(sorted(unknown))}")
        if row.get("goal") not in GOALS:
            raise UserError(f"{where}: fidelity row {rid}: goal must be one of {', '.join(GOALS)}")
        if row["goal"] == "within" and not isinstance(row.get("tolerance"), (int, float)):
            raise UserError(f"{where}: fidelity row {rid}: goal within needs a numeric tolerance")
        entry = str(row.get("ours", "")).split(".")[0]
        if entry not in preset["studies"]:
            raise UserError(f"{where}: fidelity row {rid}: 'ours' must start with a studies entry, got {row.get('ours')!r}")


def smoke_preset(preset: dict) -> dict:
    """The same pipeline, tiny: every ``epochs`` capped, the preset's ``smoke.studies`` parameters on top."""
    out = copy.deepcopy(preset)
    smoke = {**SMOKE, **{k: v for k, v in (preset.get("smoke") or {}).items() if k != "studies"}}
    out["smoke_settings"] = smoke

    def cap(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (min(v, smoke["epochs"]) if k == "epochs" and isinstance(v, int) else cap(v)) for k, v in node.items()}
        return [cap(v) for v in node] if isinstance(node, list) else node

    out["epochs"] = min(out.get("epochs", 1), smoke["epochs"])
    out["studies"] = cap(out["studies"])
    for entry, params in ((preset.get("smoke") or {}).get("studies") or {}).items():
        if entry in out["studies"]:
            out["studies"][entry].update(params)
    return out


# -- running ---------------------------------------------------------------------------------------
def flat(nested: dict | None) -> dict[str, Any]:
    """``{model: {lr: 0.01}}`` -> ``{"model.lr": 0.01}`` (``common.overrides_of``)."""
    from ae_lightning.studies.common import overrides_of
    return overrides_of(nested)


def entry_options(preset: dict, entry: str, args, runs_dir: Path):
    from ae_lightning.studies.common import Options

    spec = preset["studies"][entry]
    smoke = preset.get("smoke_settings") or {}
    overrides = {**flat(preset.get("config")), **flat(spec.get("config"))}
    params = {k: v for k, v in spec.items() if k not in ENTRY_KEYS}
    opts = Options(dataset=spec.get("dataset", preset["dataset"]), epochs=spec.get("epochs", preset.get("epochs", 5)),
                   subset=smoke.get("subset"), test_subset=smoke.get("test_subset"), seed=preset.get("seed", 0),
                   out=args.out, accelerator=args.accelerator, data_dir=args.data_dir,
                   variant=spec.get("variant", preset.get("variant")), runs_dir=str(runs_dir),
                   overrides=overrides, params=params, resume=args.resume)
    opts.check()
    return opts


def check_configs(preset: dict, args) -> None:
    """Every run config a preset implies resolves (a bad key fails in a second, not after hours):
    the preset's and the entry's ``config`` over the entry's variant, with each of its ``choices``
    and each of its ``models``."""
    from ae_lightning import config as config_mod

    for entry, spec in preset["studies"].items():
        base = {**flat(preset.get("config")), **flat(spec.get("config")), "data.dataset": spec.get("dataset", preset["dataset"])}
        if args.data_dir:
            base["data.data_dir"] = args.data_dir
        variants = [(spec.get("variant", preset.get("variant")), {})]
        variants += [(spec.get("variant", preset.get("variant")), flat(c)) for c in (spec.get("choices") or {}).values()]
        variants += [(m.get("variant"), flat(m.get("config"))) for m in (spec.get("models") or {}).values()]
        for variant, extra in variants:
            if variant:
                config_mod.load(variant, None, {**base, **extra})


def run_preset(name: str, preset: dict, args, argv: list[str], cache: dict) -> dict:
    """Every entry of one preset, its fidelity rows and its report; returns the preset's summary."""
    from ae_lightning.studies import get
    from ae_lightning.studies.__main__ import check_resumable, run_one
    from ae_lightning.studies.report import load_report

    out = Path(args.out) / name
    runs_dir = Path(args.runs_dir) if args.runs_dir else Path(args.out) / "runs"
    results, sections, walls = {}, [], {}
    t0 = time.time()
    started = out / "started.json"  # the first call's start: a resumed run's elapsed time counts from it
    first = json.loads(started.read_text())["t"] if args.resume and started.is_file() else t0
    files.write_json(started, {"t": first, "utc": datetime.datetime.fromtimestamp(first, datetime.timezone.utc).isoformat()})
    only = set(args.only.split(",")) if args.only else None
    for entry, spec in preset["studies"].items():
        study = get(spec["study"])
        opts = entry_options(preset, entry, args, runs_dir)
        if study.variant is None:
            opts.variant = None  # the study fixes its own models (the preset names them in its parameters)
        done = load_report(out / entry) if args.resume else None
        # results.json holds the entry as JSON wrote it (its number keys, e.g. k = 5, as strings)
        finished = done is not None and done.results.get("preset_entry") == json.loads(json.dumps(spec))
        if only is not None and entry not in only and not finished:
            continue  # not run now; with --resume, an entry outside --only that is finished is read back
        if finished:
            check_resumable(f"{name}/{entry}", done.results.get("settings", {}), opts)
            print(f"== {name}/{entry}: read back from {out / entry}", file=sys.stderr)
            rep, wall = done, done.results.get("wall_time_s")
        else:
            print(f"== {name}/{entry} ({study.name})", file=sys.stderr)
            ctx, wall = run_one(study, opts, out / entry, cache, [], preset_entry=spec)
            rep = ctx.report
        results[entry] = rep.results
        walls[entry] = wall
        # several entries may run one study (a second seed, another reading): the heading names the entry
        shared = sum(e["study"] == spec["study"] for e in preset["studies"].values()) > 1
        heading = f"## {rep.title}" + (f" (`{entry}`)" if shared else "")
        sections.append(heading + "\n\n" + rep.render(level=2, image_prefix=f"{entry}/", title=False))
    rows = fidelity_rows(name, preset, results, command(argv))
    wall = sum(w for w in walls.values() if w is not None)  # each entry's own time, read back or run now
    # a call that reuses finished runs takes minutes: the runs' own times, recorded when each trained
    trained = {r["run_dir"]: r.get("wall_time_s") or 0.0 for res in results.values() for r in res.get("runs", [])
               if r.get("run_dir")}
    summary = {"preset": name, "title": preset["title"], "source": preset.get("source"), "command": command(argv),
               "smoke": bool(args.smoke), "wall_time_s": round(wall, 1),
               "runs": len(trained), "training_time_s": round(sum(trained.values()), 1),
               "elapsed_since_first_call_s": round(time.time() - first, 1),
               "entry_wall_time_s": walls, "machine": machine(), "date": today(), "rows": rows}
    files.write_json(out / "fidelity.json", rows)
    files.write_json(out / "results.json", {**{k: v for k, v in summary.items() if k != "rows"},
                                            "preset": preset, "studies": results})
    files.write_text(out / "report.md", render_preset(preset, summary, sections))
    files.write_json(out / "summary.json", summary)
    print(f"{name}: {sum(r['matched'] for r in rows)} of {len(rows)} figures matched "
          f"({wall / 60:.1f} min) -> {out / 'report.md'}", file=sys.stderr)
    return summary


def command(argv: list[str]) -> str:
    return "python -m ae_lightning.studies reproduce " + shlex.join([a for a in argv if a != "--resume"])


def machine() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    try:
        import lightning
        lv = lightning.__version__
    except ImportError:  # pragma: no cover
        lv = "?"
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, {dev}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, lightning {lv}")


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# -- fidelity --------------------------------------------------------------------------------------
def lookup(results: dict, path: str) -> Any:
    """``entry.key.key``: dict keys as written or as ints (results read back have string keys);
    list positions as integers, negative from the end."""
    node: Any = results
    for key in path.split("."):
        if isinstance(node, dict):
            for cand in (key, _int(key), str(key)):
                if cand is not None and cand in node:
                    node = node[cand]
                    break
            else:
                return None
        elif isinstance(node, list) and _int(key) is not None and -len(node) <= _int(key) < len(node):
            node = node[_int(key)]
        else:
            return None
    return node


def _int(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def judge(goal: str, ours: Any, reference: Any, tolerance: float | None = None) -> bool:
    if ours is None or (isinstance(ours, float) and not math.isfinite(ours)):
        return False
    if goal == "order":
        return ours == reference
    if not isinstance(ours, (int, float)):
        return False
    if goal == "lower":
        return ours <= reference
    if goal == "higher":
        return ours >= reference
    return abs(ours - reference) <= tolerance


def fidelity_rows(name: str, preset: dict, results: dict, cmd: str) -> list[dict]:
    rows = []
    for row in preset["fidelity"]:
        entry = row["ours"].split(".")[0]
        spec = preset["studies"][entry]
        ours = lookup(results, row["ours"])
        rows.append({
            "id": row["id"], "study": name, "figure": row.get("figure", row["id"]),
            "setting": row.get("setting", preset.get("setting", "")),
            "reference": row["reference"], "ours": ours, "goal": row["goal"],
            **({"tolerance": row["tolerance"]} if "tolerance" in row else {}),
            "reference_epochs": row.get("reference_epochs", preset.get("reference_epochs")),
            "our_epochs": row.get("our_epochs", spec.get("epochs", preset.get("epochs"))),
            "matched": judge(row["goal"], ours, row["reference"], row.get("tolerance")),
            "command": cmd,
        })
    return rows


def cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return " < ".join(map(str, v))
    if isinstance(v, bool):
        return "true" if v else "false"
    return "—" if v is None else str(v)


def rows_table(rows: list[dict]) -> str:
    head = "| id | figure | reference | ours | goal | epochs (ref / ours) | matched |\n|---|---|---|---|---|---|---|"
    body = [f"| `{r['id']}` | {r['figure']} | {cell(r['reference'])} | {cell(r['ours'])} | {r['goal']}"
            + (f" ±{r['tolerance']:g}" if r.get("tolerance") is not None else "")
            + f" | {cell(r['reference_epochs'])} / {cell(r['our_epochs'])} | {'**yes**' if r['matched'] else 'no'} |"
            for r in rows]
    return "\n".join([head, *body])


def render_preset(preset: dict, summary: dict, sections: list[str]) -> str:
    lines = [f"# Reproduction: {preset['title']}", ""]
    if preset.get("source"):
        lines += [f"Original: `../shared/seeds/{preset['source']}`.", ""]
    if preset.get("description"):
        lines += [preset["description"].strip(), ""]
    lines += [f"Command: `{summary['command']}`" + (" (smoke: tiny subset, 1 epoch per run)" if summary["smoke"] else ""),
              "", f"Machine: {summary['machine']}. Date: {summary['date']}. {_elapsed(summary)}Wall time of the studies: "
              f"{summary['wall_time_s'] / 60:.1f} min (" + ", ".join(
                  f"{k} {v / 60:.1f} min" for k, v in summary["entry_wall_time_s"].items() if v is not None) + "). "
              + _training(summary), "",
              "Settings under every run (`config`): `" + json.dumps(preset.get("config") or {}) + "`", ""]
    if preset.get("readings"):
        lines += ["## Readings of the original", "",
                  "| where the original is ambiguous | reading chosen | why | the alternative |", "|---|---|---|---|"]
        lines += [f"| {r.get('ambiguity', '')} | {r.get('chosen', '')} | {r.get('why', '')} | `{r.get('alternative', '')}` |"
                  for r in preset["readings"]]
        lines.append("")
    matched = sum(r["matched"] for r in summary["rows"])
    lines += ["## Figures of the original", "", f"{matched} of {len(summary['rows'])} matched.", "",
              rows_table(summary["rows"]), ""]
    return "\n".join(lines) + "\n" + "\n".join(sections)


def _training(summary: dict) -> str:
    if not summary.get("runs"):
        return ""
    return (f"Training time of its {summary['runs']} runs, as each run recorded it when it trained "
            f"(a `--resume` call reuses them): {summary['training_time_s'] / 60:.1f} min.")


def _elapsed(summary: dict) -> str:
    e = summary.get("elapsed_since_first_call_s")
    if e is None or e <= summary["wall_time_s"] + 1:
        return ""
    return f"Elapsed since the first call (continued with --resume): {e / 60:.1f} min; "


def write_fidelity(out: Path, target: Path) -> list[dict]:
    """``fidelity.json`` / ``fidelity.md`` over every preset finished under ``out``."""
    summaries = []
    for name in presets():
        path = out / name / "summary.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text()))
    rows = [r for s in summaries for r in s["rows"]]
    files.write_json(target / "fidelity.json", rows)
    md = ["# Fidelity: our figures against the original studies'", "",
          "Generated by `reproduce` (`ae_lightning/studies/reproduce.py`) from the presets in `configs/studies/`. "
          "`goal`: lower / higher, ours at or below / above the reference; within, inside the tolerance; order, the same "
          "ranking (or the same yes/no). A row that misses stays in the table; the study reports explain why.", ""]
    for s in summaries:
        md += [f"## {s['title']}", "", f"- command: `{s['command']}`" + (" (**smoke**)" if s.get("smoke") else ""),
               f"- machine: {s['machine']}", f"- date: {s['date']}",
               f"- {_elapsed(s)}wall time of the studies: {s['wall_time_s'] / 60:.1f} min (" + ", ".join(
                   f"{k} {v / 60:.1f} min" for k, v in s["entry_wall_time_s"].items() if v is not None) + ")",
               *([f"- {_training(s)}"] if s.get("runs") else []),
               f"- report: [{s['preset']}/report.md]({os.path.relpath(out / s['preset'] / 'report.md', target)})", "",
               f"{sum(r['matched'] for r in s['rows'])} of {len(s['rows'])} matched.", "",
               rows_table(s["rows"]), ""]
    files.write_text(target / "fidelity.md", "\n".join(md))
    return rows


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    names = presets() if args.name == "all" else [args.name]
    loaded = {n: load_preset(n, args.set) for n in names}
    if args.smoke:
        loaded = {n: smoke_preset(p) for n, p in loaded.items()}
    for n, p in loaded.items():
        check_configs(p, args)
        unknown = set(args.only.split(",")) - set(p["studies"]) if args.only else set()
        if unknown:
            raise UserError(f"--only {args.only}: preset {n} has no {', '.join(sorted(unknown))} "
                            f"(its entries: {', '.join(p['studies'])})")
    cache: dict = {}
    summaries = [run_preset(n, p, args, argv, cache) for n, p in loaded.items()]
    out = Path(args.out)
    rows = write_fidelity(out, Path(args.fidelity_dir) if args.fidelity_dir else out)
    if args.name == "all":
        files.write_text(out / "report.md", "# Reproductions of the original studies\n\n" + "\n".join(
            f"- [{s['title']}]({s['preset']}/report.md): {sum(r['matched'] for r in s['rows'])} of {len(s['rows'])} "
            f"figures matched, {s['wall_time_s'] / 60:.1f} min" for s in summaries) + "\n")
    print(f"{sum(r['matched'] for r in rows)} of {len(rows)} figures matched; "
          f"{(Path(args.fidelity_dir) if args.fidelity_dir else out) / 'fidelity.md'}")
    return 0
