"""``model`` of the variational autoencoder."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.configs import model
from ae_lightning.configs.base import AutoencoderConfig, ConvLayout, check_conv
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegFloat, NonNegInt, PosFloat, PosInt


@model("vae")
@dataclasses.dataclass
class VAEConfig(AutoencoderConfig):
    encoder: Literal["conv", "fc"] = "conv"
    channels: list[int] = dataclasses.field(default_factory=lambda: [8, 16, 32])  # conv stages
    layout: ConvLayout = "strided"
    hidden: list[int] = dataclasses.field(default_factory=lambda: [128, 64])  # fc sizes after the convs or 784
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    obs_std: PosFloat = 0.1  # gaussian: the fixed standard deviation of p(x|z)
    beta: NonNegFloat = 1.0
    kl_warmup_epochs: NonNegInt = 0
    nll_samples: PosInt = 100  # K of the importance-sampled test NLL
    fid_cls: bool = True  # test_fid_cls: prior samples against the test set (ae_lightning.fid)
    heads_act: Literal["hidden", "none"] = "hidden"  # after the last hidden layer, before mu / log var

    def check(self) -> None:
        super().check()
        if not self.hidden or any(n <= 0 for n in self.hidden):
            raise UserError(f"model.hidden must list at least one positive size, got {self.hidden}")
        if self.encoder == "conv":
            check_conv(self.channels, self.hidden)
        if self.likelihood == "bernoulli" and self.output_act != "sigmoid":
            raise UserError("model.likelihood bernoulli needs model.output_act sigmoid (the decoder gives Bernoulli logits)")
        if self.loss != "mse":
            raise UserError("model.loss does not apply to the vae: its loss is -ELBO; choose model.likelihood instead")
