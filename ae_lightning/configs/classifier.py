"""``model`` of the latent classifier (a head on a trained autoencoder's codes)."""
from __future__ import annotations

import dataclasses

from ae_lightning.configs import model
from ae_lightning.configs.base import BaseConfig
from ae_lightning.errors import UserError
from ae_lightning.hints import Fraction, NonNegInt


@model("classifier")
@dataclasses.dataclass
class ClassifierConfig(BaseConfig):
    encoder: str | None = None  # checkpoint of a trained autoencoder (train.py --encoder)
    finetune: bool = False  # train the encoder too (else frozen, on cached codes)
    hidden: list[int] = dataclasses.field(default_factory=lambda: [128])  # head; [] is a linear head
    dropout: Fraction = 0.0  # after each hidden layer of the head
    standardize_codes: bool = True  # z-score the codes with the training codes' statistics
    label_smoothing: Fraction = 0.0
    augment_shift: NonNegInt = 0  # finetune: random shifts of up to N pixels of training images

    def check(self) -> None:
        super().check()
        if not self.encoder:
            raise UserError("the classifier needs an encoder: pass --encoder PATH/TO/autoencoder.ckpt "
                            "(a checkpoint written by train.py)")
        if self.augment_shift and not self.finetune:
            raise UserError("model.augment_shift needs --finetune (a frozen encoder's codes are computed once, "
                            "from unshifted images)")
        if self.augment_shift > 8:
            raise UserError(f"model.augment_shift must be at most 8 pixels, got {self.augment_shift}")
