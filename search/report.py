"""A sweep's outputs, read back from its experiment folder: results.csv, best.json, best.yaml,
search.png; and the figure that compares sweeps (Ax against random search).

    python -m search.report runs/search/deep-ax                     # rewrite the outputs
    python -m search.report --compare runs/search/deep-ax runs/search/deep-random \\
        --labels Ax random --out docs/search_ax_vs_random.png

Trials are numbered in the order they finished (the last result's timestamp), so "best so far
after n trials" is what the search knew after n trials had ended. A trial's status is one of
``completed`` (all epochs), ``stopped`` (ASHA stopped it early), ``diverged`` (NaN / inf loss),
``error`` (any other failure, after its FailureConfig retries), or Tune's own status while the
sweep is unfinished (``RUNNING``, ``PENDING``, ``PAUSED``).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from ae_lightning import files, flags
from ae_lightning.config import cli, dump_yaml
from ae_lightning.datafiles import default_data_dir
from ae_lightning.errors import UserError
from ae_lightning.resolve import load
from search import pareto
from search.results import DIVERGED, FINAL, METRIC, SEARCHER_STATE, error_line, read_state
from search.settings import SweepSettings
from search.space import apply, parse_space, with_objectives

SETTINGS = "search.json"  # written by search.tune at launch: base config, space file, flags


def load_settings(exp_dir: Path) -> SweepSettings:
    path = Path(exp_dir) / SETTINGS
    if not path.is_file():
        raise UserError(f"{exp_dir} is not a search experiment (no {SETTINGS})")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not readable as JSON ({e})") from None
    return SweepSettings.from_json(data, str(exp_dir))


def settings_space(s: SweepSettings, objectives: list[str] | None = None):
    """The sweep's space as it was decoded, with its objectives (or ``objectives``)."""
    space = parse_space(s.space_raw, s.base, s.space_file)
    return with_objectives(space, objectives if objectives is not None else s.objectives, s.base)


def _reason(trial) -> str:
    """The one line that says why a trial failed: the last ``XxxError: message`` of its error."""
    path = Path(trial.path) / "error.txt" if trial.path else None  # in storage, not the staging dir
    return error_line(path.read_text(errors="replace")) if path is not None and path.is_file() else ""


def collect(exp_dir: str | Path) -> list[dict[str, Any]]:
    """One row per trial, in the order trials finished."""
    from ray.tune import ExperimentAnalysis

    settings = load_settings(exp_dir)
    space = settings_space(settings)
    by_id = proposals(Path(exp_dir))
    # Tune warns "Failed to fetch metrics" for every trial without a progress file (one that never
    # reported, e.g. pending at a kill): nothing is missing, the rows read the trials' last results
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(str(Path(exp_dir).resolve()))
    finally:
        quiet.setLevel(level)
    rows = []
    for trial in analysis.trials:
        last = trial.last_result or {}
        path = Path(trial.path) if trial.path else None
        reason = _reason(trial) if trial.status == "ERROR" else ""
        if trial.status == "ERROR":
            diverged = "DivergedError" in reason or (path is not None and (path / DIVERGED).is_file())
            status = "diverged" if diverged else "error"
            reason = reason.split("DivergedError: ", 1)[-1] if diverged else reason
        elif trial.status == "TERMINATED":
            status = "completed" if last.get(FINAL) else "stopped"
        else:
            status = trial.status
        metrics = {}
        if path is not None and (path / "metrics.json").is_file() and not settings.cv:
            m = json.loads((path / "metrics.json").read_text())
            metrics = {k: v for k, v in m.items() if k.startswith("test_")}
        value = last.get(METRIC)
        rows.append({
            "trial_id": trial.trial_id, "status": status,
            **{k: v for k, v in sorted(space.decode(trial.config).items())},
            METRIC: value if status not in ("diverged", "error") else None,
            "epochs": last.get("epochs_total", last.get("training_iteration", 0)), **metrics,
            **({"generator": by_id[trial.trial_id]["generator"],
                "proposal_s": by_id[trial.trial_id]["wall_s"]} if trial.trial_id in by_id else {}),
            "reason": reason,
            "trial_dir": str(path) if path else "", "_t": last.get("timestamp") or _mtime(path, "error.txt"),
        })
    rows.sort(key=lambda r: (r["_t"], r["trial_id"]))
    for i, r in enumerate(rows, 1):
        r.pop("_t")
        r["trial"] = i
    return rows


def _mtime(folder: Path | None, name: str) -> float:
    f = folder / name if folder is not None else None
    return f.stat().st_mtime if f is not None and f.is_file() else math.inf


def proposals(exp_dir: Path) -> dict[str, dict]:
    """Ax's proposals by Tune trial id (generator, Ax trial index, the known objectives' fixed
    level, driver wall and CPU time), from the searcher state Tune saved last; {} for random search."""
    states = sorted(Path(exp_dir).glob(SEARCHER_STATE.format("*")))  # by the session start in the name
    return {p["trial_id"]: p for p in read_state(states[-1])["proposals"]} if states else {}


def best_so_far(rows: list[dict]) -> list[float]:
    out, best = [], math.inf
    for r in rows:
        v = r.get(METRIC)
        if v is not None and math.isfinite(v):
            best = min(best, v)
        out.append(best)
    return out


def _best_checkpoint(trial_dir: Path) -> str | None:
    found = sorted(trial_dir.glob("checkpoints/best-*.ckpt")) or sorted(trial_dir.glob("checkpoint_*/last.ckpt"))
    return str(found[-1]) if found else None


BEST_TRIAL = "best_trial.yaml"


def full_run(cfg: dict, settings) -> dict:
    """A trial's config as the run a user retrains: every training image (the sweep's ``--subset``
    dropped), ``--retrain-epochs`` (else the variant's own ``max_epochs``) and the data folder as
    the project finds it by itself (null) where that is the same folder, else relative to here."""
    out = json.loads(json.dumps(cfg))
    out["data"]["subset"] = None
    out["trainer"]["max_epochs"] = settings.retrain_epochs or load(cfg["variant"])["trainer"]["max_epochs"]
    data_dir = out["data"].get("data_dir")
    if data_dir:
        found = default_data_dir(out["data"]["dataset"]).resolve()
        out["data"]["data_dir"] = None if Path(data_dir).resolve() == found else os.path.relpath(data_dir)
    return out


def write_outputs(exp_dir: str | Path, rows: list[dict] | None = None) -> dict | None:
    """results.csv, best.json, best.yaml and search.png, and with several objectives pareto.csv,
    pareto.png and front/; returns best.json's content (or None). ``rows``: :func:`collect`'s, if
    the caller read them already."""
    exp_dir = Path(exp_dir)
    settings = load_settings(exp_dir)
    space = settings_space(settings)
    rows = collect(exp_dir) if rows is None else rows
    cols: list[str] = ["trial", "trial_id", "status"]
    for r in rows:
        cols += [k for k in r if k not in cols and k not in ("reason", "trial_dir")]
    cols += ["reason", "trial_dir"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    files.write_text(exp_dir / "results.csv", buf.getvalue())
    plot([(settings.algo, rows)], exp_dir / "search.png",
         title=f"{settings.variant} on {settings.base['data']['dataset']}: {settings.algo} search")
    scored = [r for r in rows if r.get(METRIC) is not None and math.isfinite(r[METRIC])]
    if not scored:
        return None

    def trial_config(row: dict) -> dict:  # exactly as the trial ran (no fold, the user's accelerator)
        return apply(settings.base, {k: row[k] for k in space.params})

    def config_of(row: dict) -> dict:  # the full run of those values (best.yaml, front/)
        return full_run(trial_config(row), settings)

    best = min(scored, key=lambda r: r[METRIC])
    params = {k: best[k] for k in space.params}
    cfg = config_of(best)
    files.write_text(exp_dir / "best.yaml", "# best config of the sweep " + exp_dir.name +
                     f" ({METRIC} {best[METRIC]:.6g}, trial {best['trial_id']}) as a full run: all the training "
                     f"data, {cfg['trainer']['max_epochs']} epochs; retrain: python train.py --config best.yaml\n"
                     "# the trial's own config (the sweep's subset and epochs): best_trial.yaml\n" + dump_yaml(cfg))
    files.write_text(exp_dir / BEST_TRIAL, f"# the config trial {best['trial_id']} of the sweep {exp_dir.name} ran, "
                     f"exactly ({METRIC} {best[METRIC]:.6g}); its full run: best.yaml\n" + dump_yaml(trial_config(best)))
    info = {"metric": METRIC, "value": best[METRIC], "trial": best["trial"], "trial_id": best["trial_id"],
            "status": best["status"], "epochs": best["epochs"], "params": params,
            "checkpoint": _best_checkpoint(Path(best["trial_dir"])), "trial_dir": best["trial_dir"],
            "trials": len(rows), "statuses": {s: sum(r["status"] == s for r in rows) for s in
                                              sorted({r["status"] for r in rows})},
            "retrain": f"python train.py --config {exp_dir.resolve() / 'best.yaml'}", "config": cfg,
            "trial_config": str(exp_dir.resolve() / BEST_TRIAL),
            "objectives": [o.text() for o in space.objectives], "front": None}
    if len(space.objectives) > 1:
        f = pareto.write(exp_dir, rows, space.objectives, space, config_of)
        info.update(front=[{"trial_id": r["trial_id"], **{o.key: r[o.key] for o in space.objectives},
                            "config": str(exp_dir / pareto.FRONT_DIR / f"trial_{r['trial_id']}.yaml")}
                           for r in f["rows"]],
                    hypervolume=f["hypervolume"], reference_point=f["reference_point"])
    files.write_json(exp_dir / "best.json", info)
    return info


def plot(series: list[tuple[str, list[dict]]], out: str | Path, title: str = "") -> Path:
    """Best-so-far against trial number for one sweep or several (one curve each); each trial's
    own value as a faint dot; failed trials as crosses on the bottom axis."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, rows) in enumerate(series):
        color = f"C{i}"
        n = list(range(1, len(rows) + 1))
        vals = [r.get(METRIC) for r in rows]
        ok = [(k, v) for k, v in zip(n, vals) if v is not None and math.isfinite(v)]
        if ok:
            ax.scatter(*zip(*ok), s=12, color=color, alpha=0.35)
        bsf = best_so_far(rows)
        ax.step(n, [b if math.isfinite(b) else float("nan") for b in bsf], where="post", color=color,
                label=f"{label}: best {min(bsf):.4g}" if bsf and math.isfinite(min(bsf)) else label)
        failed = [k for k, r in zip(n, rows) if r["status"] in ("diverged", "error")]
        if failed:
            ax.scatter(failed, [0] * len(failed), marker="x", color=color, transform=ax.get_xaxis_transform(),
                       clip_on=False, label=f"{label}: failed trials")
    ax.set_xlabel("trial (in order of finishing)")
    ax.set_ylabel(f"{METRIC} (validation)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return files.write_bytes(out, buf.getvalue())


def parser() -> flags.Parser:
    p = flags.Parser("python -m search.report", __doc__)
    p.add_argument("experiments", nargs="+", help="experiment folders <storage>/<name>")
    p.add_argument("--compare", action="store_true", help="one figure with every experiment's curve")
    p.add_argument("--labels", nargs="*", help="curve labels for --compare (default: folder names)")
    p.add_argument("--out", help="--compare: the PNG to write")
    p.add_argument("--title", default="")
    return p


@cli
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    dirs = [Path(d) for d in args.experiments]
    for d in dirs:
        load_settings(d)
    if args.compare:
        labels = args.labels or [d.name for d in dirs]
        if len(labels) != len(dirs) or not args.out:
            raise UserError("--compare needs --out FILE and one --labels entry per experiment")
        series = [(lab, collect(d)) for lab, d in zip(labels, dirs)]
        plot(series, args.out, args.title)
        for lab, rows in series:
            bsf = best_so_far(rows)
            final = min(bsf) if bsf else math.inf
            first = next((i + 1 for i, b in enumerate(bsf) if b <= final), None)
            print(f"{lab}: {len(rows)} trials, best {final:.6g} (first reached at trial {first})")
        for lab, rows in series:
            print(f"{lab} best-so-far: " + " ".join(f"{b:.5g}" for b in best_so_far(rows)))
        print(args.out)
        return 0
    for d in dirs:
        info = write_outputs(d)
        print(f"{d}: " + (f"best {info['metric']} {info['value']:.6g}; retrain: {info['retrain']}"
                          if info else "no trial finished"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
