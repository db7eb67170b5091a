"""Shared fixtures: tiny, learnable, synthetic MNIST-format data written as real IDX files.

Nothing here touches the network or ../shared/data. Each class is a prototype (a bar at a
class-specific angle plus a blob) with per-image jitter and noise, so autoencoders can learn it
and classes are separable.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

os.environ.setdefault("CI", "1")  # no progress bars in test logs
# torch's default thread count, whatever the load: fit trains on fewer threads while other processes
# hold cores (ae_lightning.cpus), which reorders float sums and moves the pinned smoke figures
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def fixed_val_loss(values):
    """A callback that sets ``val/loss`` to ``values[epoch]``. It runs before the checkpoint
    callbacks (Lightning puts those last), so they select by these values."""
    import lightning as L
    import torch

    class FixedValLoss(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            trainer.callback_metrics["val/loss"] = torch.tensor(float(values[trainer.current_epoch]))

    return FixedValLoss()


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32) - 13.5
    images = np.empty((n, 28, 28), np.float32)
    for i, c in enumerate(labels):
        angle = np.pi * c / 10 + rng.normal(0, 0.05)
        dist = np.abs(xx * np.sin(angle) - yy * np.cos(angle))
        bar = np.exp(-dist**2 / 4.0) * (np.hypot(xx, yy) < 11)
        cx, cy = 7 * np.cos(2 * np.pi * c / 10), 7 * np.sin(2 * np.pi * c / 10)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)
        images[i] = bar + blob + rng.normal(0, 0.03, (28, 28))
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def write_dataset(root: Path, folder: str, n_train: int, n_test: int, gz: bool = True) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = synthetic_digits(n, seed)
        for kind, arr in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}"
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (raw / name).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A data dir with synthetic MNIST (gzipped) and Fashion-MNIST (plain): 1200 train, 300 test."""
    root = tmp_path_factory.mktemp("data")
    write_dataset(root, "MNIST", 1200, 300, gz=True)
    write_dataset(root, "FashionMNIST", 1200, 300, gz=False)
    return root


@pytest.fixture
def cfg_for(data_dir, tmp_path):
    """``cfg_for(variant, **dotted_overrides)`` -> a resolved, small, CPU config for tests."""
    from ae_lightning.resolve import load

    def make(variant: str, **overrides):
        base = {"data.data_dir": str(data_dir), "data.subset": 1000, "data.batch_size": 100,
                "data.download": False, "trainer.max_epochs": 1, "trainer.accelerator": "cpu",
                "trainer.output_dir": str(tmp_path / "runs"), "trainer.images_every_n_epochs": 0}
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load(variant, None, base)

    return make


@pytest.fixture(scope="session")
def encoder_ckpt(data_dir, tmp_path_factory) -> Path:
    """A small fc autoencoder (latent 8) trained 1 epoch on the synthetic MNIST: its last.ckpt.
    Shared by the classifier and probe tests (a test that moves it must put it back)."""
    from ae_lightning.fit import fit
    from ae_lightning.resolve import load

    out = tmp_path_factory.mktemp("enc")
    cfg = load("fc", None, {"data.data_dir": str(data_dir), "data.subset": 1000, "data.batch_size": 50,
                            "data.download": False, "model.latent_dim": 8, "model.layers": [784, 64],
                            "trainer.max_epochs": 1, "trainer.accelerator": "cpu",
                            "trainer.output_dir": str(out), "trainer.images_every_n_epochs": 0})
    return fit(cfg).run_dir / "checkpoints" / "last.ckpt"


class BatchCounter(L.Callback):
    """A callback a test adds from the config (``trainer.callbacks``): writes how many training batches ran."""

    def __init__(self, out: str):
        self.out, self.batches = Path(out), 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.batches += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.write_text(str(self.batches))
