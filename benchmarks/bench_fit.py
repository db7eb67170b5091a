#!/usr/bin/env python
"""Issue 2's benchmark: `fc` on MNIST through the project's training path vs a plain PyTorch loop.

Both sides train the same module class (configs/fc.yaml), batch size, optimizer and device for the
same epochs, each epoch followed by a validation pass; they run alternately in one process. An
epoch time is one whole epoch: training, validation and, on the project side, everything
Lightning does around them (logging at the default frequency, checkpoints, TensorBoard).

    python benchmarks/bench_fit.py                    # full MNIST training split, CPU or GPU
    python benchmarks/bench_fit.py --smoke            # CI: tiny synthetic data, 1 epoch

The last line is ``ratio=R`` with R = project epoch time / plain epoch time (target R <= 1.2 on CPU).
"""
from __future__ import annotations

import argparse
import tempfile

import common  # noqa: E402


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=3, repeats=3)
    p.add_argument("--batch-size", type=int, default=256, help="the project default")
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as out:
        cfg = common.bench_config("fc", data_dir=args.data_dir, batch_size=args.batch_size,
                                  subset=args.subset, epochs=args.epochs, out_dir=out,
                                  accelerator=args.accelerator)
        device = common.device_of(args.accelerator)
        data = common.plain_data(cfg, device)
        got = common.alternate({"project": lambda: common.project_run(cfg),
                                "plain": lambda: common.plain_run(cfg, device, data)}, args.repeats)
    n = len(data[0])
    print(f"# {common.machine()}")
    print(f"# fc, {n} training + {len(data[1])} validation images, batch {args.batch_size}, "
          f"{args.epochs} epochs x {args.repeats} alternating runs per side, medians (first epoch of each run dropped)")
    print(f"# ratio and samples/s on the {args.clock} clock; {args.threads or 'default'} torch threads")
    print(f"{'path':<8} {'epoch_s':>9} {'train_s':>9} {'epoch_cpu_s':>12} {'train_cpu_s':>12} {'samples/s':>10}")
    med = {}
    for side in got:
        m = {k: common.median(v) for k, v in got[side].items()}
        med[side] = m["epoch" if args.clock == "wall" else "epoch_cpu"]
        print(f"{side:<8} {m['epoch']:9.3f} {m['train']:9.3f} {m['epoch_cpu']:12.3f} {m['train_cpu']:12.3f} "
              f"{n / m['train' if args.clock == 'wall' else 'train_cpu']:10.0f}")
    ratio = med["project"] / med["plain"]
    print(f"ratio={ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
