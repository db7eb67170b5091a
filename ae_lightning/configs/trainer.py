"""The ``trainer`` section of a run config (read by :func:`ae_lightning.fit.fit`).

Its typed fields are the keys the project reads itself. Any other key is a keyword of Lightning's
``Trainer`` (``accumulate_grad_batches``, ``limit_train_batches``, ``profiler``, ...), passed through
as it is and checked against that signature (:meth:`TrainerConfig.passthrough`); Lightning checks
its value. Callbacks and loggers are added by class path, as the hydra template does.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Literal

from ae_lightning.config import nearest
from ae_lightning.errors import UserError
from ae_lightning.hints import Fraction, NonNegFloat, NonNegInt, PosInt

# Trainer keywords the project sets from its own keys: never passed through
SET_HERE = {"logger": "trainer.loggers", "callbacks": "trainer.callbacks", "enable_progress_bar": "trainer.progress_bar",
            "enable_model_summary": "--verbose", "default_root_dir": "trainer.output_dir", "plugins": "",
            "strategy": "", "num_sanity_val_steps": "", "enable_checkpointing": ""}


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """A class to build from the config: ``{class_path: lightning.pytorch.callbacks.LearningRateMonitor,
    init_args: {logging_interval: epoch}}``."""

    class_path: str
    init_args: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TrainerConfig:
    max_epochs: PosInt = 10
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"  # the project reads it (its device checks)
    devices: PosInt = 1
    precision: str = "32-true"  # Lightning's names: 32-true, 16-mixed, bf16-mixed, ...
    output_dir: str = "runs"
    log_every_n_steps: PosInt = 50
    images_every_n_epochs: NonNegInt = 5  # 0: no reconstruction images
    log_embedding: bool = False  # test codes + labels for TensorBoard's projector
    deterministic: bool = True
    gradient_clip_val: NonNegFloat = 0.0
    early_stopping_patience: NonNegInt = 0  # 0: off; else epochs without val/loss improvement
    # 0: off; else stop once val/loss improved by less than plateau_min_improvement (relative) over this many epochs
    plateau_epochs: NonNegInt = 0
    plateau_min_improvement: Fraction = 0.01
    test_checkpoint: Literal["best", "last"] = "best"  # last: the final epoch's model (Keras' practice)
    # Lightning's bar. None: on a terminal; where stdout or stderr is a log (nohup, tee, CI), one line
    # per epoch on stderr instead (epoch, train and val loss, seconds). true: the bar, even in a log.
    # false: no bar; still the epoch lines in a log (a study's runs; a sweep prints a line per trial)
    progress_bar: bool | None = None
    # speed options, off by default (benchmarks/bench_options.py; figures in docs/benchmarks.md): turn on
    # with --set trainer.<name>=true
    compile: bool = False  # torch.compile the module's loss (the forward of every step)
    channels_last: bool = False  # NHWC memory format for conv weights and activations
    callbacks: list[ClassSpec] = dataclasses.field(default_factory=list)  # Lightning callbacks added to the run
    loggers: list[ClassSpec] = dataclasses.field(default_factory=list)  # Lightning loggers beside TensorBoard's

    def check(self) -> None:
        """Nothing joins these fields; the machine's devices are checked by ``fit`` (they need torch)."""

    @classmethod
    def split(cls, section: dict[str, Any]) -> tuple[TrainerConfig, dict[str, Any]]:
        """A resolved section as its fields, and the Lightning keywords passed through."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return (cls(**{k: v for k, v in section.items() if k in fields}),
                {k: v for k, v in section.items() if k not in fields})

    @classmethod
    def passthrough(cls, extra: dict[str, Any], valid: list[str]) -> None:
        """``extra``: the section's keys beyond the fields, each a keyword of Lightning's ``Trainer``;
        ``valid``: the fields, for the message. Lightning is imported only when a config has one."""
        import lightning  # late: seconds, and only for a key that is not the project's

        takes = [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]
        for key in extra:
            if key in SET_HERE:
                raise UserError(f"trainer.{key} is set by the project" + (f": use {SET_HERE[key]}" if SET_HERE[key] else ""))
            if key not in takes:
                raise UserError(f"unknown config key trainer.{key}{nearest(key, [*valid, *takes])}; valid keys: "
                                f"{', '.join(valid)}, or a keyword of Lightning's Trainer")
