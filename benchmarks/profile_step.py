#!/usr/bin/env python
"""Where the time of a project training epoch goes.

Runs ``fit`` under cProfile for ``fc`` (one measured epoch after a warm-up run) and splits the CPU
time (process time, so waits on a shared machine do not count) of Lightning's training-epoch loop
into: the model's forward + loss, backward, optimizer update, Lightning logging (``self.log`` and
the per-step metric collection), batches, and the rest of Lightning's loop (hooks, closures,
progress tracking). Also prints the top functions by own time.

    python benchmarks/profile_step.py --threads 1 --subset 10000
The last line is ``ratio=R``: the training-epoch loop's time over the model's own work in it
(forward + loss, backward, optimizer update) under the profiler; R - 1 is what the framework adds.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import common  # noqa: E402

# (label, file substring, function name): cumulative time of the matching entries
PARTS = [
    ("forward + loss", "ae_lightning/models/base.py", "loss"),
    ("backward", "torch/_tensor.py", "backward"),
    ("optimizer update", "torch/optim/adam.py", "_single_tensor_adam"),
    ("self.log calls", "lightning/pytorch/core/module.py", "log"),
    ("per-step metric collection", "logger_connector/logger_connector.py", "on_batch_end"),
    ("step-metric logging", "logger_connector/logger_connector.py", "update_train_step_metrics"),
    ("batches (TensorBatches)", "ae_lightning/data.py", "__iter__"),
]
MODEL_WORK = ("forward + loss", "backward", "optimizer update")  # what a plain loop does too


def profile(cfg: dict, top: int) -> tuple[float, dict[str, float], str]:
    common.project_run(cfg)  # warm-up run (first-call costs)
    prof = cProfile.Profile(time.process_time)  # CPU seconds: a shared machine's waits don't count
    prof.enable()
    common.project_run(cfg)
    prof.disable()
    st = pstats.Stats(prof)
    parts = {}
    total = 0.0
    for (file, _, func), (_, _, _, ct, _) in st.stats.items():
        if func == "run" and file.endswith("training_epoch_loop.py"):
            total += ct
        for label, f, fn in PARTS:
            if func == fn and f in file:
                parts[label] = parts.get(label, 0.0) + ct
    out = tempfile.SpooledTemporaryFile(mode="w+")
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    out.seek(0)
    return total, parts, out.read()


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=1, repeats=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--variant", default="fc")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    with tempfile.TemporaryDirectory(prefix="profile-") as out:
        cfg = common.bench_config(args.variant, data_dir=args.data_dir, batch_size=args.batch_size,
                                  subset=args.subset, epochs=1, out_dir=out, accelerator=args.accelerator)
        total, parts, top = profile(cfg, args.top)
    print(f"# {common.machine()}")
    print(f"# {args.variant}, batch {args.batch_size}, subset {args.subset or 'all'}; cProfile CPU seconds "
          f"(inflated by the profiler) of the training epoch loop")
    print(f"{'part':<28} {'cpu_s':>9} {'share':>7}")
    for label, _, _ in PARTS:
        print(f"{label:<28} {parts.get(label, 0):9.3f} {parts.get(label, 0) / total:7.1%}")
    print(f"{'training epoch loop (total)':<28} {total:9.3f} {1:7.1%}")
    print(f"\n## top {args.top} by own time\n" + "\n".join(
        line for line in top.splitlines() if line.strip() and "function calls" not in line))
    ratio = total / sum(parts.get(label, 0) for label in MODEL_WORK)
    print(f"ratio={ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
