"""``model`` of the fully connected autoencoders (``linear``, ``shallow``, ``deep``, ``fc``)."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.configs import model
from ae_lightning.configs.base import Activation, AutoencoderConfig, Init, check_layers
from ae_lightning.errors import UserError


@model("mlp")
@dataclasses.dataclass
class MLPConfig(AutoencoderConfig):
    layers: list[int] = dataclasses.field(default_factory=lambda: [784, 392, 196])  # encoder, from the input
    code_act: Activation = "none"
    init: Init = "torch"  # glorot_uniform: Keras' default
    pixel_scale: Literal["unit", "symmetric"] = "unit"  # symmetric: the network works in [-1, 1]

    def check(self) -> None:
        super().check()
        check_layers(self.layers)
        if self.pixel_scale == "symmetric":
            if self.output_act not in ("tanh", "none"):
                raise UserError("model.pixel_scale symmetric works in [-1, 1]: it needs model.output_act tanh or none")
            if self.loss not in ("mse", "l1"):
                raise UserError("model.pixel_scale symmetric: the loss must be mse or l1 (computed in [-1, 1])")
