"""The ``data`` section: the options of :class:`ae_lightning.data.MNISTDataModule` (its docstring
explains the splits, ``normalize`` and ``validation``)."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegInt, PosInt


@dataclasses.dataclass
class DataConfig:
    dataset: Literal["mnist", "fashion_mnist"] = "mnist"
    data_dir: str | None = None
    batch_size: PosInt = 256
    eval_batch_size: PosInt = 2000
    val_size: PosInt | None = None
    subset: PosInt | None = None
    test_subset: PosInt | None = None
    normalize: Literal["unit", "standardize", "standardize_global"] = "unit"
    binarize: Literal["none", "static", "dynamic"] = "none"
    data_on_device: bool | None = None
    download: bool = True
    split_seed: NonNegInt = 0
    drop_last: bool = False
    folds: PosInt = 1  # K-fold CV (search --cv K): 1 = the plain train/val split
    fold: NonNegInt = 0  # with folds > 1: which fold of the train+val pool is validation
    validation: Literal["holdout", "test"] = "holdout"  # test: validate on the test file, train on all

    def check(self) -> None:
        if not self.fold < self.folds:
            raise UserError(f"data.fold must lie in 0..folds-1, got fold {self.fold} of {self.folds}")
        if self.validation == "test" and (self.folds > 1 or self.val_size):
            raise UserError("data.validation test validates on the test file: it takes no val_size and no folds")
