"""The ``trainer`` section of a run config (read by :func:`ae_lightning.fit.fit`)."""
from __future__ import annotations

import dataclasses
from typing import Literal

from ae_lightning.hints import Fraction, NonNegFloat, NonNegInt, PosInt


@dataclasses.dataclass
class TrainerConfig:
    max_epochs: PosInt = 10
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: PosInt = 1
    precision: Literal["32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = "32-true"
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
    progress_bar: bool | None = None  # None: on a terminal only
    # speed options, off by default (benchmarks/bench_options.py; figures in docs/benchmarks.md): turn on
    # with --set trainer.<name>=true
    compile: bool = False  # torch.compile the module's loss (the forward of every step)
    channels_last: bool = False  # NHWC memory format for conv weights and activations

    def check(self) -> None:
        """Nothing joins these fields; the machine's devices are checked by ``fit`` (they need torch)."""
