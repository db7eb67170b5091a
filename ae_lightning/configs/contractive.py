"""``model`` of the contractive autoencoder: the fully connected one plus its penalty."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.configs import model
from ae_lightning.configs.mlp import MLPConfig
from ae_lightning.hints import NonNegFloat


@model("contractive")
@dataclasses.dataclass
class ContractiveConfig(MLPConfig):
    contractive_weight: NonNegFloat = 1e-3
    penalty: Literal["jacobian", "weights"] = "jacobian"
