"""One search trial: the sampled values applied to the base config, trained by ``fit.fit``.

There is no second training loop: a trial is ``ae_lightning.fit.fit(cfg, run_dir=<trial dir>,
ckpt_path=<restored last.ckpt>, callbacks=[ReportToTune(...)])``, the very call ``train.py`` makes.
``ReportToTune`` hands Tune, after every epoch, the validation loss and a ``tune.Checkpoint`` of
that epoch's ``last.ckpt``, so ASHA can stop the trial, ``FailureConfig`` can retry it, and a
restored experiment can continue it, each from its last finished epoch.

Reported per epoch (``training_iteration`` = epochs reported):
    val_loss        this epoch's val/loss
    best_val_loss   the objective: the lowest val/loss so far; with --cv K, the mean over folds
                    of each fold's lowest val/loss (the folds finished so far and the current one)
    epoch, fold     the epoch of the current fold (1-based), the fold (0 without --cv)
    epochs_total    epochs trained so far over all folds

After the last epoch and the test, one more result: the objective, the test metrics, the
searched values by dotted key (``model.latent_dim``, for objectives that are config keys) and
``final: True``. A trial whose last result lacks ``final`` did not run in full (ASHA stopped it):
``search.ax_searcher`` tells Ax so.

A trial (or fold) whose ``metrics.json`` exists is finished and is taken exactly as it is: a
restored or retried trial (the driver killed while the trial was finishing, ``--resume``) does not
train, test or log it again, and sends its final result once more (a repeated final result
changes nothing). The trial's folder keeps ``trial_state.json``: fold, epoch, best losses, the
last epoch result handed to Tune, and each epoch's wall time (``epoch_s``: training, validation,
checkpoints).

A trial whose loss turns NaN / inf fails with ``DivergedError`` and its message. It also leaves
``diverged.txt`` in its folder, so a ``FailureConfig`` retry fails at once with the same reason
instead of training into the same divergence again.
"""
from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from lightning.pytorch.callbacks import Checkpoint

from ae_lightning import files, quiet, runlock
from ae_lightning.callbacks import DivergedError
from ae_lightning.fit import fit
from ae_lightning.tblog import TBLogger, write_session
from search.results import DIVERGED, FINAL, METRIC
from search.space import apply

STATE = "trial_state.json"  # inside every Tune checkpoint: fold progress and best-so-far


class ReportToTune(Checkpoint):
    """``tune.report`` once per epoch, with a checkpoint holding this epoch's ``last.ckpt``.

    A ``Checkpoint`` subclass only for its place in the hook order: Lightning runs checkpoint
    callbacks after all others, in the order given, and ``fit`` lists its ModelCheckpoints before
    the caller's callbacks. So in ``on_train_epoch_end`` (where Lightning 2.6's ModelCheckpoint
    saves when validation runs every epoch) this epoch's ``last.ckpt`` and best-checkpoint
    bookkeeping are written before the report copies them; as a plain Callback it ran first and
    reported the previous epoch's file (none at all after the first epoch). FiniteLossGuard has
    raised for a NaN epoch by then too, so a diverged epoch is never reported."""

    def __init__(self, run_dir: Path, state: dict[str, Any], cfg: dict | None = None,
                 hparam_keys: Sequence[str] = (), state_file: Path | None = None):
        self.run_dir, self.state, self.cfg = Path(run_dir), state, cfg
        self.hparam_keys, self.state_file = list(hparam_keys), state_file

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """Tune stops a trial (ASHA) by raising SystemExit inside ``tune.report``, so ``fit`` never
        reaches its HParams session. Write the session here (hparams, no test metrics), without
        an experiment summary: TensorBoard takes the metric columns from a finished trial's, and
        the stopped trial shows in the HParams tab with those columns blank."""
        if not isinstance(exception, SystemExit) or self.cfg is None or not isinstance(trainer.logger, TBLogger):
            return
        write_session(trainer.logger.experiment, self.cfg, self.hparam_keys, None)  # fit's columns: searched keys first

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t_epoch = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        from ray import tune

        if trainer.sanity_checking:
            return
        val = trainer.callback_metrics.get("val/loss")
        if val is None:
            return
        st = self.state
        if trainer.current_epoch + 1 <= st["epoch"]:
            # resumed from a last.ckpt written at this epoch's end: Lightning replays the epoch-end
            # hooks without training; the epoch was reported before the checkpoint was taken
            return
        val = float(val)
        fold = st["fold"]
        st["fold_best"][fold] = min(val, st["fold_best"][fold] if st["fold_best"][fold] is not None else math.inf)
        st["epoch"] = trainer.current_epoch + 1
        bests = [b for b in st["fold_best"] if b is not None]
        st["epochs_total"] = st.get("epochs_total", 0) + 1
        metrics = {"val_loss": val, METRIC: sum(bests) / len(bests), "epoch": st["epoch"], "fold": fold,
                   "epochs_total": st["epochs_total"]}
        st["last_report"] = metrics
        if getattr(self, "_t_epoch", None) is not None:  # training + validation + checkpoints of the epoch
            st.setdefault("epoch_s", []).append(round(time.perf_counter() - self._t_epoch, 4))
        if self.state_file is not None:  # the trial's own record of what it reported (see train_trial)
            files.write_json(self.state_file, st)
        last = self.run_dir / "checkpoints" / "last.ckpt"
        tmp = Path(tempfile.mkdtemp(prefix="tune_ckpt_"))
        try:
            if last.is_file():
                shutil.copy2(last, tmp / "last.ckpt")
            files.write_json(tmp / STATE, st)
            # report() persists (copies) the folder into the trial's storage before returning
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _restored(trial_dir: Path) -> tuple[dict | None, Path | None]:
    """State and ``last.ckpt`` of the checkpoint Tune restored this trial from, if any."""
    from ray import tune

    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None, None
    dest = trial_dir / "restored"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with ckpt.as_directory() as d:
        for name in ("last.ckpt", STATE):
            if (Path(d) / name).is_file():
                shutil.copy2(Path(d) / name, dest / name)
    state = json.loads((dest / STATE).read_text()) if (dest / STATE).is_file() else None
    return state, (dest / "last.ckpt") if (dest / "last.ckpt").is_file() else None


def _trial_folder() -> Path:
    """Where the trial's run folder lives: straight in the experiment's storage folder when that
    is a file system path (local, or NFS shared by a cluster), so TensorBoard sees every epoch at
    once and files written after the last report (test metrics, HParams) are never left behind
    in a staging folder; else Tune's trial dir, which Tune syncs to the storage."""
    from pyarrow.fs import LocalFileSystem
    from ray import tune

    ctx = tune.get_context()
    storage = ctx.get_storage()
    if isinstance(storage.storage_filesystem, LocalFileSystem):
        return Path(storage.trial_fs_path)
    return Path(ctx.get_trial_dir())


# a trial of a resumed sweep waits this long for a worker of the killed driver to end (it holds the
# trial folder's lock until it sees its raylet gone, seconds later)
LEFTOVER_WORKER_WAIT_S = 120.0


@runlock.scoped
def train_trial(config: dict, base: dict, space, cv: int = 0, cpus: float = 1, gpus: float = 0,
                verbose: bool = False) -> None:
    """The Tune function trainable. ``config`` holds the searchers' values, nested by section;
    ``space`` (a ``search.space.Space``) turns them into config values. ``verbose``: the driver's
    --verbose (else Ray Train's per-epoch "Checkpoint successfully created" and Lightning's banners
    stay in the worker)."""
    import torch
    from ray import tune

    quiet.set_verbose(verbose)

    torch.set_num_threads(max(1, int(cpus)))
    trial_dir = _trial_folder()
    trial_dir.mkdir(parents=True, exist_ok=True)
    # before its state and checkpoint are read: a leftover worker may still write them (the
    # sweep's own lock rules out a live driver, so the only other holder is one that is ending)
    runlock.hold(trial_dir, doing="training this trial (a worker of an ended sweep)", wait_s=LEFTOVER_WORKER_WAIT_S)
    marker = trial_dir / DIVERGED
    if marker.is_file():  # a FailureConfig retry of a diverged trial: same reason, no retraining
        raise DivergedError(marker.read_text().strip())
    overrides: dict[str, Any] = {"trainer.accelerator": "gpu" if gpus > 0 else "cpu", "trainer.devices": 1,
                                 "trainer.progress_bar": False}
    cfg = apply(base, {**space.decode(config), **overrides})
    folds = max(cv, 1)
    fold_dir = (lambda k: trial_dir / f"fold_{k}") if folds > 1 else (lambda k: trial_dir)
    keys = list(space.params)
    searched = {k: v for k, v in space.decode(config).items() if k in space.params}
    if all((fold_dir(k) / "metrics.json").is_file() for k in range(folds)):
        # finished before a kill or a crash: taken as it is; its final result (maybe never
        # received) sent once more: a repeated final result changes nothing
        tune.report(_final(trial_dir, fold_dir, folds, searched))
        return
    state, ckpt = _restored(trial_dir)
    state = state or {"fold": 0, "epoch": 0, "fold_best": [None] * folds, "epochs_total": 0}
    for fold in range(state["fold"], folds):
        if fold != state["fold"]:  # a new fold starts from scratch
            state.update(fold=fold, epoch=0)
            ckpt = None
        fold_cfg = apply(cfg, {"data.folds": folds, "data.fold": fold}) if folds > 1 else cfg
        run_dir = fold_dir(fold)
        done = run_dir / "metrics.json"
        if done.is_file():  # a fold finished before a kill or a crash: taken exactly as it is
            state["fold_best"][fold] = json.loads(done.read_text())["best_val_loss"]
            continue
        try:
            # a trial's epoch lines (--verbose) reach the driver's console through Ray's worker logs,
            # prefixed with the worker; by default the driver prints a line per trial instead
            fit(fold_cfg, run_dir=run_dir, ckpt_path=ckpt, verbose=verbose, hparam_keys=keys, epoch_lines=verbose,
                callbacks=[ReportToTune(run_dir, state, fold_cfg, keys, trial_dir / STATE)])
        except DivergedError as e:
            reason = f"{e} (fold {fold})" if folds > 1 else str(e)
            files.write_text(marker, reason + "\n")
            raise DivergedError(reason) from None
    tune.report(_final(trial_dir, fold_dir, folds, searched))


def prune_checkpoints(trial_dir: Path) -> list[Path]:
    """A finished trial's folder (completed, stopped by ASHA or diverged: never trained again) keeps
    its best checkpoint alone: its own last.ckpt, Tune's copies (checkpoint_NNNNNN/) and a restored
    copy go. Returns what was removed."""
    gone = [*trial_dir.glob("checkpoint_*"), *trial_dir.glob("restored"), *trial_dir.glob("**/checkpoints/last.ckpt")]
    for p in gone:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    return gone


def _final(trial_dir: Path, fold_dir, folds: int, searched: dict[str, Any]) -> dict[str, Any]:
    """The trial's last result, once every fold has trained and tested: its objective, its test
    metrics (without --cv), its searched values by dotted key (objectives such as
    ``model.latent_dim``) and ``final: True``, which tells the searcher the trial ran in full."""
    runs = [json.loads((fold_dir(k) / "metrics.json").read_text()) for k in range(folds)]
    path = trial_dir / STATE
    own = json.loads(path.read_text()) if path.is_file() else {}
    last = dict(own.get("last_report") or {})
    last.pop(FINAL, None)
    out = {**last, METRIC: sum(r["best_val_loss"] for r in runs) / folds, **searched, FINAL: True}
    if folds == 1:
        out.update({k: v for k, v in runs[0].items() if k.startswith("test_") and isinstance(v, (int, float))})
    return out
