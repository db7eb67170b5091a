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

from ae_lightning.configs.conv import ConvConfig
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.models.blocks import conv_autoencoder


@register(ConvConfig)
class ConvAutoencoder(AutoencoderModule):
    def __init__(self, **options: Any):
        super().__init__(**options)
        hp = self.hparams
        self.encoder, self.decoder = conv_autoencoder(hp.channels, hp.hidden, hp.latent_dim, hp.layout,
                                                      hp.hidden_act, self.input_shape, hp.code_act, hp.leaky_slope)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B,C,H,W) -> (B,k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (B,k) -> (B,C,H,W) logits
