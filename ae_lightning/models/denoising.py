"""The denoising autoencoder (``denoising``): corrupted inputs, clean targets.

The network is one of the project's architectures (``architecture``):

    fc    784-392-196-k and back (``layers`` overrides the sizes), LeakyReLU
    deep  784-128-k-128-784
          (784: the 28x28 input; the module's first size is C*H*W of its ``input_shape``)
    conv  the ``conv`` variant's network (``channels``, ``hidden``, ``layout``)

Noise (``noise``), applied to pixels in [0, 1]:

    gaussian     x + noise_factor * N(0, 1), clipped to [0, 1]   (the studies: 0.2, 0.3, 0.6)
    masking      a fraction ``noise_factor`` of the pixels set to 0
    occlusion    one random ``patch_size`` x ``patch_size`` square per image set to 0
    salt_pepper  a fraction ``noise_factor`` of the pixels set to 0 or 1 (half each)

Training noise comes from the global generator (seeded by the run's ``seed``). Validation and test
noise comes from a generator seeded by ``noise_seed`` and the batch index, so every epoch and every
run sees the same corrupted evaluation images.

Metrics: ``test_mse`` / ``test_nrmse`` compare reconstructions of *noisy* inputs with the clean
targets; ``test_mse_clean_input`` / ``test_nrmse_clean_input`` reconstruct the clean inputs.
"""
from __future__ import annotations

from typing import Any

import torch

from ae_lightning.configs.denoising import DenoisingConfig
from ae_lightning.metrics import ReconMetrics
from ae_lightning.models import register
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.models.blocks import conv_autoencoder, mlp_autoencoder
from ae_lightning.models.layers import initialize

ARCH_HIDDEN = {"fc": [392, 196], "deep": [128]}  # the encoder's sizes after the input, before the code


def add_noise(x: torch.Tensor, kind: str, factor: float, patch_size: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of ``x`` (B,C,H,W) in [0, 1]; ``x`` itself is left alone."""
    g = {"generator": generator, "device": x.device}
    if kind == "gaussian":
        return (x + factor * torch.randn(x.shape, **g, dtype=x.dtype)).clamp(0, 1)
    if kind == "masking":
        return x * (torch.rand(x.shape, **g) >= factor)
    if kind == "salt_pepper":
        u = torch.rand(x.shape, **g)  # u < factor: corrupted; salt (1) for the lower half, pepper (0) above
        salt = (u < factor / 2).to(x.dtype)
        return torch.where(u < factor, salt, x)
    if kind == "occlusion":  # one square per image, its top-left corner uniform over valid positions
        b, _, h, w = x.shape
        top = torch.randint(0, h - patch_size + 1, (b, 1, 1), **g)
        left = torch.randint(0, w - patch_size + 1, (b, 1, 1), **g)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = (rows >= top) & (rows < top + patch_size) & (cols >= left) & (cols < left + patch_size)
        return x.masked_fill(inside.unsqueeze(1), 0.0)  # (B,1,H,W)
    raise ValueError(f"unknown noise {kind!r}")


@register(DenoisingConfig)
class DenoisingAutoencoder(AutoencoderModule):
    def __init__(self, **options: Any):
        super().__init__(**options)
        hp = self.hparams
        if hp.architecture == "conv":
            self.encoder, self.decoder = conv_autoencoder(hp.channels, hp.hidden, hp.latent_dim, hp.layout,
                                                          hp.hidden_act, self.input_shape, hp.code_act,
                                                          hp.leaky_slope)
        else:  # layers[0] stands for the input: its size is the input shape's
            hidden = hp.layers[1:] if hp.layers else ARCH_HIDDEN[hp.architecture]
            self.encoder, self.decoder = mlp_autoencoder([self.input_size, *hidden], hp.latent_dim,
                                                         hp.hidden_act, hp.code_act, hp.leaky_slope)
        initialize(self, hp.init)
        self.clean_metrics = {"val": ReconMetrics(), "test": ReconMetrics()}
        self._eval_batch = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x if self.hparams.architecture == "conv" else x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.input_shape)  # logits

    def corrupt(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        hp = self.hparams
        g = None
        if stage != "train":  # the same noise for the same evaluation batch, every epoch and run
            g = torch.Generator(device=x.device)
            g.manual_seed(hp.noise_seed * 1_000_003 + 2 * self._eval_batch + (stage == "test"))
        return add_noise(x, hp.noise, hp.noise_factor, hp.patch_size, g)

    # -- clean-input metrics beside the noisy-input ones -------------------------------------------
    def _eval_step(self, batch, stage: str):
        out = super()._eval_step(batch, stage)  # noisy input -> loss and the metrics against clean x
        self._eval_batch = 0  # corrupt() outside a step (the image callback) uses batch 0's seed
        with torch.no_grad():
            x = batch[0]
            self.clean_metrics[stage].update(self(x), x)
        return out

    def validation_step(self, batch, batch_idx):
        self._eval_batch = batch_idx
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._eval_batch = batch_idx
        self._eval_step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        super()._log_metrics(stage)
        for name, value in self.clean_metrics[stage].compute().items():
            if name != "rel_error":
                self.log_reduced(f"{stage}/{name}_clean_input", value)
        self.clean_metrics[stage].reset()

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.clean_metrics["val"].reset()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.clean_metrics["test"].reset()
