"""The options every module shares (``BaseConfig``) and every autoencoder shares (``AutoencoderConfig``).

A module's ``model`` section is a config dataclass in a file of this package named as its model file:
plain typed fields (``lr: PosFloat = 1e-3``: a finite number > 0; ``Literal[...]``: one of) read by
the schema code in :mod:`ae_lightning.config`, and ``check()`` for the rules that join fields. These
files import neither torch nor Lightning, so a bad key answers before either loads.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.errors import UserError
from ae_lightning.hints import Fraction, NonNegFloat, NonNegInt, PosFloat, PosInt

Optimizer = Literal["adam", "adamw", "sgd", "adagrad", "adadelta", "rmsprop"]
Scheduler = Literal["none", "cosine", "step", "exponential", "plateau"]
Activation = Literal["leaky_relu", "relu", "sigmoid", "tanh", "gelu", "none"]
Init = Literal["torch", "glorot_uniform"]
ConvLayout = Literal["strided", "pooled"]

PIXELS = 28 * 28
# the widest code accepted: 16x overcomplete is far beyond any variant here (sparse codes are 32-1000
# wide); above it a run is a typo (--latent-dim 100000: minutes per epoch, checkpoints of hundreds of MB)
MAX_LATENT = 16 * PIXELS


@dataclasses.dataclass
class BaseConfig:
    """Optimizer and scheduler settings of every module."""

    optimizer: Optimizer = "adam"
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 0.0
    momentum: Fraction = 0.9  # sgd and rmsprop
    lr_scheduler: Scheduler = "none"
    lr_step_size: PosInt = 10  # step: epochs between decays
    lr_gamma: PosFloat = 0.5  # step / exponential / plateau factor
    lr_decay_start: NonNegInt = 0  # cosine / step / exponential: epochs at the full lr first
    eps: PosFloat | None = None  # adam / adamw / adagrad / adadelta / rmsprop epsilon (null: torch's)

    def check(self) -> None:
        """The rules that join fields; a UserError names the keys. Subclasses extend."""
        if self.eps is not None and self.optimizer == "sgd":
            raise UserError("model.eps: sgd has no epsilon (set it to null, or pick adam, adagrad, adadelta or rmsprop)")


@dataclasses.dataclass
class AutoencoderConfig(BaseConfig):
    latent_dim: PosInt = 32
    hidden_act: Activation = "leaky_relu"
    leaky_slope: NonNegFloat = 0.01
    output_act: Literal["sigmoid", "tanh", "none"] = "sigmoid"  # tanh: see MLPConfig.pixel_scale
    loss: Literal["mse", "bce", "bce_clipped", "bce_logits", "l1", "kl"] = "mse"

    def check(self) -> None:
        super().check()
        if self.latent_dim > MAX_LATENT:
            k = self.latent_dim
            raise UserError(f"model.latent_dim {k} is above {MAX_LATENT}, 16x the {PIXELS} input pixels: such a code "
                            f"does not compress, and each code unit costs 24 bytes of checkpoint (a weight and Adam's "
                            f"two moments, in and out) per unit of the layer beside it: {24 * 196 * k / 1e6:.0f} MB "
                            f"next to the fc variant's 196")
        if self.loss in ("bce", "bce_clipped") and self.output_act != "sigmoid":
            raise UserError(f"model.loss {self.loss} needs model.output_act sigmoid (BCE is defined on [0, 1] "
                            "outputs; bce_logits takes a linear output as logits)")
        if self.loss == "bce_logits" and self.output_act != "none":
            raise UserError("model.loss bce_logits takes the linear output as logits: it needs model.output_act none")


def check_layers(layers: list[int] | None) -> None:
    """A fully connected layer list starts at the 784 input pixels and holds positive sizes."""
    if layers is not None and (not layers or layers[0] != PIXELS or any(n <= 0 for n in layers)):
        raise UserError(f"model.layers must start at 784 (the 28x28 input) and hold positive sizes, got {layers}")


def check_conv(channels: list[int], hidden: list[int] | None) -> None:
    """The conv options shared by ``conv``, ``denoising`` (architecture conv) and ``vae`` (encoder conv)."""
    if not channels or any(c <= 0 for c in channels):
        raise UserError(f"model.channels must list at least one positive channel count, got {channels}")
    if len(channels) > 4:
        raise UserError(f"model.channels: at most 4 stages fit a 28x28 image (28-14-7-3-1), got {len(channels)}")
    if hidden is not None and any(n <= 0 for n in hidden):
        raise UserError(f"model.hidden must hold positive sizes, got {hidden}")
