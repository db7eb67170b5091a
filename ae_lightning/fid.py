"""``fid_cls``: the Fréchet distance between two image sets in the features of the project's own digit classifier.

FID compares the mean and covariance of two sets' features. Inception-v3's, the usual ones, need
weights downloaded from the internet and were learnt on 299x299 photographs; for 28x28 digits the
common practice is a classifier trained on the dataset itself. Here it is the ``pixel_cnn`` judge
(``models/pixel_cnn.py``), trained through ``fit`` at fixed settings (``JUDGE``: so that every run,
study and ``generate`` call measures on the same scale), and its penultimate layer (128 ReLU units)
is the feature. The distance itself is torchmetrics' ``FrechetInceptionDistance`` with that
feature extractor.

The judge is trained once per dataset and data folder and cached in
``<output_dir>/judges/<dataset>-<hash>/``: ``judge.ckpt`` and ``judge.json`` (the checkpoint's
sha256, the judge's test accuracy, its config, and the scale below). A checkpoint that fails its
checksum is refused in one line and the judge trained again.

The scale, measured with the judge (``judge.json`` "scale", on as many images as the test set):
``floor``: training images against test images (real against real: what sampling noise alone
gives); ``blurred``: test images under a gaussian blur (σ = 1.5 px) against the test set; ``noise``:
uniform noise images against the test set. A generator scores between the floor and the blur.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ae_lightning import files, resolve
from ae_lightning.data import MNISTDataModule
from ae_lightning.models import load_checkpoint

JUDGE_EPOCHS = 3
BLUR_SIGMA = 1.5


class Features(nn.Module):
    """The judge's penultimate layer: images (N,C,H,W) in [0,1] -> (N, hidden) features."""

    def __init__(self, judge: nn.Module):
        super().__init__()
        self.body = judge.net[:-2]  # up to the hidden layer's ReLU: without the dropout and the class logits
        self.num_features = judge.hparams.hidden  # torchmetrics reads it instead of probing a 299x299 image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Distance:
    """``fid_cls`` of image sets against one reference set, whose features are extracted once."""

    def __init__(self, features: Features, real: torch.Tensor, batch_size: int = 1000):
        self.batch_size = batch_size
        self.metric = FrechetInceptionDistance(feature=features.eval(), reset_real_features=False, normalize=True)
        self.metric.to(next(features.parameters()).device)
        self._update(real, real=True)
        self.n = len(real)

    @torch.no_grad()
    def _update(self, images: torch.Tensor, real: bool) -> None:
        device = next(self.metric.inception.parameters()).device
        for i in range(0, len(images), self.batch_size):
            self.metric.update(images[i:i + self.batch_size].to(device).float(), real=real)

    def __call__(self, fake: torch.Tensor) -> float:
        self._update(fake, real=False)
        value = float(self.metric.compute())
        self.metric.reset()  # the fake features only (reset_real_features=False)
        return max(value, 0.0)  # the matrix square root's rounding can leave -1e-9 for identical sets


def blur(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """A separable gaussian blur of images (N,C,H,W), edges padded by reflection."""
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)  # (C,1,1,2r+1): one kernel per channel
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def scale(distance: Distance, train_x: torch.Tensor, test_x: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Where a score sits: real against real, blurred and noise images (``distance``'s reference: ``test_x``)."""
    g = torch.Generator().manual_seed(seed)
    return {"floor": distance(train_x), "blurred": distance(blur(test_x)),
            "noise": distance(torch.rand(test_x.shape, generator=g))}


@dataclasses.dataclass
class Judge:
    """The cached judge: its features, and ``judge.json`` (sha256, test accuracy, config, scale)."""

    features: Features
    meta: dict
    folder: Path

    def test_images(self) -> torch.Tensor:
        """The reference of every ``fid_cls``: the dataset's whole test split, pixels / 255, whatever
        a run's own preprocessing (binarized, standardized, a test subset)."""
        return _datamodule(self.meta["config"]).tensors("test", next(self.features.parameters()).device)[0]

    def distance(self) -> Distance:
        """``fid_cls`` against :meth:`test_images`; compare scores at the same number of samples (FID's bias
        falls with it): the callers draw as many samples as there are test images."""
        return Distance(self.features, self.test_images())

    def scale_text(self) -> str:
        s = self.meta["scale"]
        return (f"judge test accuracy {self.meta['test_acc']:.4f}; scale: real against real {s['floor']:.3g}, "
                f"blurred {s['blurred']:.3g}, noise {s['noise']:.4g}")


def judge_config(dm: MNISTDataModule, output_dir: str | Path, accelerator: str = "auto") -> dict:
    """The judge's resolved config for the dataset and data folder of ``dm``."""
    return resolve.validate({
        "variant": "pixel_cnn", "module": "pixel_cnn", "seed": 0,
        "data": {"dataset": dm.hparams.dataset, "data_dir": str(dm.data_dir), "download": dm.hparams.download},
        "model": {"optimizer": "adam", "lr": 1e-3},
        "trainer": {"max_epochs": JUDGE_EPOCHS, "output_dir": str(output_dir), "accelerator": accelerator,
                    "images_every_n_epochs": 0, "log_embedding": False}})


def _folder(cfg: dict, output_dir: Path) -> Path:
    """``<output_dir>/judges/<dataset>-<hash of the judge's settings>``: another data folder is another judge."""
    key = {k: v for k, v in cfg.items() if k != "trainer"}
    key["trainer"] = {k: v for k, v in cfg["trainer"].items() if k not in ("output_dir", "accelerator")}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    return Path(output_dir) / "judges" / f"{cfg['data']['dataset']}-{digest}"


def _datamodule(cfg: dict) -> MNISTDataModule:
    dm = MNISTDataModule(**cfg["data"])
    dm.setup()
    return dm


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_judge(dm: MNISTDataModule, output_dir: str | Path, train: Callable[[dict], Any],
               device: str | torch.device = "cpu", accelerator: str = "auto") -> Judge:
    """The judge of ``dm``'s dataset and data folder: read from its cache, or trained with ``train``
    (``fit.fit``, handed in by the caller: this module sits below ``fit``) and cached."""
    folder = _folder(judge_config(dm, "."), Path(output_dir))
    ckpt, meta_file = folder / "judge.ckpt", folder / "judge.json"
    if ckpt.is_file() and meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if sha256(ckpt) == meta.get("sha256"):
            module, _ = load_checkpoint(ckpt, map_location=device)
            return Judge(Features(module).to(device), meta, folder)
        print(f"fid_cls: {ckpt} fails its checksum: training the judge again", file=sys.stderr)
    return _build(judge_config(dm, folder, accelerator), folder, train, device)


def _build(cfg: dict, folder: Path, train: Callable[[dict], Any], device: str | torch.device) -> Judge:
    print(f"fid_cls: training the {cfg['data']['dataset']} judge once ({JUDGE_EPOCHS} epochs), cached in {folder}",
          file=sys.stderr)
    res = train(cfg)
    ckpt = files.write_bytes(folder / "judge.ckpt", Path(res.metrics["best_checkpoint"]).read_bytes())
    module, _ = load_checkpoint(ckpt, map_location=device)
    features = Features(module).to(device)
    dm = _datamodule(cfg)
    test_x = dm.tensors("test", device)[0]
    meta = {"sha256": sha256(ckpt), "test_acc": res.metrics.get("test_acc"), "config": cfg,
            "n_reference": len(test_x),
            "scale": scale(Distance(features, test_x), dm.tensors("train", device, len(test_x))[0], test_x)}
    files.write_json(folder / "judge.json", meta)
    return Judge(features, meta, folder)
