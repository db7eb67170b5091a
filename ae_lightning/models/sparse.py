"""The sparse autoencoder (``sparse``): a fully connected autoencoder with a sparsity penalty on the code.

    loss = reconstruction (mean per element, ae_lightning.metrics)
         + sparsity_weight * mean over images of sum_j |z_j|                  (L1 on the activations)
         + kl_weight * sum_j KL(rho || rho_hat_j)   when sparsity_target rho is set,

with rho_hat_j the mean activation of code unit j over the batch (which then must lie in (0, 1):
``code_act: sigmoid``). The L1 term is Keras' ``activity_regularizer=l1(w)``: summed over units,
averaged over the batch.

Logged: ``<stage>/recon``, ``<stage>/sparsity_penalty``, ``<stage>/mean_activation`` (mean z over
images and units) and ``<stage>/active_fraction`` (fraction of (image, unit) pairs with
z > ``active_threshold``, i.e. the average share of code units an image switches on).
"""
from __future__ import annotations

import torch

from ae_lightning.configs.sparse import SparseConfig
from ae_lightning.metrics import EPS
from ae_lightning.models import register
from ae_lightning.models.base import LossOutput
from ae_lightning.models.mlp import MLPAutoencoder


def kl_sparsity(rho: float, z: torch.Tensor) -> torch.Tensor:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), rho_hat = z.mean(0); z (B,k) in (0,1)."""
    rho_hat = z.mean(0).clamp(EPS, 1 - EPS)
    return (rho * (rho / rho_hat).log() + (1 - rho) * ((1 - rho) / (1 - rho_hat)).log()).sum()


@register(SparseConfig)
class SparseAutoencoder(MLPAutoencoder):
    def loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, LossOutput]:
        hp = self.hparams
        z = self.encode(self.corrupt(x, stage))  # (B,k)
        x_hat, rec = self.reconstruction(self.decode(z), x)
        penalty = hp.sparsity_weight * z.abs().sum(1).mean()
        if hp.sparsity_target is not None:
            penalty = penalty + hp.kl_weight * kl_sparsity(hp.sparsity_target, z)
        log = {"recon": rec.detach(), "sparsity_penalty": penalty.detach(), "mean_activation": z.detach().mean(),
               "active_fraction": (z.detach() > hp.active_threshold).float().mean()}
        return rec + penalty, LossOutput(x_hat, z, log)
