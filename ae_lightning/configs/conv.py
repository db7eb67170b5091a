"""``model`` of the convolutional autoencoder."""
from __future__ import annotations

import dataclasses

from ae_lightning.configs import model
from ae_lightning.configs.base import Activation, AutoencoderConfig, ConvLayout, check_conv


@model("conv")
@dataclasses.dataclass
class ConvConfig(AutoencoderConfig):
    channels: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32])
    hidden: list[int] = dataclasses.field(default_factory=lambda: [64])
    layout: ConvLayout = "strided"
    code_act: Activation = "none"

    def check(self) -> None:
        super().check()
        check_conv(self.channels, self.hidden)
