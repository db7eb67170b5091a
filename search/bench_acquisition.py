"""What cutting Ax's acquisition optimisation costs in quality: the benchmark's ``acquisition`` part.

Ax's BoTorch step optimises the acquisition function from ``num_restarts`` starts chosen among
``raw_samples`` random points (Ax's defaults 20 and 1024). The benchmark's sweeps use fewer, to fit
the 2-core CPU. To measure what that gives up, each finished single-objective Ax sweep is replayed:
its first n trials (their parameters and results, n = 10, 20, 29) are attached to a fresh Ax
experiment, and one Bayesian proposal is made with each setting on the same data and seed. Per
proposal: its wall time, and the acquisition value it reached (qLogNEI, a log value: the cut
setting is as good where the difference is near 0, worse where it is negative).
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from search import report
from search.space import ax_name

POINTS = (10, 20, 29)


def replay(space, rows: list[dict], num_restarts: int, raw_samples: int, seed: int) -> dict:
    """One Bayesian proposal after ``rows`` (a sweep's first trials) with these settings."""
    # late: Ax and Ray take seconds to import (--help and the report-only paths do without them)
    from ax.utils.common.constants import Keys

    from search.ax_searcher import make_client

    client = make_client(space, space.objectives, seed, 0, num_restarts, raw_samples)
    for r in rows:
        params = {ax_name(k): v for k, v in space.encode({k: r[k] for k in space.params}).items()}
        _, index = client.attach_trial(params)
        v = r.get("best_val_loss")
        if r["status"] == "completed" and isinstance(v, (int, float)) and math.isfinite(v):
            client.complete_trial(index, raw_data={"best_val_loss": (float(v), None)})
        else:
            client.abandon_trial(index, reason=r["status"])
    t = time.perf_counter()
    _, index = client.get_next_trial()
    wall = time.perf_counter() - t
    meta = client.experiment.trials[index].generator_runs[0].gen_metadata or {}
    value = meta.get(Keys.EXPECTED_ACQF_VAL.value)
    return {"wall_s": round(wall, 3), "acquisition_value": float(value[0]) if value else None}


def measure(exps: dict[int, Path], cut: tuple[int, int], full: tuple[int, int] = (20, 1024)) -> dict:
    """Every replay, and the medians: time of each setting, and the cut's acquisition value minus
    the full one's."""
    import torch

    # late: Ax and Ray (seconds), as in replay
    from search.ax_searcher import PROPOSAL_THREADS

    torch.set_num_threads(PROPOSAL_THREADS)

    rows = []
    for seed, exp in sorted(exps.items()):
        space, trials = report.settings_space(report.load_settings(exp)), report.collect(exp)
        for n in POINTS:
            a, b = replay(space, trials[:n], *full, seed), replay(space, trials[:n], *cut, seed)
            rows.append({"seed": seed, "trials": n, "full": a, "cut": b,
                         "difference": (b["acquisition_value"] - a["acquisition_value"])
                         if a["acquisition_value"] is not None and b["acquisition_value"] is not None else None})
    diffs = [r["difference"] for r in rows if r["difference"] is not None]
    return {"full": {"num_restarts": full[0], "raw_samples": full[1]},
            "cut": {"num_restarts": cut[0], "raw_samples": cut[1]}, "replays": rows,
            "median_wall_s": {"full": statistics.median(r["full"]["wall_s"] for r in rows) if rows else None,
                              "cut": statistics.median(r["cut"]["wall_s"] for r in rows) if rows else None},
            "median_difference": statistics.median(diffs) if diffs else None,
            "worst_difference": min(diffs) if diffs else None}
