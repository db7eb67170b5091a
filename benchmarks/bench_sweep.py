#!/usr/bin/env python
"""Issue 7, benchmark 4: sweep throughput, trials per hour, by trials running at once.

One fixed small sweep (random search over configs/search/default.yaml, ``--trials`` trials of
``--epochs`` epochs on ``--subset`` images, no early stopping) is run through ``search.tune`` at
each packing level. On a GPU a level is trials per GPU (``--gpus-per-trial 1/k``); on the CPU it
is trials at once, ``--cpus-per-trial`` each. Levels alternate across repeats in one process; the
time is the whole ``search.tune`` call (Ray start included, as a user sees it).
The last line is ``speedup=S``: the best level's trials/hour over one trial at a time (GPU target >= 4).

    python benchmarks/bench_sweep.py                          # GPU: 1, 2, 4, 8 trials per GPU
    python benchmarks/bench_sweep.py --levels 1 2 --threads 1 # CPU: 1 and 2 trials at once
    python benchmarks/bench_sweep.py --smoke
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time

import common  # noqa: E402
import torch


def run_sweep(args, level: int, storage: str, name: str) -> float:
    from search import tune as search_tune

    gpu = torch.cuda.is_available() and args.accelerator != "cpu"
    argv = ["--variant", args.variant, "--algo", "random", "--num-samples", str(args.trials),
            "--max-epochs", str(args.epochs), "--storage", storage, "--name", name, "--quiet",
            "--max-concurrent", str(level), "--set", "trainer.images_every_n_epochs=0",
            "--set", "trainer.progress_bar=false"]
    if args.subset:
        argv += ["--subset", str(args.subset)]
    if args.smoke:  # a few hundred images: the small space's batch sizes (the default's reach 1024)
        argv += ["--space", str(common.ROOT / "configs" / "search" / "small.yaml")]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir, "--set", "data.download=false"]
    if gpu:
        argv += ["--gpus-per-trial", f"{1 / level:.6g}", "--cpus-per-trial", f"{args.cpus_per_trial:g}"]
    else:
        argv += ["--cpus-per-trial", f"{args.cpus_per_trial:g}", "--set", "trainer.accelerator=cpu"]
    t0 = time.perf_counter()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        rc = search_tune.main(argv)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"search.tune failed (exit {rc}) at level {level}:\n{log.getvalue()[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=1, repeats=2)
    p.add_argument("--variant", default="fc")
    p.add_argument("--trials", type=int, default=8, help="trials in the fixed sweep")
    p.add_argument("--levels", type=int, nargs="+", help="trials at once (default GPU: 1 2 4 8; CPU: 1 2)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    if args.smoke:
        args.trials, args.subset = 2, min(args.subset or 300, 300)
    gpu = torch.cuda.is_available() and args.accelerator != "cpu"
    levels = args.levels or ([1, 2, 4, 8] if gpu else [1, 2])
    if args.smoke:
        levels = levels[:1]
    if args.subset is None:
        args.subset = 10000
    walls: dict[int, list[float]] = {k: [] for k in levels}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as storage:
        for r in range(args.repeats):
            for level in (levels if r % 2 == 0 else levels[::-1]):
                walls[level].append(run_sweep(args, level, storage, f"r{r}-k{level}"))
                print(f"  level {level}: {walls[level][-1]:.1f}s", file=sys.stderr)
    print(f"# {common.machine()}")
    unit = "trials per GPU" if gpu else f"trials at once ({args.cpus_per_trial:g} CPU each)"
    print(f"# {args.variant}: random search, {args.trials} trials x {args.epochs} epochs on {args.subset} images; "
          f"{args.repeats} alternating repeats, median wall (Ray start included)")
    print(f"{unit:<34} {'wall_s':>8} {'trials/hour':>12} {'speedup':>8}  every run's wall_s")
    rate = {k: args.trials / common.median(v) * 3600 for k, v in walls.items()}
    for k in levels:
        print(f"{k:<34d} {common.median(walls[k]):8.1f} {rate[k]:12.0f} {rate[k] / rate[levels[0]]:8.2f}  "
              + " ".join(f"{w:.1f}" for w in walls[k]))
    speedup = max(rate.values()) / rate[levels[0]]
    print(f"speedup={speedup:.2f}")
    return speedup


if __name__ == "__main__":
    main()
