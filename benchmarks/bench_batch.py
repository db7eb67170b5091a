#!/usr/bin/env python
"""The cost of making one training batch from the uint8 split, before and after the one-scale path.

    before   torch.addcmul(b, u8[idx].float(), a).clamp_(0, 1)   (the per-pixel affine map)
    after    u8[idx].float().mul_(scale)                          (TensorBatches, unit normalization)
    plain    f32[idx]                                             (a plain loop's pre-normalized floats)

CPU milliseconds per batch over one shuffled pass of ``--images`` random images, paths alternating,
median of ``--repeats``. The last line is ``speedup=S``: before / after at the largest batch size.

    python benchmarks/bench_batch.py --threads 1
    python benchmarks/bench_batch.py --smoke
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="few images, one repeat (CI)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--images", type=int, default=55000)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    if args.smoke:
        args.images, args.repeats = 3000, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (args.images, 28, 28), dtype=torch.uint8, generator=g)
    f32 = u8.unsqueeze(1).float() / 255
    a, b = torch.full((1, 28, 28), 1 / 255), torch.zeros(1, 28, 28)
    paths = {"before": lambda i: torch.addcmul(b, u8[i].unsqueeze(1).float(), a).clamp_(0, 1),
             "after": lambda i: u8[i].unsqueeze(1).float().mul_(1 / 255),
             "plain": lambda i: f32[i]}
    print(f"# CPU ms per batch, {args.images} images, {torch.get_num_threads()} torch threads, "
          f"median of {args.repeats} alternating passes; torch {torch.__version__}")
    print(f"{'batch':>6} {'before_ms':>10} {'after_ms':>9} {'plain_ms':>9}")
    speedup = float("nan")
    for bs in args.batch_sizes:
        res: dict[str, list[float]] = {k: [] for k in paths}
        for r in range(args.repeats):
            for k in (list(paths) if r % 2 == 0 else list(paths)[::-1]):
                perm = torch.randperm(args.images, generator=g)
                starts = range(0, args.images, bs)
                c = time.process_time()
                for s in starts:
                    paths[k](perm[s:s + bs])
                res[k].append((time.process_time() - c) / len(starts) * 1e3)
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"{bs:6d} {med['before']:10.3f} {med['after']:9.3f} {med['plain']:9.3f}")
        speedup = med["before"] / med["after"]
    print(f"speedup={speedup:.2f}")
    return speedup


if __name__ == "__main__":
    main()
