"""A resumed run supersedes what the interrupted try logged after its checkpoint: TensorBoard
shows every step once (train.py --resume and a sweep's restored trial alike go through fit)."""
from __future__ import annotations

import shutil

from lightning.pytorch.callbacks import Callback

from ae_lightning.fit import fit


class KeepEpochCheckpoint(Callback):
    """Copies last.ckpt after epoch ``epoch`` (0-based): the checkpoint a killed try left."""

    def __init__(self, run_dir, epoch: int, dest):
        self.run_dir, self.epoch, self.dest = run_dir, epoch, dest

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch + 1:  # last.ckpt of the previous epoch is on disk
            shutil.copy2(self.run_dir / "checkpoints" / "last.ckpt", self.dest)


def val_steps(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), purge_orphaned_data=True)
    acc.Reload()
    return [e.step for e in acc.Scalars("val/loss")]


def test_resume_supersedes_the_interrupted_try_in_tensorboard(cfg_for, tmp_path):
    cfg = cfg_for("linear", **{"trainer.max_epochs": 3})
    run = tmp_path / "run"
    kept = tmp_path / "epoch1.ckpt"
    fit(cfg, run_dir=run, verbose=False, callbacks=[KeepEpochCheckpoint(run, 0, kept)])
    first = val_steps(run)
    assert len(first) == 3 and kept.is_file()
    # the try "died" after epoch 1's checkpoint, having logged epochs 2 and 3: resume from it
    fit(cfg, run_dir=run, ckpt_path=kept, verbose=False)
    steps = val_steps(run)
    assert steps == sorted(set(steps)) and len(steps) == 3, steps  # each epoch once, not 5 points


def test_a_try_started_over_in_a_used_folder_supersedes_all_it_logged(cfg_for, tmp_path):
    """A trial retried (or resumed) before its first checkpoint reached Tune trains from scratch
    in its folder: TensorBoard shows the new try's epochs once, not the old try's beside them."""
    cfg = cfg_for("linear", **{"trainer.max_epochs": 2})
    run = tmp_path / "run"
    fit(cfg, run_dir=run, verbose=False)
    fit(cfg, run_dir=run, verbose=False)
    steps = val_steps(run)
    assert steps == sorted(set(steps)) and len(steps) == 2, steps
