"""A sweep's settings: one typed dataclass, checked by the config's own schema code.

Every number or choice a user gives ``search.tune`` is a field here, and each flag's argparse type
is derived from the field's type hint (``flag_type``), so a flag is checked exactly as a config key
is: ``--num-samples 0`` and ``--set data.batch_size=0`` fail with the same kind of line. The
dataclass is saved as ``search.json`` at launch and read back by ``--resume`` and the reports.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal

from ae_lightning.config import coerce, parse_value, schema_of
from ae_lightning.errors import UserError
from ae_lightning.hints import NonNegFloat, NonNegInt, PosFloat, PosInt
from search.objectives import Objective

ALGOS, SCHEDULERS = ("ax", "random"), ("asha", "none")
SAVED_BY = 3  # search.json format: 2 = objectives, rank-encoded choices, SweepAxSearch; 3 = real trial configs


@dataclasses.dataclass
class SweepSettings:
    """What a sweep is; every field but the last group comes from a flag."""

    variant: str = ""
    algo: Literal["ax", "random"] = "ax"
    scheduler: Literal["asha", "none"] = "none"
    grace_period: PosInt = 1
    num_samples: PosInt = 200
    max_epochs: PosInt = 40
    cv: NonNegInt = 0
    cpus_per_trial: PosFloat = 1.0
    gpus_per_trial: NonNegFloat = 0.0
    max_concurrent: PosInt | None = None
    max_failures: NonNegInt = 2
    seed: NonNegInt = 0
    epoch_budget: PosInt | None = None  # stop the sweep once its trials trained this many epochs
    retrain_epochs: PosInt | None = None  # best.yaml's full run (None: the variant's own max_epochs)
    keep_checkpoints: bool = False  # a finished trial keeps every checkpoint (else its best one alone)
    objectives: list[str] = dataclasses.field(default_factory=list)  # text forms; [] = the space's
    init_trials: PosInt | None = None  # Sobol trials; None: Ax's rule, max(5, 2 x searched keys)
    num_restarts: PosInt = 20  # acquisition optimisation: Ax's defaults
    raw_samples: PosInt = 1024
    # resolved at launch
    space_file: str = ""
    space_raw: dict = dataclasses.field(default_factory=dict)
    base: dict = dataclasses.field(default_factory=dict)
    choice_encoding: str = "rank"
    # "real": a trial's Tune config holds the real values (what Ray's tables and files print); "searcher":
    # the searchers' encoding (floats as positions in [0, 1], choices as ranks), as sweeps saved before 3
    trial_config: Literal["real", "searcher"] = "real"
    saved_by: int = SAVED_BY

    def sobol_trials(self, n_keys: int) -> int:
        return self.init_trials or max(5, 2 * n_keys)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SweepSettings":
        """search.json back; a sweep saved before this format (no ``saved_by``) is refused by the
        caller, since its searcher state cannot be read by today's searcher."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def flag_type(field: str):
    """The argparse ``type`` of the flag for ``field``: its text read as YAML, then checked against
    the field's hint by ``ae_lightning.config.coerce`` (the config keys' own check)."""
    hint = schema_of(SweepSettings)[field][0]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:  # a flag is never null
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]

    def conv(text: str) -> Any:
        try:
            return coerce("value", parse_value(text), hint)
        except UserError as e:
            raise argparse.ArgumentTypeError(f"{str(e).removeprefix('value: ')}") from None

    conv.__name__ = field  # argparse names the type in its messages
    return conv


def check(s: SweepSettings, objectives: list[Objective]) -> None:
    """Combinations of settings that can never work (each field was checked by its type)."""
    if s.cv == 1:
        raise UserError("--cv 1: K-fold cross-validation needs K >= 2 (or leave --cv out)")
    if s.cv and s.scheduler == "asha":
        raise UserError("--cv with --scheduler asha: the mean over folds exists only when a trial ends, "
                        "so ASHA cannot compare trials early; use one or the other")
    if s.gpus_per_trial > 1:
        raise UserError(f"--gpus-per-trial {s.gpus_per_trial:g}: a trial trains on one device; "
                        "use 1 or a fraction (0.5, 0.25) to pack several trials per GPU")
    if s.algo != "ax":
        for name, value, default in (("--init-trials", s.init_trials, None), ("--num-restarts", s.num_restarts, 20),
                                     ("--raw-samples", s.raw_samples, 1024)):
            if value != default:
                raise UserError(f"{name} applies to --algo ax only")
    if s.num_restarts > s.raw_samples:
        raise UserError(f"--num-restarts {s.num_restarts} exceeds --raw-samples {s.raw_samples}: the restarts are "
                        "chosen among the raw samples")
    if s.scheduler == "asha" and len(objectives) > 1:
        raise UserError("--scheduler asha with several objectives: ASHA ranks trials by val_loss alone and would "
                        "stop the front's cheap trials (small latent sizes); use --scheduler none")
    if s.scheduler == "asha" and not objectives[0].per_epoch:
        raise UserError(f"--scheduler asha needs val_loss as the objective, not {objectives[0].name}: "
                        "test metrics exist only when a trial ends")
    tested = [o.name for o in objectives if not o.per_epoch and not o.is_param]
    if s.cv and tested:
        raise UserError(f"--cv with the objective {tested[0]}: a trial's test metrics are per fold; with --cv "
                        "the objective is the mean over folds of val_loss")
