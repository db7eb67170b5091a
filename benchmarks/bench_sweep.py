#!/usr/bin/env python
"""Issue 7, benchmark 4: sweep throughput, trials per hour, by trials running at once.

One fixed small sweep (random search over configs/search/default.yaml, ``--trials`` trials of
``--epochs`` epochs on ``--subset`` images, no early stopping) is run through ``search.tune`` at
each packing level. On a GPU a level is trials per GPU (``--gpus-per-trial 1/k``); on the CPU it
is trials at once, ``--cpus-per-trial`` each. Levels alternate across repeats in one process; the
time is the whole ``search.tune`` call (Ray start included, as a user sees it).
The last line is ``speedup=S``: the best level's trials/hour over one trial at a time (GPU target >= 4).

``--compare`` (issue 14.1): a trial's fixed cost, the path before issue 14 against the current one,
side by side in one run. Each sweep is a fresh ``python -m search.tune`` process (as a user runs
it: interpreter, imports, Ray's start, trials, outputs), one trial at a time, the sides
alternating (old new, new old, ...). ``AE_SEARCH_FAST=0`` is the old path; ``--no-reuse`` adds a
third side with Tune's actor reuse off (a fresh worker process per trial), for reference. Per
sweep: wall, Ray's start (``ray.init``), the trials' epochs (``epoch_s`` of each
``trial_state.json``: training + validation + checkpoints), and the fixed cost per trial,
(wall - Ray's start - epochs) / trials. The last line is ``ratio=R``: new trials/hour over old.

    python benchmarks/bench_sweep.py                          # GPU: 1, 2, 4, 8 trials per GPU
    python benchmarks/bench_sweep.py --levels 1 2 --threads 1 # CPU: 1 and 2 trials at once
    python benchmarks/bench_sweep.py --compare --trials 16 --subset 5000 --repeats 2 --no-reuse \
        --data-dir ../shared/data                             # issue 14.1, CPU
    python benchmarks/bench_sweep.py --smoke [--compare]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


SIDES = {"old": {"AE_SEARCH_FAST": "0"}, "new": {"AE_SEARCH_FAST": "1"}, "no-reuse": {"AE_SEARCH_FAST": "1"}}


def child(argv: list[str]) -> None:
    """One sweep in this fresh process: ``search.tune.main(argv)``, timing ``ray.init``; with
    ``--no-reuse`` first, Tune's ``reuse_actors`` is switched off. Writes $BENCH_SWEEP_OUT."""
    record: dict = {}
    import ray
    from ray import tune

    init = ray.init

    def timed_init(*a, **k):
        t = time.perf_counter()
        try:
            return init(*a, **k)
        finally:
            record["ray_start_s"] = time.perf_counter() - t
    ray.init = timed_init
    if argv[:1] == ["--no-reuse"]:
        argv = argv[1:]
        tune_config = tune.TuneConfig.__init__

        def no_reuse(self, *a, **k):
            tune_config(self, *a, **{**k, "reuse_actors": False})
        tune.TuneConfig.__init__ = no_reuse
    from search import tune as search_tune

    with contextlib.redirect_stdout(io.StringIO()):
        record["rc"] = search_tune.main(argv)
    common.files.write_text(os.environ["BENCH_SWEEP_OUT"], json.dumps(record))


def sweep_argv(args, storage: str, name: str, level: int = 1) -> list[str]:
    argv = ["--variant", args.variant, "--algo", "random", "--num-samples", str(args.trials),
            "--max-epochs", str(args.epochs), "--storage", storage, "--name", name, "--quiet",
            "--max-concurrent", str(level), "--set", "trainer.images_every_n_epochs=0",
            "--set", "trainer.progress_bar=false", "--seed", "0"]
    if args.subset:
        argv += ["--subset", str(args.subset)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir, "--set", "data.download=false"]
    return argv


def run_side(args, side: str, storage: str, name: str) -> dict:
    """One sweep of one side in a fresh process: wall, Ray's start, epochs, fixed cost per trial."""
    out = Path(storage) / f"{name}.json"
    argv = sweep_argv(args, storage, name) + ["--cpus-per-trial", f"{args.cpus_per_trial:g}",
                                               "--set", "trainer.accelerator=cpu"]
    if args.threads:
        argv += ["--num-cpus", str(max(1, int(args.cpus_per_trial)))]
    env = {**os.environ, **SIDES[side], "BENCH_SWEEP_OUT": str(out)}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *(["--no-reuse"] if side == "no-reuse" else []),
           *argv]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=common.ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    record = json.loads(out.read_text()) if out.is_file() else {}
    if done.returncode != 0 or record.get("rc") != 0:
        raise SystemExit(f"{side}: search.tune failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    epochs = 0.0
    trials = list((Path(storage) / name).glob("trial_*/trial_state.json"))
    for state in trials:
        epochs += sum(json.loads(state.read_text()).get("epoch_s", []))
    if len(trials) != args.trials:
        raise SystemExit(f"{side}: {len(trials)} trial_state.json files, expected {args.trials}")
    fixed = (wall - record["ray_start_s"] - epochs) / args.trials
    return {"wall": wall, "ray": record["ray_start_s"], "epochs": epochs, "fixed": fixed}


def compare(args) -> float:
    sides = ["old", "new"] + (["no-reuse"] if args.no_reuse else [])
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as storage:
        for r in range(args.repeats):
            for side in (sides if r % 2 == 0 else sides[::-1]):
                runs[side].append(run_side(args, side, storage, f"r{r}-{side}"))
                x = runs[side][-1]
                print(f"  {side}: wall {x['wall']:.1f}s, ray start {x['ray']:.1f}s, epochs {x['epochs']:.1f}s, "
                      f"fixed/trial {x['fixed']:.2f}s", file=sys.stderr)
    med = common.median
    print(f"# {common.machine()}")
    print(f"# {args.variant}: random search, {args.trials} trials x {args.epochs} epoch(s) on {args.subset} images, "
          f"one at a time, {args.cpus_per_trial:g} CPU each; each sweep a fresh `python -m search.tune`; "
          f"{args.repeats} alternating repeats, medians; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'path':<10} {'wall_s':>8} {'ray_start_s':>12} {'epochs_s':>9} {'fixed_s/trial':>14} {'trials/hour':>12}"
          "  every run's wall_s")
    rate = {}
    for side in sides:
        xs = runs[side]
        rate[side] = args.trials / med([x["wall"] for x in xs]) * 3600
        print(f"{side:<10} {med([x['wall'] for x in xs]):8.1f} {med([x['ray'] for x in xs]):12.2f} "
              f"{med([x['epochs'] for x in xs]):9.2f} {med([x['fixed'] for x in xs]):14.2f} {rate[side]:12.0f}  "
              + " ".join(f"{x['wall']:.1f}" for x in xs))
    ratio = rate["new"] / rate["old"]
    if "no-reuse" in rate:
        print(f"new/no-reuse={rate['new'] / rate['no-reuse']:.2f}")
    print(f"ratio={ratio:.2f}")
    return ratio


def run_sweep(args, level: int, storage: str, name: str) -> float:
    from search import tune as search_tune

    gpu = torch.cuda.is_available() and args.accelerator != "cpu"
    argv = ["--variant", args.variant, "--algo", "random", "--num-samples", str(args.trials),
            "--max-epochs", str(args.epochs), "--storage", storage, "--name", name, "--quiet",
            "--max-concurrent", str(level), "--set", "trainer.images_every_n_epochs=0",
            "--set", "trainer.progress_bar=false"]
    if args.subset:
        argv += ["--subset", str(args.subset)]
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
    p.add_argument("--compare", action="store_true", help="issue 14.1: old against new path, fixed cost per trial")
    p.add_argument("--no-reuse", action="store_true", help="--compare: add a side with Tune's actor reuse off")
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    if args.smoke:
        args.trials, args.subset = 2, min(args.subset or 300, 300)
    if args.compare:
        if args.subset is None:
            args.subset = 5000
        return compare(args)
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
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2:])
    else:
        main()
