#!/usr/bin/env python
"""Issue 14.1: the timeline of one sweep, from its driver (where a sweep's fixed costs go).

Runs ``search.tune.main(ARGS)`` in this process and prints, with seconds since the process
started: the driver's imports and checks, Ray's start, Tune's setup, each trial's start, first
report and end (a Tune callback, on the driver's clock), Ray's shutdown and the outputs; then,
per trial, the worker's own figures (``metrics.json`` wall time of ``fit``, ``epoch_s`` of
``trial_state.json``) and the worker's process id (one id for all trials: Tune reused the worker).

    python benchmarks/profile_sweep.py --variant fc --algo random --num-samples 4 --max-epochs 1 \\
        --subset 5000 --data-dir ../shared/data --storage /tmp/prof --name p1 --quiet \\
        --max-concurrent 1 --num-cpus 1 --set trainer.images_every_n_epochs=0 --set trainer.accelerator=cpu
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()
marks: list[tuple[float, str]] = []


def mark(what: str) -> None:
    marks.append((time.perf_counter() - T0, what))


def main(argv: list[str]) -> None:
    mark("python started, importing search.tune")
    import ray
    from ray import tune

    from search import cluster, report
    from search import tune as search_tune

    mark("imported ray, search.tune")
    import search.trainable  # noqa: F401  (what run() imports first: lightning, torch, the models)

    mark("imported search.trainable (lightning, torch)")

    def wrap(owner, name: str, label: str):
        f = getattr(owner, name)

        @functools.wraps(f)
        def g(*a, **k):
            mark(f"{label} begins")
            try:
                return f(*a, **k)
            finally:
                mark(f"{label} ends")
        setattr(owner, name, g)

    wrap(search_tune, "_settings_new", "config + space checks")
    wrap(cluster, "start", "Ray's start")
    wrap(search_tune, "_tune", "Tune")
    wrap(tune.Tuner, "fit", "Tuner.fit")
    wrap(ray, "shutdown", "ray.shutdown")
    wrap(report, "write_outputs", "outputs")

    class Timeline(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            mark(f"trial {trial.trial_id} starts (its worker is ready)")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            mark(f"trial {trial.trial_id} reports epoch {result.get('epoch')}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            mark(f"trial {trial.trial_id} ends")

    run_config = tune.RunConfig.__init__

    def with_timeline(self, *a, callbacks=None, **k):
        run_config(self, *a, callbacks=[*(callbacks or []), Timeline()], **k)
    tune.RunConfig.__init__ = with_timeline

    rc = search_tune.main(argv)
    mark(f"done (exit {rc})")
    prev = 0.0
    for t, what in marks:
        print(f"{t:8.2f}  (+{t - prev:5.2f})  {what}")
        prev = t
    args = search_tune.parser().parse_args(argv)
    exp = Path(args.storage).resolve() / args.name
    print("trial                 fit_wall_s  epoch_s  pid")
    for trial in sorted(exp.glob("trial_*")):
        m = json.loads((trial / "metrics.json").read_text()) if (trial / "metrics.json").is_file() else {}
        st = json.loads((trial / "trial_state.json").read_text()) if (trial / "trial_state.json").is_file() else {}
        pids = {json.loads(line)["pid"] for line in (trial / "result.json").read_text().splitlines()}
        print(f"{trial.name:<22} {m.get('wall_time_s', float('nan')):10.2f} {sum(st.get('epoch_s', [])):8.2f}  "
              f"{','.join(map(str, sorted(pids)))}")


if __name__ == "__main__":
    main(sys.argv[1:])
