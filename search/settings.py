"""A sweep's settings: one typed dataclass, checked by the config's own schema code.

Every number or choice a user gives ``search.tune`` is a field here, and each flag is typed by the
field's hint (``flags.Parser``), so a flag is checked exactly as a config key is: ``--num-samples 0``
and ``--set data.batch_size=0`` fail with the same kind of line. The dataclass is saved as
``search.json`` at launch and read back by ``--resume`` and the reports.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegFloat, NonNegInt, PosFloat, PosInt
from search.objectives import Objective

ALGOS, SCHEDULERS = ("ax", "random"), ("asha", "ax", "none")
SAVED_BY = 4  # search.json's format; a sweep saved by another is refused with one line (search.report)


@dataclasses.dataclass
class SweepSettings:
    """What a sweep is; every field but the last group comes from a flag."""

    variant: str = ""
    algo: Literal["ax", "random"] = "ax"
    scheduler: Literal["asha", "ax", "none"] = "none"
    grace_period: PosInt = 1
    stopped_trials: Literal["abandon", "fit"] = "abandon"  # what Ax's model sees of a trial stopped early
    num_samples: PosInt = 200
    max_epochs: PosInt = 40
    cv: NonNegInt = 0
    cpus_per_trial: PosFloat = 1.0
    gpus_per_trial: NonNegFloat = 0.0
    max_concurrent: PosInt | None = None
    max_failures: NonNegInt = 2
    seed: NonNegInt = 0
    epoch_budget: PosInt | None = None  # stop the sweep once its trials trained this many epochs
    time_budget: PosFloat | None = None  # stop the sweep after this many seconds (Tune's time_budget_s)
    retrain_epochs: PosInt | None = None  # best.yaml's full run (None: the variant's own max_epochs)
    keep_checkpoints: bool = False  # a finished trial keeps every checkpoint (else its best one alone)
    objectives: list[str] = dataclasses.field(default_factory=list)  # text forms; [] = the space's
    init_trials: PosInt | None = None  # Sobol trials; None: max(5, 2 x searched keys)
    # resolved at launch
    space_file: str = ""
    space_raw: dict = dataclasses.field(default_factory=dict)
    base: dict = dataclasses.field(default_factory=dict)
    saved_by: int = SAVED_BY

    def sobol_trials(self, n_keys: int) -> int:
        return self.init_trials or max(5, 2 * n_keys)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str) -> "SweepSettings":
        """search.json back; one line for a sweep saved in another format."""
        if not isinstance(data, dict) or data.get("saved_by") != SAVED_BY:
            raise UserError(f"{where}: saved by an older version: start a new sweep")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check(s: SweepSettings, objectives: list[Objective]) -> None:
    """Combinations of settings that can never work (each field was checked by its type)."""
    if s.cv == 1:
        raise UserError("--cv 1: K-fold cross-validation needs K >= 2 (or leave --cv out)")
    if s.gpus_per_trial > 1:
        raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g}: a trial trains on one device; "
                        "use 1 or a fraction (0.5, 0.25) to pack several trials per GPU")
    if s.algo != "ax" and s.init_trials is not None:
        raise UserError("--init-trials applies to --algo ax only")
    if s.stopped_trials != "abandon" and (s.algo != "ax" or s.scheduler == "none"):
        raise UserError(f"--stopped-trials {s.stopped_trials} applies to --algo ax with --scheduler asha or ax")
    if s.scheduler == "ax" and s.algo != "ax":
        raise UserError("--scheduler ax is Ax's own early stopping: it needs --algo ax (or use --scheduler asha)")
    stops = f"--scheduler {s.scheduler}"
    if s.cv and s.scheduler != "none":
        raise UserError(f"--cv with {stops}: the mean over folds exists only when a trial ends, "
                        "so trials cannot be compared early; use one or the other")
    if s.scheduler != "none" and len(objectives) > 1:
        raise UserError(f"{stops} with several objectives: early stopping ranks trials by val_loss alone and "
                        "would stop the front's cheap trials (small latent sizes); use --scheduler none")
    if s.scheduler != "none" and not objectives[0].per_epoch:
        raise UserError(f"{stops} needs val_loss as the objective, not {objectives[0].name}: "
                        "test metrics exist only when a trial ends")
    tested = [o.name for o in objectives if not o.per_epoch and not o.is_param]
    if s.cv and tested:
        raise UserError(f"--cv with the objective {tested[0]}: a trial's test metrics are per fold; with --cv "
                        "the objective is the mean over folds of val_loss")
