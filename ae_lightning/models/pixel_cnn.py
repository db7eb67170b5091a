"""``pixel_cnn``: a classifier of pixels, the judge of generated images in the ``latent`` study.

The project's ``classifier`` variant classifies an autoencoder's *codes*; scoring decoded random
codes needs a classifier of *pixels*. This is a small CNN, registered in the module registry like
every module here (so its checkpoints load with ``models.load_checkpoint`` without importing a
study), trained through ``fit.fit`` like every other model of the project. It is no variant: it has
no ``configs/*.yaml``, so ``train.py`` does not list it; the ``latent`` study builds its config
(``studies.latent.pixel_classifier_config``):

    Conv(1→16, 3, p1), ReLU, MaxPool 2  -> (16, 14, 14)
    Conv(16→32, 3, p1), ReLU, MaxPool 2 -> (32, 7, 7)
    Flatten(1568), Linear(1568→128), ReLU, Dropout, Linear(128→10)

(sizes for MNIST's 1x28x28; the module's ``input_shape`` (C, H, W) sets the first conv's input
channels and the flat size, c2 * (H // 4) * (W // 4))

Test accuracy (``test_acc``) goes into metrics.json; a generated image counts as recognizable when
the softmax confidence of its top class is at least the threshold (0.9 in the study).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ae_lightning.configs.pixel_cnn import PixelCNNConfig
from ae_lightning.data import NUM_CLASSES
from ae_lightning.models import register
from ae_lightning.models.base import BaseModule


@register(PixelCNNConfig)
class PixelCNN(BaseModule):
    def __init__(self, **options: Any):
        super().__init__(**options)
        hidden, dropout = self.hparams.hidden, self.hparams.dropout
        c1, c2 = self.hparams.channels
        c, h, w = self.input_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # two pools: sides // 4
            nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, NUM_CLASSES))
        self._correct: dict[str, torch.Tensor] = {}
        self._count: dict[str, int] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B,C,H,W) -> logits (B,10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def _eval(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(x))
        correct = (logits.argmax(1) == y).sum()
        self._correct[stage] = self._correct.get(stage, 0) + correct  # stays on the device until the end
        self._count[stage] = self._count.get(stage, 0) + len(y)

    def validation_step(self, batch, batch_idx):
        self._eval(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval(batch, "test")

    def _epoch_end(self, stage: str) -> None:
        if self._count.get(stage):
            self.log(f"{stage}/acc", self._correct[stage].float() / self._count[stage])
        self._correct.pop(stage, None)
        self._count.pop(stage, None)

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    @torch.no_grad()
    def confidence(self, images: torch.Tensor, batch_size: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """``(top-class probability (N,), top class (N,))`` of images (N,C,H,W) in [0,1]."""
        was = self.training
        self.eval()
        probs = torch.cat([F.softmax(self(images[i:i + batch_size].to(self.device)), 1)
                           for i in range(0, len(images), batch_size)])
        self.train(was)
        conf, cls = probs.max(1)
        return conf, cls
