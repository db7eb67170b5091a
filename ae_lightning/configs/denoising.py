"""``model`` of the denoising autoencoder."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.configs import model
from ae_lightning.configs.base import Activation, AutoencoderConfig, ConvLayout, Init, check_conv, check_layers
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegFloat, NonNegInt, PosInt

Noise = Literal["gaussian", "masking", "occlusion", "salt_pepper"]


@model("denoising")
@dataclasses.dataclass
class DenoisingConfig(AutoencoderConfig):
    architecture: Literal["fc", "deep", "conv"] = "fc"
    noise: Noise = "gaussian"
    noise_factor: NonNegFloat = 0.3  # gaussian: std; masking / salt_pepper: fraction of pixels
    patch_size: PosInt = 10  # occlusion: side of the blanked square
    noise_seed: NonNegInt = 1234  # validation / test noise
    layers: list[int] | None = None  # fc / deep: encoder sizes from 784 (null: the architecture's)
    code_act: Activation = "none"
    channels: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32])  # conv
    hidden: list[int] = dataclasses.field(default_factory=lambda: [64])  # conv
    layout: ConvLayout = "strided"  # conv
    init: Init = "torch"  # glorot_uniform: Keras' default (the shallow/deep notebook)

    def check(self) -> None:
        super().check()
        if self.noise in ("masking", "salt_pepper") and self.noise_factor > 1:
            raise UserError(f"model.noise_factor is the fraction of corrupted pixels for {self.noise}: "
                            f"expected a number <= 1, got {self.noise_factor}")
        if self.patch_size > 28:
            raise UserError(f"model.patch_size must fit a 28x28 image, got {self.patch_size}")
        if self.architecture == "conv":
            check_conv(self.channels, self.hidden)
        else:
            check_layers(self.layers)
