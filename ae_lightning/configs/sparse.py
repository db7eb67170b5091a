"""``model`` of the sparse autoencoder: the fully connected one plus its sparsity penalty."""
from __future__ import annotations

import dataclasses

from ae_lightning.configs import model
from ae_lightning.configs.mlp import MLPConfig
from ae_lightning.errors import UserError
from ae_lightning.hints import Fraction, NonNegFloat


@model("sparse")
@dataclasses.dataclass
class SparseConfig(MLPConfig):
    sparsity_weight: NonNegFloat = 1e-4
    sparsity_target: Fraction | None = None
    kl_weight: NonNegFloat = 0.01
    active_threshold: NonNegFloat = 0.01

    def check(self) -> None:
        super().check()
        rho = self.sparsity_target
        if rho is not None:
            if not 0 < rho < 1:
                raise UserError(f"model.sparsity_target must lie strictly between 0 and 1, got {rho}")
            if self.code_act != "sigmoid":
                raise UserError("model.sparsity_target needs model.code_act sigmoid (the KL target compares "
                                "mean activations in (0, 1))")
