"""Fully connected autoencoders: the ``linear``, ``shallow``, ``deep`` and ``fc`` variants.

One class; the variants differ only in their configs (layer sizes and activations):

    linear   784-128-64-12-k and back, no nonlinearity       (neighbourhood-preservation study)
    shallow  784-k relu, then k-784 sigmoid                   (shallow/deep study)
    deep     784-128-k-128-784, relu                          (shallow/deep study)
    fc       784-392-196-k and back, LeakyReLU(0.5)           (fcAE study)

``layers`` lists the encoder's sizes from the input up to, not including, the code; the decoder
mirrors them. ``code_act`` is the activation on the code layer (``none`` keeps it linear).
``init``: ``torch`` (PyTorch's default initialization) or ``glorot_uniform`` (Keras' default).
"""
from __future__ import annotations

from typing import Any

import torch

from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.models.layers import Activation, Init, check_layers, initialize, mlp


@register("mlp")
class MLPAutoencoder(AutoencoderModule):
    def __init__(self, layers: list[int] = [784, 392, 196], code_act: Activation = "none", init: Init = "torch",
                 **kwargs):
        super().__init__(**kwargs)
        hp = self.hparams
        self.encoder = mlp([*layers, hp.latent_dim], hp.hidden_act, code_act, hp.leaky_slope)
        self.decoder = mlp([hp.latent_dim, *reversed(layers)], hp.hidden_act, "none", hp.leaky_slope)
        initialize(self, init)

    @classmethod
    def check_config(cls, model: dict[str, Any]) -> None:
        super().check_config(model)
        check_layers(model.get("layers"))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # (B,784) -> (B,k)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 28, 28)  # logits
