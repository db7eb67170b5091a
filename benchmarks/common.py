"""Shared pieces of the benchmarks: the machine line, smoke data, the project path and the plain loop.

Every comparison here is *project path vs a plain PyTorch loop* on the same model object type,
batch size, optimizer and device, run alternately in one process (A B B A ...) so that a noisy,
shared machine slows both sides alike; figures are medians over the repeats.

- The project path is :func:`ae_lightning.fit.fit` itself (Lightning, the DataModule, logging at
  the default frequency, checkpoints, TensorBoard), timed by :class:`EpochTimer` from inside.
- The plain loop is what a careful hand-written loop does: the split normalized once into one float
  tensor on the device, a shuffled permutation indexed per batch, ``zero_grad / backward / step``,
  no logging, and (for whole epochs) a no-grad validation pass.
"""
from __future__ import annotations

import gzip
import platform
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from ae_lightning import files  # noqa: E402
from ae_lightning.fit import build, fit  # noqa: E402
from ae_lightning.resolve import load  # noqa: E402


# ----------------------------------------------------------------------------------------------
def machine() -> str:
    """One line: CPU model and cores, GPU, versions (for docs/benchmarks.md)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {gpu}; "
            f"python {platform.python_version()}, torch {torch.__version__}, lightning {L.__version__}")


def write_smoke_data(n_train: int = 1200, n_test: int = 300) -> Path:
    """Tiny random MNIST-format IDX files in a temporary folder (smoke mode: never the network)."""
    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (("images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8))):
            head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            files.write_bytes(raw / f"{prefix}-{kind}.gz", gzip.compress(head + arr.tobytes(), mtime=0))
    return root


def device_of(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_config(variant: str, *, data_dir: str | None, batch_size: int, subset: int | None,
                 epochs: int, out_dir: str, accelerator: str = "auto", extra: dict | None = None) -> dict:
    """A resolved run config for one benchmark cell (the variant's own config, nothing tuned)."""
    # the test after training is not timed: 200 test images keep its cost (the VAE's importance-
    # sampled NLL above all) from dominating a benchmark's run time
    over = {"data.batch_size": batch_size, "trainer.max_epochs": epochs, "trainer.output_dir": out_dir,
            "data.test_subset": 200,
            "trainer.accelerator": accelerator, "trainer.progress_bar": False,
            "trainer.images_every_n_epochs": 0}
    if data_dir:
        over["data.data_dir"] = data_dir
        over["data.download"] = False
    if subset:
        over["data.subset"] = subset
    over.update(extra or {})
    return load(variant, None, over)


# ----------------------------------------------------------------------------------------------
# The project path, timed from inside
class EpochTimer(L.Callback):
    """Per training epoch: ``train`` (epoch start to the end of the last training step) and
    ``epoch`` (one epoch start to the next: training, validation, checkpoints, logging), in wall
    seconds, plus the same in CPU seconds of this process (``*_cpu``: steadier on a shared machine)."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, float]] = []
        self.train: list[tuple[float, float]] = []
        self.end = (0.0, 0.0)

    def _now(self, pl_module) -> tuple[float, float]:
        sync(pl_module.device)
        return time.perf_counter(), time.process_time()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(self._now(pl_module))

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and len(self.train) < len(self.starts):
            now = self._now(pl_module)
            self.train.append((now[0] - self.starts[-1][0], now[1] - self.starts[-1][1]))

    def on_train_end(self, trainer, pl_module) -> None:
        self.end = self._now(pl_module)

    def result(self) -> dict[str, list[float]]:
        marks = self.starts + [self.end]
        epochs = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks[:-1], marks[1:])]
        return {"train": [w for w, _ in self.train], "train_cpu": [c for _, c in self.train],
                "epoch": [w for w, _ in epochs], "epoch_cpu": [c for _, c in epochs]}


def project_run(cfg: dict) -> dict[str, list[float]]:
    """Train ``cfg`` through ``fit`` (the project's one training path); per-epoch times in s."""
    timer = EpochTimer()
    fit(cfg, callbacks=[timer], verbose=False)
    return timer.result()


# ----------------------------------------------------------------------------------------------
# The plain loop
def plain_data(cfg: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and validation images, normalized once, as float tensors on ``device``."""
    from ae_lightning.data import MNISTDataModule

    dm = MNISTDataModule(**cfg["data"])
    dm.setup()
    return dm.tensors("train", device)[0], dm.tensors("val", device)[0]


def plain_module(cfg: dict, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The same module class and optimizer as the project run, used as a plain nn.Module."""
    L.seed_everything(cfg["seed"], verbose=False)
    module = build(cfg)[0].to(device)  # as fit builds it: the data module's image shape
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    return module, opt


def plain_run(cfg: dict, device: torch.device, data: tuple[torch.Tensor, torch.Tensor] | None = None,
              step: Callable[[torch.Tensor], Any] | None = None) -> dict[str, list[float]]:
    """``max_epochs`` epochs of the plain loop; per-epoch ``train`` and ``epoch`` (+ validation) times.

    ``step(x)`` overrides the training step (bench_options uses it for compiled / bf16 variants).
    """
    x_train, x_val = data or plain_data(cfg, device)
    module, opt = plain_module(cfg, device)
    bs, ebs = cfg["data"]["batch_size"], cfg["data"]["eval_batch_size"]
    drop_last = cfg["data"]["drop_last"]
    n = len(x_train)
    n_batches = n // bs if drop_last else -(-n // bs)

    def default_step(x: torch.Tensor) -> torch.Tensor:
        loss, _ = module.loss(x, "train")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step = step or default_step
    g = torch.Generator(device=device).manual_seed(cfg["seed"])
    out: dict[str, list[float]] = {"train": [], "epoch": [], "train_cpu": [], "epoch_cpu": []}
    for _ in range(cfg["trainer"]["max_epochs"]):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        module.train()
        order = torch.randperm(n, generator=g, device=device)
        for i in range(n_batches):
            step(x_train[order[i * bs:(i + 1) * bs]])
        sync(device)
        t1, c1 = time.perf_counter(), time.process_time()
        module.eval()
        with torch.no_grad():  # validation, as the project does every epoch (loss + exact mse)
            sse = torch.zeros((), dtype=torch.float64, device=device)
            for i in range(0, len(x_val), ebs):
                x = x_val[i:i + ebs]
                _, o = module.loss(x, "val")
                sse += (o.x_hat - x).square().sum(dtype=torch.float64)
            float(sse)  # read once per epoch, as the project's epoch-end metrics do
        sync(device)
        t2, c2 = time.perf_counter(), time.process_time()
        out["train"].append(t1 - t0)
        out["epoch"].append(t2 - t0)
        out["train_cpu"].append(c1 - c0)
        out["epoch_cpu"].append(c2 - c0)
    return out


def alternate(sides: dict[str, Callable[[], dict[str, list[float]]]], repeats: int,
              warmup_epochs: int = 1) -> dict[str, dict[str, list[float]]]:
    """Run each side ``repeats`` times, alternating the order (A B, B A, ...); drop the first
    ``warmup_epochs`` of every run (allocator, thread pools, first-call caches) when more remain."""
    names = list(sides)
    got: dict[str, dict[str, list[float]]] = {k: {} for k in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            res = sides[name]()
            for key, vals in res.items():
                keep = vals[warmup_epochs:] if len(vals) > warmup_epochs else vals
                got[name].setdefault(key, []).extend(keep)
    return got


def common_args(p, *, epochs: int, repeats: int) -> None:
    p.add_argument("--smoke", action="store_true", help="tiny synthetic data, 1 epoch, 1 repeat (CI)")
    p.add_argument("--data-dir", help="folder holding MNIST/raw (default: the project's data lookup)")
    p.add_argument("--subset", type=int, help="train on N images (default: the whole 55,000)")
    p.add_argument("--epochs", type=int, default=epochs, help="epochs per run (the first is warm-up)")
    p.add_argument("--repeats", type=int, default=repeats, help="alternating runs per side")
    p.add_argument("--accelerator", default="auto", help="auto, cpu or gpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (1 on an oversubscribed machine)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall seconds, or CPU seconds of this process (steadier on a shared CPU; "
                        "meaningful with --threads 1 and no GPU)")


def resolve_smoke(args) -> None:
    """Smoke mode: synthetic data (unless --data-dir), a tiny subset, one epoch, one repeat."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.data_dir = args.data_dir or str(write_smoke_data())
        args.subset = min(args.subset or 500, 500)
        args.epochs, args.repeats = 1, 1
