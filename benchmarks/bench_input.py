#!/usr/bin/env python
"""Issue 7, benchmark 2: the input pipeline alone (no model), in samples per second.

    device      the project's path: ``MNISTDataModule`` batches, the split held as one uint8 tensor
                (on the accelerator when there is one), one gather + one affine map per batch
    loader-0    a standard ``torch.utils.data.DataLoader`` over a per-sample Dataset (uint8 image ->
                float in [0, 1], as torchvision's ToTensor does), shuffled, default collate, no workers
    loader-N    the same with N worker processes (persistent), pinned memory on a GPU

Each batch ends on the training device (the DataLoader paths copy it there) and is consumed (its
sum is accumulated) so that no path can skip work. Sides alternate in one process; medians.
The last line is ``speedup=S``: device samples/s over the best DataLoader's (target >= 5 on a GPU).

    python benchmarks/bench_input.py --threads 1
    python benchmarks/bench_input.py --smoke
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: E402
import torch
from torch.utils.data import DataLoader, Dataset

from ae_lightning.data import MNISTDataModule  # noqa: E402


class PerSampleMNIST(Dataset):
    """What a typical MNIST pipeline does: one image at a time, converted to float in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.numpy(), labels.numpy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]).float().div_(255).unsqueeze(0), int(self.labels[i])


def epoch_device(dm: MNISTDataModule, device: torch.device) -> tuple[float, int]:
    batches = dm._batches("train", train=True)  # what train_dataloader() returns under a Trainer
    acc = torch.zeros((), device=device)
    common.sync(device)
    t0, n = time.perf_counter(), 0
    for x, _ in batches:
        acc += x.sum()
        n += len(x)
    float(acc)
    return time.perf_counter() - t0, n


def epoch_loader(loader: DataLoader, device: torch.device) -> tuple[float, int]:
    acc = torch.zeros((), device=device)
    common.sync(device)
    t0, n = time.perf_counter(), 0
    for x, _ in loader:
        x = x.to(device, non_blocking=True)
        acc += x.sum()
        n += len(x)
    float(acc)
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.common_args(p, epochs=3, repeats=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="DataLoader worker counts to try")
    args = p.parse_args(argv)
    common.resolve_smoke(args)
    device = common.device_of(args.accelerator)
    data = {"data_dir": args.data_dir, "batch_size": args.batch_size, "subset": args.subset,
            "data_on_device": device.type != "cpu"}
    if args.data_dir:
        data["download"] = False
    dm = MNISTDataModule(**data)
    dm.setup()
    x, y = dm.split("train")
    ds = PerSampleMNIST(x, y)
    pin = device.type == "cuda"
    loaders = {"loader-0": DataLoader(ds, batch_size=args.batch_size, shuffle=True, pin_memory=pin)}
    for w in (w for w in args.workers if w > 0):  # loader-0 is always there
        loaders[f"loader-{w}"] = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=w,
                                            persistent_workers=True, pin_memory=pin)
    sides = {"device": lambda: epoch_device(dm, device)}
    sides.update({name: (lambda ld=ld: epoch_loader(ld, device)) for name, ld in loaders.items()})
    times: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(args.repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            runs = [sides[name]() for _ in range(args.epochs)]
            keep = runs[1:] if len(runs) > 1 else runs  # the first epoch starts the workers
            times[name].extend(n / t for t, n in keep)
    print(f"# {common.machine()}")
    print(f"# {len(ds)} images, batch {args.batch_size}, device {device}, {args.epochs} epochs x "
          f"{args.repeats} alternating runs per path, median samples/s (first epoch of each run dropped)")
    print(f"{'path':<10} {'samples/s':>12}")
    rate = {k: common.median(v) for k, v in times.items()}
    for k, v in rate.items():
        print(f"{k:<10} {v:12.0f}")
    speedup = rate["device"] / max(v for k, v in rate.items() if k != "device")
    print(f"speedup={speedup:.2f}")
    return speedup


if __name__ == "__main__":
    main()
