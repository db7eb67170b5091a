"""Callbacks that ``fit`` attaches to every run."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from ae_lightning import files
from ae_lightning.data import NUM_CLASSES
from ae_lightning.metrics import per_class_accuracy
from ae_lightning.models import CKPT_KEY
from ae_lightning.models.base import AutoencoderModule
from ae_lightning.viz import confusion_figure, figure_png, tile
from ae_lightning.walks import WALKS, generate, latent_walks


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` on ``val/loss`` that considers only the epochs the module calls selectable
    (``BaseModule.selectable_epoch``): a model trained layer by layer is not the run's best while
    some of its layers are still untrained, however low its validation loss."""

    @staticmethod
    def _selectable(trainer, pl_module) -> bool:
        return pl_module.selectable_epoch(trainer.current_epoch)

    # ModelCheckpoint saves in one of the two hooks, depending on the validation schedule
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._selectable(trainer, pl_module):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._selectable(trainer, pl_module):
            super().on_validation_end(trainer, pl_module)

    @property
    def state_key(self) -> str:  # ModelCheckpoint's key, so that a last.ckpt written before still resumes
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)


class Plateau(EarlyStopping):
    """Stops a run once ``val/loss`` improved by less than ``min_improvement`` (relative) over its last
    ``epochs`` epochs: the best of those epochs against the best before them. A rule for a budget the
    original does not give, which looks at nothing but the validation loss. An ``EarlyStopping``, so
    that whatever refuses early stopping (the randomized variant's layer stages) refuses it too."""

    def __init__(self, epochs: int, min_improvement: float):
        super().__init__(monitor="val/loss", mode="min", patience=epochs)
        self.epochs, self.min_improvement = epochs, min_improvement
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # the rule runs once per validation
        pass

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or value is None:
            return
        self.losses.append(float(value))  # reduced over the ranks: every rank decides alike
        if len(self.losses) > self.epochs:
            before, recent = min(self.losses[:-self.epochs]), min(self.losses[-self.epochs:])
            if before - recent < self.min_improvement * abs(before):
                trainer.should_stop = True
                self.stopped_epoch = trainer.current_epoch

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.losses = list(state_dict["losses"])


class DivergedError(RuntimeError):
    """The loss became NaN or inf. Sweeps mark the trial failed with this message."""


class RunConfigInCheckpoint(L.Callback):
    """Stores the resolved run config in every checkpoint, so one file is enough to rebuild a run
    (the classifier, the probes and generation read it)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint[CKPT_KEY] = {"config": self.cfg}


class FiniteLossGuard(L.Callback):
    """Stops a run whose loss is NaN or inf, with the epoch and the metric in the message.

    Checked once per epoch on the epoch aggregates (a per-step check would sync the device). Under
    DDP those are reduced over the ranks, so every rank sees the same value and stops together."""

    def _check(self, trainer, key: str) -> None:
        value = trainer.callback_metrics.get(key)
        if value is not None and not math.isfinite(float(value)):
            raise DivergedError(f"{key} became {float(value)} at epoch {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, "train/loss_epoch")

    def on_validation_end(self, trainer, pl_module) -> None:
        # on_validation_end: val/loss is logged in the module's epoch-end hook, which Lightning
        # calls after the callbacks' (and before any checkpoint of this validation is written)
        if not trainer.sanity_checking:
            self._check(trainer, "val/loss")


class ReconstructionImages(L.Callback):
    """Every ``every_n_epochs`` (and at the last epoch): fixed validation images, the model's
    input when it differs (denoising), and the reconstructions, as one TensorBoard image."""

    def __init__(self, every_n_epochs: int = 5, n: int = 16):
        self.every, self.n = every_n_epochs, n

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch
        last = epoch + 1 >= (trainer.max_epochs or 0)
        if trainer.sanity_checking or not self.every or not (epoch % self.every == 0 or last):
            return
        if not trainer.is_global_zero:  # DDP: rank 0 writes the images (the others log nothing)
            return
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or not isinstance(pl_module, AutoencoderModule):
            return
        x, _ = trainer.datamodule.tensors("val", pl_module.device, limit=self.n)
        with torch.no_grad():
            was = pl_module.training
            pl_module.eval()
            inp = pl_module.corrupt(x, "val")
            rows = [x] + ([inp] if not torch.equal(inp, x) else []) + [pl_module.output(pl_module.decode(pl_module.encode(inp)))]
            pl_module.train(was)
        experiment.add_image("val/reconstructions", tile(torch.cat(rows), nrow=self.n), global_step=epoch)


class LossHistory(L.Callback):
    """The epoch-by-epoch ``train/loss_epoch`` (the mean of the epoch's batch losses, weighted by
    batch size, as Keras logs it) and ``val/loss``, for ``metrics.json``'s ``history``. Kept in
    the checkpoints, so a resumed run's history is the unbroken run's."""

    KEYS = {"train_loss": "train/loss_epoch", "val_loss": "val/loss"}

    def __init__(self) -> None:
        self.history: dict[str, list[float | None]] = {k: [] for k in self.KEYS}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        for name, key in self.KEYS.items():
            value = trainer.callback_metrics.get(key)
            self.history[name].append(None if value is None else float(value))

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = {k: list(state_dict.get("history", {}).get(k, [])) for k in self.KEYS}


class EpochLines(L.Callback):
    """One line per epoch on stderr, where no progress bar is shown because the output goes to a log
    (nohup, tee, CI), as Keras' and Lightning's own loggers write: ``epoch 3/10  train_loss 0.0213
    val_loss 0.022  12.4 s`` (the epoch's seconds, its validation included). ``label``: the line's
    prefix, so that the runs of a study tell their lines apart. Rank 0 prints; the losses are the
    epoch means that ``LossHistory`` keeps (reduced over the DDP ranks)."""

    def __init__(self, label: str = ""):
        self.prefix = f"{label}: " if label else ""
        self._t0, self._validated = time.monotonic(), False

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0, self._validated = time.monotonic(), False

    def on_validation_end(self, trainer, pl_module) -> None:
        # an epoch without validation (check_val_every_n_epoch) must not show the last one's loss again
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        print(self.prefix + self.line(trainer), file=sys.stderr, flush=True)

    def line(self, trainer) -> str:
        of = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {trainer.current_epoch + 1}{of}"]
        for name, key in LossHistory.KEYS.items():
            value = trainer.callback_metrics.get(key)
            if value is not None and (name != "val_loss" or self._validated):
                parts.append(f"{name} {float(value):.4g}")
        parts.append(f"{time.monotonic() - self._t0:.1f} s")
        return "  ".join(parts)


class ConfusionFigures(L.Callback):
    """The confusion matrix of a module that has one (``BaseModule.confusion_matrix``, the latent
    classifier): a TensorBoard figure ``<stage>/confusion_matrix`` after the last epoch's validation
    and after the test, and ``confusion_test.json`` / ``confusion_test.png`` in the run folder.
    Rank 0 draws and writes (the matrix is already summed over every DDP rank)."""

    def on_validation_end(self, trainer, pl_module) -> None:  # after the module's epoch-end hook
        if not trainer.sanity_checking and trainer.current_epoch + 1 >= (trainer.max_epochs or 0):
            self._figure(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        cm = self._figure(trainer, pl_module, "test")
        log_dir = trainer.log_dir  # a broadcast from rank 0 under DDP: every rank asks
        if cm is None or not trainer.is_global_zero or not log_dir:
            return
        names = class_names(trainer)
        files.write_bytes(Path(log_dir) / "confusion_test.png", figure_png(confusion_figure(cm, names)))
        files.write_json(Path(log_dir) / "confusion_test.json", {
            "classes": names, "rows": "true class", "columns": "predicted class",
            "matrix": cm.tolist(), "per_class_acc": dict(zip(names, per_class_accuracy(cm).tolist()))})

    @staticmethod
    def _figure(trainer, pl_module, stage: str):
        cm = pl_module.confusion_matrix(stage)
        if cm is not None and trainer.is_global_zero and isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_figure(f"{stage}/confusion_matrix", confusion_figure(cm, class_names(trainer)),
                                  global_step=trainer.current_epoch)  # closes the figure
        return cm


def class_names(trainer) -> list[str]:
    dm = trainer.datamodule
    return list(dm.class_names) if dm is not None else [str(i) for i in range(NUM_CLASSES)]


class GenerationImages(L.Callback):
    """At the end of testing (the best checkpoint's weights), the generated grids and the latent walks
    (``ae_lightning.walks``: ``z_interpolate``, ``z_traverse``, a row per pair or unit) to TensorBoard."""

    def __init__(self, n: int = 64, limit: int = 10_000):
        self.n, self.limit = n, limit

    def on_test_end(self, trainer, pl_module) -> None:
        experiment = getattr(trainer.logger, "experiment", None)
        if not isinstance(pl_module, AutoencoderModule) or not hasattr(experiment, "add_image"):
            return
        if not trainer.is_global_zero:  # DDP: rank 0 writes the images
            return
        x, _ = trainer.datamodule.tensors("test", pl_module.device, limit=self.limit)
        images, _ = generate(pl_module, x, self.n)
        for name, imgs in images.items():
            experiment.add_image(f"z_generated/{name}", tile(imgs, nrow=8), global_step=trainer.current_epoch)
        walks, _ = latent_walks(pl_module, x, WALKS if len(x) > 1 else ("traverse",))  # a pair needs 2 images
        for name, rows in walks.items():
            experiment.add_image(f"z_{name}", tile(rows.flatten(0, 1), nrow=rows.shape[1]), global_step=trainer.current_epoch)
