"""``model`` of the randomized autoencoder (layer-wise, from frozen random encoders)."""
from __future__ import annotations

import dataclasses

from ae_lightning.configs import model
from ae_lightning.configs.base import AutoencoderConfig, check_layers
from ae_lightning.hints import NonNegInt, PosFloat


@model("randomized")
@dataclasses.dataclass
class RandomizedConfig(AutoencoderConfig):
    layers: list[int] = dataclasses.field(default_factory=lambda: [784, 500, 200, 100])
    finetune_epochs: NonNegInt = 0
    random_gain: PosFloat = 4.0

    def check(self) -> None:
        super().check()
        check_layers(self.layers)
