"""The convolutional autoencoder (``conv``).

Default (``layout: strided``), channels 8-16-32 and hidden [64]:

    encoder  Conv(1->8,3,s2,p1) ReLU Conv(8->16,3,s2,p1) ReLU Conv(16->32,3,s2) ReLU
             Flatten(288) Linear(288->64) ReLU Linear(64->k)
    decoder  Linear(k->64) ReLU Linear(64->288) ReLU Unflatten(32,3,3)
             ConvT(32->16,3,s2) ReLU ConvT(16->8,3,s2,p1,op1) ReLU ConvT(8->1,3,s2,p1,op1) -> 1x28x28

The studies' second layout (``layout: pooled``): same-size 3x3 convs with increasing filters, each
followed by ReLU and MaxPool(2), a fully connected centre, and deconvolutions back, e.g.
``--set model.layout=pooled --set model.channels=[16,32,64] --set model.hidden=[128]``.
"""
from __future__ import annotations

from typing import Any

import torch

from ae_lightning.errors import UserError
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.models.blocks import ConvLayout, conv_autoencoder
from ae_lightning.models.layers import Activation


def check_conv(model: dict[str, Any]) -> None:
    """The conv options shared by ``conv`` and ``denoising`` (architecture conv)."""
    channels, hidden = model.get("channels") or [], model.get("hidden")
    if not channels or any(c <= 0 for c in channels):
        raise UserError(f"model.channels must list at least one positive channel count, got {channels}")
    if len(channels) > 4:
        raise UserError(f"model.channels: at most 4 stages fit a 28x28 image (28-14-7-3-1), got {len(channels)}")
    if hidden is not None and any(n <= 0 for n in hidden):
        raise UserError(f"model.hidden must hold positive sizes, got {hidden}")


@register("conv")
class ConvAutoencoder(AutoencoderModule):
    def __init__(self, channels: list[int] = [8, 16, 32], hidden: list[int] = [64],
                 layout: ConvLayout = "strided", code_act: Activation = "none", **kwargs):
        super().__init__(**kwargs)
        hp = self.hparams
        self.encoder, self.decoder = conv_autoencoder(channels, hidden, hp.latent_dim, layout,
                                                      hp.hidden_act, code_act, hp.leaky_slope)

    @classmethod
    def check_config(cls, model: dict[str, Any]) -> None:
        super().check_config(model)
        check_conv(model)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B,1,28,28) -> (B,k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B,k) -> (B,1,28,28) logits
