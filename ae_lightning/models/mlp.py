"""Fully connected autoencoders: the ``linear``, ``shallow``, ``deep`` and ``fc`` variants.

One class; the variants differ only in their configs (layer sizes and activations):

    linear   784-128-64-12-k and back, no nonlinearity       (neighbourhood-preservation study)
    shallow  784-k relu, then k-784 sigmoid                   (shallow/deep study)
    deep     784-128-k-128-784, relu                          (shallow/deep study)
    fc       784-392-196-k and back, LeakyReLU(0.5)           (fcAE study)

``layers`` lists the encoder's sizes from the input up to, not including, the code; the decoder
mirrors them. Its first entry stands for the input (the config checks the 784 pixels of 28x28); the
module takes that size from its ``input_shape``, C*H*W. ``code_act`` is the activation on the code
layer (``none`` keeps it linear).
``init``: ``torch`` (PyTorch's default initialization) or ``glorot_uniform`` (Keras' default).

``pixel_scale``: the scale the network works in. ``unit``: pixels in [0, 1], as the data module
gives them. ``symmetric``: torchvision's ``Normalize((0.5,), (0.5,))`` as the neighbourhood study's
PyTorch code read MNIST: the encoder sees 2x - 1 in [-1, 1], the decoder's output (a ``tanh``
output: ``output_act: tanh``) is in that scale, and the training loss (l1, mse) is computed there,
against 2x - 1. Every metric stays on [0, 1] pixels (``ae_lightning.metrics``): ``output()``
maps the network's output y back to x_hat = (y + 1) / 2.
"""
from __future__ import annotations

from typing import Any

import torch

from ae_lightning.configs.mlp import MLPConfig
from ae_lightning.metrics import reconstruction_loss
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.models.layers import initialize, mlp


@register(MLPConfig)
class MLPAutoencoder(AutoencoderModule):
    def __init__(self, **options: Any):
        super().__init__(**options)
        hp = self.hparams
        layers = [self.input_size, *hp.layers[1:]]
        self.encoder = mlp([*layers, hp.latent_dim], hp.hidden_act, hp.code_act, hp.leaky_slope)
        self.decoder = mlp([hp.latent_dim, *reversed(layers)], hp.hidden_act, "none", hp.leaky_slope)
        initialize(self, hp.init)

    def _symmetric(self) -> bool:
        return self.hparams.get("pixel_scale", "unit") == "symmetric"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return self.encoder(2 * x - 1 if self._symmetric() else x)  # (B,C*H*W) -> (B,k)

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        y = super().output(logits)
        return (y + 1) / 2 if self._symmetric() else y  # x_hat on [0, 1] pixels

    def reconstruction(self, logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._symmetric():
            return super().reconstruction(logits, x)
        x_hat = self.output(logits)  # the loss as the original computed it: against 2x - 1, in [-1, 1]
        return x_hat, reconstruction_loss(self.hparams.loss, super().output(logits), 2 * x - 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)  # logits
