#!/usr/bin/env python
"""Issue 7, benchmark 3: options that can help small models, measured on the training step.

Every option trains a fresh copy of the same module (same seed, so the same initial weights) on
the same sequence of batches in a plain loop; options take turns in rounds (alternating order) so
a shared machine slows them alike. Reported per option: samples/s (median over rounds), speedup
over fp32, and the largest relative difference of its loss curve from fp32's over the first
round (the "no change to results beyond the precision's tolerance" check).

    fp32            the default
    bf16            torch.autocast(bfloat16)                     (Lightning: --precision bf16-mixed)
    fp16            autocast(float16) + GradScaler, GPU only     (Lightning: --precision 16-mixed)
    compile         torch.compile of the module's loss           (project: trainer.compile=true)
    compile+bf16    both
    channels_last   conv variants: NHWC weights and activations  (project: trainer.channels_last=true)
    cudagraphs      torch.compile(mode="reduce-overhead"), GPU only

    python benchmarks/bench_options.py --threads 1 --variants fc conv
    python benchmarks/bench_options.py --smoke          # CI: compile with the "eager" backend
The last line is ``speedup=S``: the best option's samples/s over fp32's (first variant).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import Callable

import common  # noqa: E402
import torch

from ae_lightning.config import variants  # noqa: E402


def make_step(cfg: dict, device: torch.device, option: str, backend: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A fresh module (seeded) and its ``step(x) -> loss`` under ``option``."""
    module, opt = common.plain_module(cfg, device)
    module.train()
    if "channels_last" in option:
        module = module.to(memory_format=torch.channels_last)
    loss_fn = module.loss
    if "compile" in option or option == "cudagraphs":
        mode = "reduce-overhead" if option == "cudagraphs" else None
        loss_fn = torch.compile(module.loss, backend=backend, mode=mode, dynamic=False)
    dtype = torch.bfloat16 if "bf16" in option else torch.float16 if option == "fp16" else None
    scaler = torch.amp.GradScaler(device.type) if option == "fp16" else None

    def step(x: torch.Tensor) -> torch.Tensor:
        if "channels_last" in option:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        if option == "cudagraphs":  # a new graph step: the previous replay's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with ctx:
            loss, _ = loss_fn(x, "train")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss.detach().float().clone()  # cudagraphs reuse their output buffers

    return step


def options_for(variant: str, device: torch.device) -> list[str]:
    opts = ["fp32", "bf16", "compile", "compile+bf16"]
    if device.type == "cuda":
        opts += ["fp16", "cudagraphs"]
    if variant in ("conv", "vae") or "conv" in variant:
        opts += ["channels_last", "channels_last+bf16"]
    return opts


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=1, repeats=3)
    p.add_argument("--variants", nargs="+", default=["fc", "conv"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40, help="timed steps per option per round")
    p.add_argument("--options", nargs="+", help="a subset of the options (default: all that apply)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (smoke: eager)")
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    if args.smoke:
        args.steps, args.compile_backend = 3, "eager"
    device = common.device_of(args.accelerator)
    torch.manual_seed(0)
    rows, first_speedup = [], None
    for variant in [v for v in args.variants if v in variants()]:
        cfg = common.bench_config(variant, data_dir=args.data_dir, batch_size=args.batch_size,
                                  subset=args.subset, epochs=1, out_dir="unused", accelerator=args.accelerator)
        x_train, _ = common.plain_data(cfg, device)
        g = torch.Generator(device=device).manual_seed(1)
        batches = [x_train[torch.randint(len(x_train), (args.batch_size,), generator=g, device=device)]
                   for _ in range(args.steps)]
        opts = [o for o in options_for(variant, device) if not args.options or o in args.options]
        steps = {}
        losses: dict[str, torch.Tensor] = {}
        for o in opts:  # build, warm up (compiles) and record the first-round loss curve
            torch.manual_seed(cfg["seed"])
            steps[o] = make_step(cfg, device, o, args.compile_backend)
            t0 = time.perf_counter()
            losses[o] = torch.stack([steps[o](x) for x in batches])
            common.sync(device)
            print(f"  {variant} {o}: first round {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rates: dict[str, list[float]] = {o: [] for o in opts}
        for r in range(args.repeats):
            for o in (opts if r % 2 == 0 else opts[::-1]):
                torch.manual_seed(r)
                clock = time.perf_counter if args.clock == "wall" else time.process_time
                common.sync(device)
                t0 = clock()
                for x in batches:
                    steps[o](x)
                common.sync(device)
                rates[o].append(args.steps * args.batch_size / (clock() - t0))
        base = common.median(rates["fp32"])
        ref = losses["fp32"]
        for o in opts:
            rate = common.median(rates[o])
            diff = float(((losses[o] - ref).abs() / ref.abs().clamp_min(1e-12)).max())
            rows.append((variant, o, rate, rate / base, diff))
        if first_speedup is None:
            first_speedup = max(common.median(rates[o]) for o in opts) / base
    print(f"# {common.machine()}")
    print(f"# plain-loop training steps, batch {args.batch_size}, {args.steps} steps x {args.repeats} rounds, "
          f"compile backend {args.compile_backend}, median samples/s on the {args.clock} clock, "
          f"{args.threads or 'default'} torch threads; loss_diff: max relative difference "
          f"of the loss curve from fp32 over {args.steps} steps from the same weights")
    print(f"{'variant':<8} {'option':<20} {'samples/s':>10} {'speedup':>8} {'loss_diff':>10}")
    for variant, o, rate, sp, diff in rows:
        print(f"{variant:<8} {o:<20} {rate:10.0f} {sp:8.2f} {diff:10.2e}")
    print(f"speedup={first_speedup:.2f}")
    return first_speedup


if __name__ == "__main__":
    main()
