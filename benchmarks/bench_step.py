#!/usr/bin/env python
"""Issue 7, benchmark 1: the training step, project path vs a plain PyTorch loop.

For each variant (fc, conv, vae) and batch size (128, 1024): the same module class, batch size,
optimizer and device, trained through ``ae_lightning.fit.fit`` (Lightning, the DataModule, logging
at the default frequency) and through a plain loop, alternately in one process. The time compared
is the training part of an epoch (first step to last step; validation and checkpoints are
bench_fit's subject). Prints epoch time, samples per second and the ratio per cell, and last
``ratio=R``: the worst (largest) ratio of the table (target R <= 1.15).

    python benchmarks/bench_step.py --threads 1 --clock cpu --subset 20000   # shared CPU box
    python benchmarks/bench_step.py                                          # a GPU box
    python benchmarks/bench_step.py --smoke                                  # CI
"""
from __future__ import annotations

import argparse
import sys
import tempfile

import common  # noqa: E402

from ae_lightning.config import variants  # noqa: E402


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=2, repeats=3)
    p.add_argument("--variants", nargs="+", default=["fc", "conv", "vae"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 1024])
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    missing = [v for v in args.variants if v not in variants()]
    wanted = [v for v in args.variants if v in variants()]
    device = common.device_of(args.accelerator)
    key = "train" if args.clock == "wall" else "train_cpu"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-step-") as out:
        for variant in wanted:
            for bs in args.batch_sizes:
                cfg = common.bench_config(variant, data_dir=args.data_dir, batch_size=bs, subset=args.subset,
                                          epochs=args.epochs, out_dir=out, accelerator=args.accelerator)
                data = common.plain_data(cfg, device)
                got = common.alternate({"project": lambda: common.project_run(cfg),
                                        "plain": lambda: common.plain_run(cfg, device, data)}, args.repeats)
                proj, plain = common.median(got["project"][key]), common.median(got["plain"][key])
                rows.append((variant, bs, len(data[0]), proj, plain))
                print(f"  {variant} batch {bs}: project {proj:.3f}s plain {plain:.3f}s", file=sys.stderr)
    print(f"# {common.machine()}")
    print(f"# training part of an epoch, {args.clock} clock, {args.threads or 'default'} torch threads, "
          f"{args.epochs} epochs x {args.repeats} alternating runs per side, medians (first epoch dropped)")
    print(f"{'variant':<8} {'batch':>6} {'images':>7} {'project_s':>10} {'plain_s':>9} "
          f"{'project/s':>10} {'plain/s':>9} {'ratio':>6}")
    for variant, bs, n, proj, plain in rows:
        print(f"{variant:<8} {bs:6d} {n:7d} {proj:10.3f} {plain:9.3f} {n / proj:10.0f} {n / plain:9.0f} "
              f"{proj / plain:6.3f}")
    if missing:
        print(f"# not measured (no configs/<variant>.yaml): {', '.join(missing)}")
    ratio = max(proj / plain for *_, proj, plain in rows)
    print(f"ratio={ratio:.3f}")
    return ratio


if __name__ == "__main__":
    main()
