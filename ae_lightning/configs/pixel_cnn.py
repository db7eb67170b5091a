"""``model`` of the pixel CNN digit classifier (the studies' judge of generated images)."""
from __future__ import annotations

import dataclasses

from ae_lightning.configs import model
from ae_lightning.configs.base import BaseConfig
from ae_lightning.hints import Fraction, PosInt


@model("pixel_cnn")
@dataclasses.dataclass
class PixelCNNConfig(BaseConfig):
    channels: list[int] = dataclasses.field(default_factory=lambda: [16, 32])
    hidden: PosInt = 128
    dropout: Fraction = 0.2
