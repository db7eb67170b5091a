"""A multi-objective sweep's front, read back from its trials: pareto.csv, pareto.png, one config
per front point, and the same in TensorBoard (``<experiment>/pareto``).

The front is the set of completed trials that no other completed trial dominates (as good on
every objective, better on one); ASHA-stopped, diverged and failed trials are not on it. The
hypervolume (the volume the front dominates up to the reference point) is given after every
trial, in the order trials finished, so that searches can be compared trial for trial.
"""
from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import Sequence

from ae_lightning import files
from ae_lightning.config import dump_yaml
from search.objectives import Objective, hypervolume_by_trial, pareto_mask, reference_point

FRONT_DIR = "front"


def objective_values(row: dict, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """A completed trial's objective values, or None (stopped, failed, or a value missing)."""
    if row.get("status") != "completed":
        return None
    vals = [row.get(o.key) for o in objectives]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) for v in vals):
        return None
    return tuple(float(v) for v in vals)


def bounds_of(space) -> dict[str, tuple[float, float]]:
    """Each numeric searched key's range (the reference point's end for a key objective)."""
    out = {}
    for p in space.params.values():
        if p.low is not None:
            out[p.key] = (float(p.low), float(p.high))
        elif p.numeric:
            out[p.key] = (float(min(p.values)), float(max(p.values)))
    return out


def front(rows: list[dict], objectives: Sequence[Objective], space) -> dict:
    """The front's rows, the reference point and the hypervolume after each trial."""
    points = [objective_values(r, objectives) for r in rows]
    scored = [(r, p) for r, p in zip(rows, points) if p is not None]
    mask = pareto_mask([p for _, p in scored], objectives)
    on_front = [r for (r, _), m in zip(scored, mask) if m]
    ref = reference_point([p for _, p in scored], objectives, bounds_of(space))
    hv = hypervolume_by_trial(points, objectives, ref) if scored else [0.0] * len(rows)
    on_front.sort(key=lambda r: tuple(r[o.key] * (1 if o.minimize else -1) for o in objectives))
    return {"rows": on_front, "reference_point": ref, "hypervolume_by_trial": hv,
            "hypervolume": hv[-1] if hv else 0.0}


def write(exp_dir: Path, rows: list[dict], objectives: Sequence[Objective], space, base_cfg_of) -> dict:
    """pareto.csv, pareto.png, front/trial_<id>.yaml and TensorBoard; returns ``front``'s dict.
    ``base_cfg_of(row)`` gives the full config that retrains a front trial."""
    f = front(rows, objectives, space)
    folder = exp_dir / FRONT_DIR
    shutil.rmtree(folder, ignore_errors=True)
    cols = ["trial", "trial_id", *[o.key for o in objectives], *[k for k in space.params if k not in
                                                                   {o.key for o in objectives}], "config"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in f["rows"]:
        yaml_path = folder / f"trial_{r['trial_id']}.yaml"
        values = ", ".join(f"{o.name} {r[o.key]:.6g}" for o in objectives)
        files.write_text(yaml_path, f"# Pareto front point of the sweep {exp_dir.name}, trial {r['trial_id']} "
                         f"({values}); retrain: python train.py --config {yaml_path}\n" + dump_yaml(base_cfg_of(r)))
        w.writerow({**{k: r.get(k) for k in cols}, "config": str(yaml_path.relative_to(exp_dir))})
    files.write_text(exp_dir / "pareto.csv", buf.getvalue())
    title = f"{exp_dir.name}: {len(f['rows'])} front trials of {len(rows)}"
    fig = figure(rows, objectives, f, title)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=120)
    files.write_bytes(exp_dir / "pareto.png", out.getvalue())
    _tensorboard(exp_dir / "pareto", fig, f)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f


def figure(rows: list[dict], objectives: Sequence[Objective], f: dict, title: str = "", ax_pair=None):
    """Left: every completed trial on the first two objectives, the front as a step line; right:
    the hypervolume after each trial."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4)) if ax_pair is None else (ax_pair[0].figure, ax_pair)
    x, y = objectives[0], objectives[1] if len(objectives) > 1 else objectives[0]
    pts = [(r[x.key], r[y.key]) for r in rows if objective_values(r, objectives) is not None]
    if pts:
        a.scatter(*zip(*pts), s=14, color="0.6", label="completed trials")
    fr = sorted((r[x.key], r[y.key]) for r in f["rows"])
    if fr:
        a.step(*zip(*fr), where="post", color="C3", lw=1.5)
        a.scatter(*zip(*fr), s=28, color="C3", zorder=3, label=f"front ({len(fr)})")
    a.set_xlabel(f"{x.name} ({'min' if x.minimize else 'max'})")
    a.set_ylabel(f"{y.name} ({'min' if y.minimize else 'max'})")
    if x.key == "best_val_loss":
        a.set_xscale("log")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    hv = f["hypervolume_by_trial"]
    b.step(range(1, len(hv) + 1), hv, where="post", color="C0")
    b.set_xlabel("trial (in order of finishing)")
    b.set_ylabel("hypervolume of the front")
    b.set_title("reference " + ", ".join(f"{o.name} {v:.4g}" for o, v in zip(objectives, f["reference_point"])),
                fontsize=8)
    b.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _tensorboard(folder: Path, fig, f: dict) -> None:
    """The front's figure and the hypervolume by trial as a TensorBoard run of their own; written
    anew each time (the folder's older event files are removed first)."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(folder, ignore_errors=True)
    with SummaryWriter(log_dir=str(folder)) as w:
        for i, v in enumerate(f["hypervolume_by_trial"], 1):
            w.add_scalar("pareto/hypervolume", v, i)
        w.add_figure("pareto/front", fig, close=False)
        table = ""
        if f["rows"]:
            keys = [k for k in f["rows"][0] if not k.startswith("trial_dir")]
            table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n" + "".join(
                "| " + " | ".join(str(r.get(k, "")) for k in keys) + " |\n" for r in f["rows"])
        w.add_text("pareto/front", table or "no completed trial")
