"""The contractive autoencoder (``contractive``): reconstruction + lambda * contraction penalty.

``penalty: jacobian`` (default): lambda * mean over images of ||J_f(x)||_F^2, the exact Jacobian of
the code z = f(x) (B,k) with respect to the flattened input x (B,n), n = C*H*W (784 for 28x28).

    one sigmoid layer   z = sigmoid(W x + b):  J = diag(z (1 - z)) W, so
                        ||J||_F^2 = sum_j (z_j (1 - z_j))^2 * ||W_j||^2        (closed form, O(B k))
    any deeper encoder  torch.func.vmap(torch.func.jacrev(f)): k reverse-mode passes, batched over
                        the images (no Python loop per sample); (B,k,n) and differentiable.

``penalty: weights``: lambda * ||W_L ... W_2 W_1||_F^2, the squared Frobenius norm of the product of
the encoder's weight matrices. It is the Jacobian of the encoder with every activation replaced by
the identity: the same at every input, blind to saturation (a sigmoid unit that is switched fully
on or off contracts perfectly but still pays), and for a one-layer encoder simply weight decay.
The Jacobian penalty is what Rifai et al. (2011) define; the weight form is what one study used.

Logged: ``<stage>/recon`` and ``<stage>/contractive_penalty`` (the weighted term), separately.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ae_lightning.configs.contractive import ContractiveConfig
from ae_lightning.models import register
from ae_lightning.models.base import LossOutput
from ae_lightning.models.mlp import MLPAutoencoder


@register(ContractiveConfig)
class ContractiveAutoencoder(MLPAutoencoder):
    def __init__(self, **options: Any):
        super().__init__(**options)
        mods = list(self.encoder)
        # the closed form applies to exactly Linear -> Sigmoid
        self._one_sigmoid = len(mods) == 2 and isinstance(mods[0], nn.Linear) and isinstance(mods[1], nn.Sigmoid)

    def jacobian_norm(self, x: torch.Tensor) -> torch.Tensor:
        """||J_f(x)||_F^2 per image: x (B,C,H,W) -> (B,)."""
        flat = x.flatten(1)  # (B,n)
        if self._one_sigmoid:
            lin = self.encoder[0]
            z = torch.sigmoid(lin(flat))  # (B,k)
            return ((z * (1 - z)).square() * lin.weight.square().sum(1)).sum(1)
        params = dict(self.encoder.named_parameters())

        def f(p: dict, xi: torch.Tensor) -> torch.Tensor:  # one image (n,) -> code (k,)
            return functional_call(self.encoder, p, (xi.unsqueeze(0),)).squeeze(0)

        jac = vmap(jacrev(f, argnums=1), in_dims=(None, 0))(params, flat)  # (B,k,n)
        return jac.square().sum((1, 2))

    def weight_norm(self) -> torch.Tensor:
        """||W_L ... W_1||_F^2 over the encoder's Linear layers."""
        prod = None
        for m in self.encoder:
            if isinstance(m, nn.Linear):
                prod = m.weight if prod is None else m.weight @ prod  # (n_out, n)
        return prod.square().sum()

    def loss(self, x: torch.Tensor, stage: str) -> tuple[torch.Tensor, LossOutput]:
        hp = self.hparams
        z = self.encode(x)
        x_hat, rec = self.reconstruction(self.decode(z), x)
        if hp.penalty == "jacobian":
            # eval: the penalty is logged only, so skip building its graph
            with torch.set_grad_enabled(torch.is_grad_enabled() and stage == "train"):
                pen = self.jacobian_norm(x).mean()
        else:
            pen = self.weight_norm()
        pen = hp.contractive_weight * pen
        return rec + pen, LossOutput(x_hat, z, {"recon": rec.detach(), "contractive_penalty": pen.detach()})
