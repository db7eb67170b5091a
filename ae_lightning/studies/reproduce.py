"""reproduce: an original study at its own settings, from a preset, with its figures checked.

The command's flags and presets are read and checked by ``ae_lightning.studies.presets`` (before torch is
imported; its ``HELP`` is the command's help and describes the preset format and the outputs); this module runs
the checked presets: every entry at every seed through the study code, then the fidelity rows and the reports.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from ae_lightning import files
from ae_lightning.errors import UserError
from ae_lightning.studies import get
from ae_lightning.studies.common import Context, Options
from ae_lightning.studies.fidelity import elapsed, fidelity_rows, matched_text, rows_table, training, write_fidelity
from ae_lightning.studies.presets import ENTRY_KEYS, overrides_of, prepare, presets
from ae_lightning.studies.runner import check_resumable, read_results, render, run_one
from ae_lightning.studies.seeds import base_seed, entry_runs, run_seeds, same_entry


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


def run_preset(name: str, preset: dict, args, argv: list[str], cache: dict) -> dict:
    """Every entry of one preset, its fidelity rows and its report; returns the preset's summary."""
    out = Path(args.out) / name
    runs_dir = Path(args.runs_dir) if args.runs_dir else Path(args.out) / "runs"
    sections, walls, by_seed, entry_seeds = [], {}, {}, {}
    t0 = time.time()
    started = out / "started.json"  # the first call's start: a resumed run's elapsed time counts from it
    first = json.loads(started.read_text())["t"] if (args.resume or args.render_only) and started.is_file() else t0
    if not args.render_only:
        files.write_json(started, {"t": first, "utc": datetime.datetime.fromtimestamp(first, datetime.timezone.utc).isoformat()})
    only = set(args.only.split(",")) if args.only else None
    seeds = run_seeds(preset, args)
    trained_now = False
    for entry, spec in preset["studies"].items():
        study = get(spec["study"])
        runs = entry_runs(preset, entry, seeds)
        for seed, opt_seed, folder in runs:
            opts = entry_options(preset, entry, args, runs_dir, opt_seed)
            if study.variant is None:
                opts.variant = None  # the study fixes its own models (the preset names them in its parameters)
            done = read_results(out / folder) if args.resume or args.render_only else None
            if args.render_only and done is None:
                raise UserError(f"--render-only: {out / folder} holds no results.json (measure it: "
                                f"`{command(argv)} --resume`)")
            # results.json holds the entry as JSON wrote it (its number keys, e.g. k = 5, as strings)
            finished = done is not None and (args.render_only or same_entry(done.get("preset_entry"), spec))
            if only is not None and entry not in only and not finished:
                continue  # not run now; with --resume, an entry outside --only that is finished is read back
            rep, wall, ran = _read_back_or_run(f"{name}/{folder}", out / folder, study, opts, spec,
                                               done if finished else None, cache, args)
            trained_now = trained_now or ran
            by_seed.setdefault(seed, {})[entry] = rep.results
            entry_seeds.setdefault(entry, []).append(seed)
            walls[folder] = wall
            # several entries may run one study (a second seed, another reading): the heading names the entry
            shared = sum(e["study"] == spec["study"] for e in preset["studies"].values()) > 1
            heading = (f"## {rep.title}" + (f" (`{entry}`)" if shared else "")
                       + (f", seed {seed}" if len(runs) > 1 else ""))
            sections.append(heading + "\n\n" + rep.render(level=2, image_prefix=f"{folder}/", title=False))
    summary = _summary(name, preset, args, argv, (first, seeds, walls, by_seed, entry_seeds), trained_now)
    _write_preset(out, preset, summary, by_seed, entry_seeds, sections)
    print(f"{name}: {matched_text(summary['rows'], 'figures ')} "
          f"({summary['wall_time_s'] / 60:.1f} min) -> {out / 'report.md'}", file=sys.stderr)
    return summary


def _summary(name: str, preset: dict, args, argv: list[str], measured: tuple, trained_now: bool) -> dict:
    """The preset's summary and fidelity rows. A call that trained nothing (every entry read back) is a
    re-render: the measuring call's command, machine, date and times stay (its walls counted the rendering)."""
    first, seeds, walls, by_seed, entry_seeds = measured
    path = Path(args.out) / name / "summary.json"
    before = json.loads(path.read_text()) if not trained_now and path.is_file() else {}
    kept = {k: before[k] for k in ("command", "elapsed_since_first_call_s", "machine", "date", "wall_time_s",
                                   "entry_wall_time_s") if k in before}
    rows = fidelity_rows(name, preset, by_seed, entry_seeds, kept.get("command") or command(argv))
    missing = [r["id"] for r in rows if not r["matched"] and not r.get("smoke") and "finding" not in r]
    if missing:
        print(f"{name}: unmatched rows without a finding: {', '.join(missing)}", file=sys.stderr)
    wall = sum(w for w in walls.values() if w is not None)  # each entry's own time, read back or run now
    trained = trained_runs(by_seed)
    return {"preset": name, "title": preset["title"], "source": preset.get("source"), "command": command(argv),
            "smoke": bool(args.smoke), "seeds": seeds, "wall_time_s": round(wall, 1),
            "runs": len(trained), "training_time_s": round(sum(trained.values()), 1),
            "elapsed_since_first_call_s": round(time.time() - first, 1),
            "entry_wall_time_s": walls, "machine": machine(), "date": today(), "rows": rows,
            **kept, **({"rendered": today()} if before else {})}


def _read_back_or_run(label: str, folder: Path, study, opts, spec: dict, done, cache: dict, args) -> tuple:
    """One run of an entry: its finished results ``done`` rendered again (their settings checked against
    ``opts``), or, without them, the study run now; returns the report, its wall time and whether it trained now."""
    if done is not None:
        check_resumable(label, done.get("settings", {}), opts, "--render-only" if args.render_only else "--resume")
        print(f"== {label}: read back from {folder}", file=sys.stderr)
        return render(Context(study, opts, folder, tensorboard=False)), done.get("wall_time_s"), False
    print(f"== {label} ({study.name})", file=sys.stderr)
    rep, wall = run_one(study, opts, folder, cache, [], preset_entry=spec)
    return rep, wall, True


def _write_preset(out: Path, preset: dict, summary: dict, by_seed: dict, entry_seeds: dict, sections: list[str]) -> None:
    """The preset's files: fidelity.json, results.json (each entry's first seed, the other seeds apart),
    report.md and summary.json."""
    results = {e: by_seed[s[0]][e] for e, s in entry_seeds.items()}
    files.write_json(out / "fidelity.json", summary["rows"])
    files.write_json(out / "results.json", {**{k: v for k, v in summary.items() if k != "rows"},
                                            "preset": preset, "studies": results,
                                            "studies_by_seed": {str(k): d for k, v in by_seed.items() if (d := {
                                                e: r for e, r in v.items() if results.get(e) is not r})}})
    files.write_text(out / "report.md", render_preset(preset, summary, sections))
    files.write_json(out / "summary.json", summary)


def command(argv: list[str]) -> str:
    return "python -m ae_lightning.studies reproduce " + shlex.join([a for a in argv if a not in ("--resume", "--render-only")])


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


def trained_runs(by_seed: dict[int, dict]) -> dict[tuple[int, str], float]:
    """Each training run once, with the time it recorded when it trained (a call that reuses finished runs
    takes minutes). A run is its seed and its folder: entries of one seed may share a run, but two seeds
    never do, and seeds trained apart (another clone, another ``--runs-dir``) may number their folders alike."""
    return {(seed, r["run_dir"]): r.get("wall_time_s") or 0.0 for seed, per_seed in by_seed.items()
            for res in per_seed.values() for r in res.get("runs", []) if r.get("run_dir")}


def main(argv: list[str], prepared: tuple | None = None) -> int:
    """Run the presets that ``argv`` names; ``prepared``: what ``presets.prepare(argv)`` returned (the
    command checks the flags and presets before it imports this module, and torch with it)."""
    args, loaded = prepared or prepare(argv)
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
