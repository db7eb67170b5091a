"""reproduce: an original study at its own settings, from a preset, with its figures checked.

    python -m ae_lightning.studies reproduce fcae   [--out DIR] [--smoke] [--resume] [--accelerator A]
    python -m ae_lightning.studies reproduce keras  [...]
    python -m ae_lightning.studies reproduce all    [...]        # every preset, one report

A preset is ``configs/studies/<name>.yaml``: the original's settings as config overrides under
every run (``config``), the readings chosen where the original is ambiguous (``readings``, each with
the flag that selects the alternative), the existing study modules to run with their parameters
(``studies``: entry name -> ``{study, dataset, variant, epochs, config, <study parameters>}``) and
the original's figures to compare with (``fidelity``: rows ``{id, figure, reference, goal, ours}``,
``ours`` a path into the entries' results, e.g. ``compression.by_latent.8.test.nrmse``), with the
measured cause of each miss beside its row (``findings``: row id -> ``{cause, alternative, command}``).

``--seeds 0,1,2`` (or the preset's ``seeds``) runs every entry at each seed (an entry whose
``config`` sets ``seed`` runs at that one): the preset's own seed into ``<entry>/``, another into
``<entry>.seed<s>/``. A row then holds ``seeds`` and ``values`` and its ``ours`` is their median, or
for an order row the majority (``ae_lightning/studies/fidelity.py``).

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
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ae_lightning import dotted, files, resolve
from ae_lightning.config import CONFIG_DIR, SECTIONS, load_yaml, parse_value
from ae_lightning.config import nearest as config_nearest
from ae_lightning.errors import UserError
from ae_lightning.studies import get
from ae_lightning.studies.common import Options, overrides_of
from ae_lightning.studies.fidelity import (
    GOALS,
    check_findings,
    elapsed,
    fidelity_rows,
    matched_text,
    rows_table,
    training,
    write_fidelity,
)
from ae_lightning.studies.report import load_report
from ae_lightning.studies.runner import check_resumable, run_one
from ae_lightning.studies.seeds import base_seed, check_seeds, entry_runs, parse_seeds, run_seeds, same_entry

PRESET_DIR = CONFIG_DIR / "studies"
ENTRY_KEYS = ("study", "dataset", "variant", "epochs", "config", "seeds")  # an entry's keys beside its study's Params
PRESET_KEYS = ("title", "dataset", "studies", "fidelity", "config", "description", "epochs", "findings", "readings",
               "reference_epochs", "setting", "smoke", "source", "variant", "seeds")
SMOKE_KEYS = ("epochs", "subset", "test_subset", "studies")
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
    p.add_argument("--smoke", action="store_true", help="the same pipeline on a tiny subset, 1 epoch per run, at "
                   "the preset's own seed (unless --seeds); its fidelity rows are marked smoke, not judged")
    p.add_argument("--resume", action="store_true", help="reuse what an earlier call with the same options finished")
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu, cuda or mps")
    p.add_argument("--data-dir", help="folder holding MNIST/raw and FashionMNIST/raw (default: found automatically)")
    p.add_argument("--only", metavar="ENTRY[,ENTRY]", help="run only these entries of the preset (e.g. two calls "
                   "in parallel on disjoint entries); with --resume the other finished entries are read back, the rest count as "
                   "not run until a later --resume call")
    p.add_argument("--seeds", metavar="S[,S]", help="run every row's runs at each of these seeds (e.g. 0,1,2; default "
                   "the preset's seeds, else its one seed): ours is the median, or an order row's majority; --resume "
                   "reuses the seeds already finished")
    p.add_argument("--verbose", action="store_true", help="Lightning's banners and repeated warnings too")
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
    """``--set a.b.c=value``: the leaf must exist, except inside a ``config`` section (data, model, trainer)
    and for a study parameter (``studies.ENTRY.KEY``), which the study's ``Params`` then checks."""
    path, text = dotted.parse_set(item, "PATH=VALUE, e.g. config.model.lr=0.01", quoted=True)
    keys = dotted.split(path)
    node: Any = preset
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node:
            if isinstance(node, dict) and key in SECTIONS and i > 0 and keys[i - 1] == "config":
                node[key] = {}
            else:
                raise UserError(f"--set {path}: the preset has no {dotted.join(*keys[:i + 1])}")
        node = node[key]
    leaf = keys[-1]
    in_config = len(keys) >= 2 and keys[-2] in SECTIONS
    study_param = len(keys) == 3 and keys[0] == "studies"
    if not isinstance(node, dict) or (leaf not in node and not in_config and not study_param):
        raise UserError(f"--set {path}: the preset has no {path}")
    node[leaf] = parse_value(text)


def check_preset(name: str, preset: dict) -> None:
    where = f"preset {name}"
    for key in ("title", "dataset", "studies", "fidelity"):
        if key not in preset:
            raise UserError(f"{where}: missing {key!r}")
    unknown_key(where, "", preset, PRESET_KEYS)
    if not isinstance(preset["studies"], dict) or not preset["studies"]:
        raise UserError(f"{where}: 'studies' must map entry names to study settings")
    for entry, spec in preset["studies"].items():
        if not isinstance(spec, dict) or "study" not in spec:
            raise UserError(f"{where}: studies.{entry} must name its 'study'")
        entry_params(where, entry, spec)
        if "seeds" in spec:
            check_seeds(spec["seeds"], f"{where}: studies.{entry}.seeds")
    smoke = preset.get("smoke") or {}
    if not isinstance(smoke, dict):
        raise UserError(f"{where}: smoke must be a mapping, got {smoke!r}")
    unknown_key(where, "smoke.", smoke, SMOKE_KEYS)
    for entry, params in (smoke.get("studies") or {}).items():  # checked on their own: they cannot mask a key
        if entry not in preset["studies"]:
            raise UserError(f"{where}: smoke.studies.{entry}: no such entry{config_nearest(entry, preset['studies'])} "
                            f"(entries: {', '.join(preset['studies'])})")
        get(preset["studies"][entry]["study"]).make_params(params, f"smoke.studies.{entry}", prefix=f"{where}: ")
    if "seeds" in preset:
        check_seeds(preset["seeds"], f"{where}: seeds")
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
        entry = dotted.split(str(row.get("ours", "")))[0]
        if entry not in preset["studies"]:
            raise UserError(f"{where}: fidelity row {rid}: 'ours' must start with a studies entry, got {row.get('ours')!r}")
    check_findings(where, preset.get("findings"), ids)


def unknown_key(where: str, prefix: str, node: dict, valid: tuple[str, ...]) -> None:
    for key in node:
        if key not in valid:
            raise UserError(f"{where}: unknown key {prefix}{key}{config_nearest(str(key), valid)}; "
                            f"valid keys: {', '.join(sorted(valid))}")


def entry_params(where: str, entry: str, spec: dict):
    """The entry's study parameters (its keys beside ``ENTRY_KEYS``), typed by its study's ``Params``."""
    study = get(spec["study"])  # a UserError naming the known studies
    return study.make_params({k: v for k, v in spec.items() if k not in ENTRY_KEYS}, f"studies.{entry}",
                             also=ENTRY_KEYS, prefix=f"{where}: ")


def smoke_preset(preset: dict) -> dict:
    """The same pipeline, tiny: every ``epochs`` capped, every ``batch_size`` too (at the smoke subset: a
    batch larger than the training split is refused), the preset's ``smoke.studies`` parameters on top, at the
    preset's own seed (its ``seeds`` dropped; ``--seeds`` still runs more)."""
    out = copy.deepcopy(preset)
    smoke = {**SMOKE, **{k: v for k, v in (preset.get("smoke") or {}).items() if k != "studies"}}
    out["smoke_settings"] = smoke

    def cap(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (min(v, smoke["epochs"]) if k == "epochs" and isinstance(v, int) else
                        min(v, smoke["subset"]) if k == "batch_size" and isinstance(v, int) and smoke.get("subset")
                        else cap(v)) for k, v in node.items()}
        return [cap(v) for v in node] if isinstance(node, list) else node

    out.pop("seeds", None)  # one seed, the preset's own: a smoke run checks the pipeline (--seeds still asks for more)
    out["epochs"] = min(out.get("epochs", 1), smoke["epochs"])
    out["studies"] = cap(out["studies"])
    if isinstance(out.get("config"), dict):
        out["config"] = cap(out["config"])
    for entry, params in ((preset.get("smoke") or {}).get("studies") or {}).items():
        if entry in out["studies"]:
            out["studies"][entry].update(params)
    return out


# -- running ---------------------------------------------------------------------------------------
def entry_options(preset: dict, entry: str, args, runs_dir: Path, seed: int | None = None):
    spec = preset["studies"][entry]
    smoke = preset.get("smoke_settings") or {}
    overrides = {**overrides_of(preset.get("config")), **overrides_of(spec.get("config"))}
    params = {k: v for k, v in spec.items() if k not in ENTRY_KEYS}
    opts = Options(dataset=spec.get("dataset", preset["dataset"]), epochs=spec.get("epochs", preset.get("epochs", 5)),
                   subset=smoke.get("subset"), test_subset=smoke.get("test_subset"),
                   seed=base_seed(preset) if seed is None else seed,
                   out=args.out, accelerator=args.accelerator, data_dir=args.data_dir,
                   variant=spec.get("variant", preset.get("variant")), runs_dir=str(runs_dir),
                   overrides=overrides, params=params, resume=args.resume)
    opts.check()
    return opts


def check_configs(preset: dict, args) -> None:
    """Every run config a preset implies resolves (a bad key fails in a second, not after hours):
    the preset's and the entry's ``config`` over the entry's variant, with each of its ``choices``
    and each of its ``models``."""
    for entry, spec in preset["studies"].items():
        base = {**overrides_of(preset.get("config")), **overrides_of(spec.get("config")),
                "data.dataset": spec.get("dataset", preset["dataset"])}
        if args.data_dir:
            base["data.data_dir"] = args.data_dir
        variants = [(spec.get("variant", preset.get("variant")), {})]
        variants += [(spec.get("variant", preset.get("variant")), overrides_of(c)) for c in (spec.get("choices") or {}).values()]
        variants += [(m.get("variant"), overrides_of(m.get("config"))) for m in (spec.get("models") or {}).values()]
        for variant, extra in variants:
            if variant:
                resolve.load(variant, None, {**base, **extra})


def run_preset(name: str, preset: dict, args, argv: list[str], cache: dict) -> dict:
    """Every entry of one preset, its fidelity rows and its report; returns the preset's summary."""
    out = Path(args.out) / name
    runs_dir = Path(args.runs_dir) if args.runs_dir else Path(args.out) / "runs"
    results, sections, walls = {}, [], {}
    t0 = time.time()
    started = out / "started.json"  # the first call's start: a resumed run's elapsed time counts from it
    first = json.loads(started.read_text())["t"] if args.resume and started.is_file() else t0
    files.write_json(started, {"t": first, "utc": datetime.datetime.fromtimestamp(first, datetime.timezone.utc).isoformat()})
    only = set(args.only.split(",")) if args.only else None
    seeds = run_seeds(preset, args)
    trained_now = False
    by_seed: dict[int, dict] = {}
    entry_seeds: dict[str, list[int]] = {}
    for entry, spec in preset["studies"].items():
        study = get(spec["study"])
        runs = entry_runs(preset, entry, seeds)
        for seed, opt_seed, folder in runs:
            opts = entry_options(preset, entry, args, runs_dir, opt_seed)
            if study.variant is None:
                opts.variant = None  # the study fixes its own models (the preset names them in its parameters)
            done = load_report(out / folder) if args.resume else None
            # results.json holds the entry as JSON wrote it (its number keys, e.g. k = 5, as strings)
            finished = done is not None and same_entry(done.results.get("preset_entry"), spec)
            if only is not None and entry not in only and not finished:
                continue  # not run now; with --resume, an entry outside --only that is finished is read back
            if done is not None and finished:
                check_resumable(f"{name}/{folder}", done.results.get("settings", {}), opts)
                print(f"== {name}/{folder}: read back from {out / folder}", file=sys.stderr)
                rep, wall = done, done.results.get("wall_time_s")
            else:
                print(f"== {name}/{folder} ({study.name})", file=sys.stderr)
                ctx, wall = run_one(study, opts, out / folder, cache, [], preset_entry=spec)
                rep = ctx.report
                trained_now = True
            by_seed.setdefault(seed, {})[entry] = rep.results
            entry_seeds.setdefault(entry, []).append(seed)
            results.setdefault(entry, rep.results)  # results.json "studies": each entry's first seed
            walls[folder] = wall
            # several entries may run one study (a second seed, another reading): the heading names the entry
            shared = sum(e["study"] == spec["study"] for e in preset["studies"].values()) > 1
            heading = (f"## {rep.title}" + (f" (`{entry}`)" if shared else "")
                       + (f", seed {seed}" if len(runs) > 1 else ""))
            sections.append(heading + "\n\n" + rep.render(level=2, image_prefix=f"{folder}/", title=False))
    rows = fidelity_rows(name, preset, by_seed, entry_seeds, command(argv))
    missing = [r["id"] for r in rows if not r["matched"] and not r.get("smoke") and "finding" not in r]
    if missing:
        print(f"{name}: unmatched rows without a finding: {', '.join(missing)}", file=sys.stderr)
    wall = sum(w for w in walls.values() if w is not None)  # each entry's own time, read back or run now
    # a call that reuses finished runs takes minutes: the runs' own times, recorded when each trained
    trained = {r["run_dir"]: r.get("wall_time_s") or 0.0 for per_seed in by_seed.values() for res in per_seed.values()
               for r in res.get("runs", []) if r.get("run_dir")}
    summary = {"preset": name, "title": preset["title"], "source": preset.get("source"), "command": command(argv),
               "smoke": bool(args.smoke), "seeds": seeds, "wall_time_s": round(wall, 1),
               "runs": len(trained), "training_time_s": round(sum(trained.values()), 1),
               "elapsed_since_first_call_s": round(time.time() - first, 1),
               "entry_wall_time_s": walls, "machine": machine(), "date": today(), "rows": rows}
    if not trained_now and (out / "summary.json").is_file():
        # a re-render (every entry read back): the measuring call's machine, date and elapsed time stay
        before = json.loads((out / "summary.json").read_text())
        summary.update({k: before[k] for k in ("elapsed_since_first_call_s", "machine", "date") if k in before},
                       rendered=today())
    files.write_json(out / "fidelity.json", rows)
    files.write_json(out / "results.json", {**{k: v for k, v in summary.items() if k != "rows"},
                                            "preset": preset, "studies": results,
                                            "studies_by_seed": {str(k): d for k, v in by_seed.items() if (d := {
                                                e: r for e, r in v.items() if results.get(e) is not r})}})
    files.write_text(out / "report.md", render_preset(preset, summary, sections))
    files.write_json(out / "summary.json", summary)
    print(f"{name}: {matched_text(rows, 'figures ')} "
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


def render_preset(preset: dict, summary: dict, sections: list[str]) -> str:
    lines = [f"# Reproduction: {preset['title']}", ""]
    if preset.get("source"):
        lines += [f"Original: {preset['source']}.", ""]  # cited by its title: a user's clone has no copy of it
    if preset.get("description"):
        lines += [preset["description"].strip(), ""]
    lines += [f"Command: `{summary['command']}`" + (" (smoke: tiny subset, 1 epoch per run)" if summary["smoke"] else ""),
              "", f"Machine: {summary['machine']}. Date: {summary['date']}"
              + (f" (re-rendered from its results on {summary['rendered']})" if summary.get("rendered") else "")
              + f". {elapsed(summary)}Wall time of the studies: "
              f"{summary['wall_time_s'] / 60:.1f} min (" + ", ".join(
                  f"{k} {v / 60:.1f} min" for k, v in summary["entry_wall_time_s"].items() if v is not None) + "). "
              + training(summary), "",
              "Settings under every run (`config`): `" + json.dumps(preset.get("config") or {}) + "`", ""]
    if preset.get("readings"):
        lines += ["## Readings of the original", "",
                  "| where the original is ambiguous | reading chosen | why | the alternative |", "|---|---|---|---|"]
        lines += [f"| {r.get('ambiguity', '')} | {r.get('chosen', '')} | {r.get('why', '')} | `{r.get('alternative', '')}` |"
                  for r in preset["readings"]]
        lines.append("")
    lines += ["## Figures of the original", "", f"{matched_text(summary['rows'])}.", "",
              rows_table(summary["rows"]), ""]
    return "\n".join(lines) + "\n" + "\n".join(sections)


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    parse_seeds(args.seeds)  # a bad list fails before anything loads
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
    rows = write_fidelity(out, Path(args.fidelity_dir) if args.fidelity_dir else out, presets())
    if args.name == "all":
        files.write_text(out / "report.md", "# Reproductions of the original studies\n\n" + "\n".join(
            f"- [{s['title']}]({s['preset']}/report.md): {matched_text(s['rows'], 'figures ')}, "
            f"{s['wall_time_s'] / 60:.1f} min" for s in summaries) + "\n")
    print(f"{matched_text(rows, 'figures ')}; "
          f"{(Path(args.fidelity_dir) if args.fidelity_dir else out) / 'fidelity.md'}")
    return 0
