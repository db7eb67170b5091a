"""THE training path: resolved config -> module + datamodule + trainer -> metrics.json.

``train.py``, every study and every search trial call :func:`fit`; there is no second loop.

A run folder ``<output_dir>/<dataset>/<variant>/version_N/`` holds:

    config.yaml              the resolved config (``--config`` accepts it to rerun exactly)
    events.out.tfevents.*    TensorBoard: scalars, reconstructions, HParams with the final metrics
    checkpoints/last.ckpt    written every epoch (``--resume`` continues from it)
    checkpoints/best-*.ckpt  lowest val/loss; the test metrics are measured on it
    metrics.json             written atomically at the end: test_* metrics, epochs, wall time, config
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from ae_lightning import cpus, eventfiles, fid, files, quiet, runlock
from ae_lightning.callbacks import (
    BestCheckpoint,
    ConfusionFigures,
    EpochLines,
    FiniteLossGuard,
    GenerationImages,
    LossHistory,
    Plateau,
    ReconstructionImages,
    RunConfigInCheckpoint,
)
from ae_lightning.checkpoint_io import AtomicCheckpointIO, check_fits
from ae_lightning.configs.trainer import TrainerConfig
from ae_lightning.data import MNISTDataModule
from ae_lightning.errors import Terminated, UserError
from ae_lightning.models import get_module
from ae_lightning.rundir import SharedRunDir, open_run_dir, process_rank
from ae_lightning.tblog import (
    TBLogger,
    hparams,  # noqa: F401  (fit.hparams: search.trainable and the tests read it here)
)
from ae_lightning.text import plural


def _devices(tc: TrainerConfig) -> None:
    """The devices the trainer section asks for exist on this machine (one line else), and torch's
    threads fit beside the other processes' (:func:`_threads_beside_others`)."""
    if tc.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError("trainer.accelerator gpu was asked for, but this machine has no CUDA GPU "
                        "(use --accelerator cpu or auto)")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    on_gpu = tc.accelerator in ("gpu", "cuda") or (tc.accelerator == "auto" and gpus)
    if on_gpu and tc.devices > gpus:
        raise UserError(f"trainer.devices {tc.devices}: this machine has {gpus} CUDA GPU(s) "
                        f"(lower --devices, or --accelerator cpu for {tc.devices} CPU processes)")
    _threads_beside_others(tc.devices)


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    rank: int = 0  # DDP: this process's global rank; only rank 0 writes files (and train.py prints)


def on_terminal() -> bool:
    """Both output streams are a terminal: Lightning's bar writes to stdout and the project's lines to
    stderr, and a log (nohup, tee, CI) takes the epoch lines instead of the bar's carriage returns."""
    return all(s is not None and s.isatty() for s in (sys.stdout, sys.stderr)) and not os.environ.get("CI")


def build(cfg: dict) -> tuple[L.LightningModule, MNISTDataModule]:
    """The module and datamodule of a resolved config (no training): the module takes the data's
    image shape (``dm.dims``, (C, H, W)). Nothing is loaded yet."""
    dm = MNISTDataModule(**cfg["data"])
    module = get_module(cfg["module"])(input_shape=dm.dims, **cfg["model"])
    module.prepare_for_data(dm)  # e.g. the classifier checks the dataset
    return module, dm


@runlock.scoped
def fit(cfg: dict, *, run_dir: str | Path | None = None, ckpt_path: str | Path | None = None,
        callbacks: Sequence[L.Callback] = (), verbose: bool | None = None,
        hparam_keys: Sequence[str] | None = None, epoch_lines: bool | None = None, label: str = "") -> RunResult:
    """Train and test one resolved config (``ae_lightning.resolve.load``); return its metrics.

    ``run_dir``: an existing folder to use (``--resume``, search trials); else a new version_N,
    removed again if the run fails before its first checkpoint.
    ``ckpt_path``: a ``last.ckpt`` to continue from, with its epoch counter and optimizer state.
    ``hparam_keys``: dotted config keys logged first in the HParams tab (a sweep's searched keys);
    the keys of :func:`hparams` follow.
    ``epoch_lines``, ``label``: :class:`EpochLines` (None: where no bar shows and the output is a log).

    DDP (``trainer.devices`` > 1): every rank runs this function. Rank 0 chooses the run folder and
    the others use it; only rank 0 writes config.yaml, metrics.json and TensorBoard, and every rank
    returns the same metrics (reduced over the ranks).
    """
    t0 = time.time()
    tc, passed = TrainerConfig.split(cfg["trainer"])
    _devices(tc)
    bar, lines = _progress(tc.progress_bar, epoch_lines, label)
    verbose = quiet.verbose() if verbose is None else verbose  # the command's --verbose
    quiet.apply(verbose)  # Lightning's banners and repeated warnings: --verbose only
    L.seed_everything(cfg["seed"], workers=True, verbose=False)

    module, dm = build(cfg)
    module = _speed_options(module, tc)
    # a checkpoint of another model is refused before the run folder is touched
    resume_step = check_fits(module, ckpt_path) if ckpt_path else None
    run_dir, created = open_run_dir(cfg, tc.devices, dm, run_dir)
    logger = _logger(run_dir, resume_step, created)
    ckpts, shared = _Checkpoints(run_dir), SharedRunDir(run_dir)
    trainer = _trainer(tc, passed, module, logger, [*ckpts.callbacks(cfg, tc, [*callbacks, *lines]), shared],
                       run_dir, created, verbose, bar)
    if (verbose or on_terminal()) and process_rank() == 0:  # the project's own line: on a terminal
        print(f"data: {dm.data_dir} ({cfg['data']['dataset']})", file=sys.stderr)

    _train(trainer, module, dm, ckpt_path, run_dir, created, logger)
    run_dir, epochs = shared.run_dir, trainer.current_epoch
    if trainer.is_global_zero:
        ckpts.remove_stale_best()
    # trainer.test(ckpt_path=...) restores the callbacks' state too: without this copy, the history
    # would end at the tested checkpoint's epoch (a best epoch before the last)
    loss_history = {k: list(v) for k, v in ckpts.history.history.items()}
    test_ckpt = ckpts.tested(tc.test_checkpoint)
    test = _test(trainer, module, dm, test_ckpt, run_dir, cfg, tc)
    metrics = {
        **test,
        "best_val_loss": ckpts.best_score(),
        "epochs": epochs,
        "history": loss_history,
        "wall_time_s": round(time.time() - t0, 3),
        "run_dir": str(run_dir),
        "best_checkpoint": test_ckpt,
        "data_dir": str(dm.data_dir),
        "config": cfg,
    }
    _finish_logging(logger, trainer, tc, module, dm, cfg, hparam_keys, test)
    if trainer.is_global_zero:
        files.write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics, trainer.global_rank)


def _threads_beside_others(devices: int) -> None:
    """Fewer torch threads while other processes hold cores (``ae_lightning.cpus``), said in one line;
    an explicit ``OMP_NUM_THREADS`` and several devices (DDP's processes) are left as they are."""
    if os.environ.get("OMP_NUM_THREADS") or devices > 1:
        return
    busy = cpus.busy_cores()
    threads = cpus.free_threads(torch.get_num_threads(), busy)
    if threads < torch.get_num_threads():
        print(f"note: other processes keep {busy:.1f} of {os.cpu_count()} cores busy: training on "
              f"{plural(threads, 'torch thread')} (OMP_NUM_THREADS=N chooses)", file=sys.stderr)
        torch.set_num_threads(threads)


def _test(trainer: L.Trainer, module: L.LightningModule, dm: MNISTDataModule, ckpt: str | None,
          run_dir: Path, cfg: dict, tc: TrainerConfig) -> dict[str, float]:
    """The test metrics (``test_mse``, ...) of the checkpoint ``ckpt`` (none: no test), with
    ``test_fid_cls`` where ``model.fid_cls`` asks for it."""
    try:
        results = trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)[0] if ckpt else {}
    except SystemExit:
        if trainer.received_sigterm:  # as in _train
            raise Terminated(f"terminated (SIGTERM) while testing {run_dir}: its training is finished; "
                             "the same command with --resume tests it again") from None
        raise
    test = {k.replace("/", "_"): float(v) for k, v in results.items() if k.startswith("test/")}
    if test and cfg["model"].get("fid_cls"):
        test.update(_test_fid_cls(module, dm, tc, cfg["seed"], trainer.world_size))
    return test


def _test_fid_cls(module: L.LightningModule, dm: MNISTDataModule, tc: TrainerConfig, seed: int,
                  world_size: int) -> dict[str, float]:
    """``model.fid_cls``: the tested module's prior samples, as many as the test split's images, against
    them (``fid.Judge.test_images``), in the features of the dataset's judge (``ae_lightning.fid``;
    trained once, with this function)."""
    if world_size > 1:  # the judge's own training would run inside DDP's processes
        print("note: test_fid_cls is not measured on several devices (model.fid_cls=false hides this)", file=sys.stderr)
        return {}
    judge = fid.load_judge(dm, tc.output_dir, lambda c: fit(c, label="fid_cls judge"), module.device, tc.accelerator)
    distance = judge.distance()
    with torch.no_grad():
        samples = module.sample(distance.n, generator=torch.Generator(module.device).manual_seed(seed))
    return {"test_fid_cls": distance(samples)}


def built(spec: dict[str, Any], base: type, key: str) -> Any:
    """The ``base`` (a Lightning Callback or Logger) that a config's ``{class_path, init_args}`` names."""
    path = spec["class_path"]
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise UserError(f"{key}: cannot import {path}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise UserError(f"{key}: {path} is not a Lightning {base.__name__}")
    try:
        return cls(**spec.get("init_args") or {})
    except (TypeError, ValueError) as e:
        raise UserError(f"{key}: {path}: {e}") from None


def _progress(progress_bar: bool | None, epoch_lines: bool | None, label: str) -> tuple[bool, list[L.Callback]]:
    """Whether Lightning's bar shows (``trainer.progress_bar``; None: on a terminal), and the
    :class:`EpochLines` of the run: where no bar shows and the output is a log, unless
    ``epoch_lines`` says otherwise (a sweep's trials: the driver prints a line per trial)."""
    on_tty = on_terminal()
    bar = on_tty if progress_bar is None else progress_bar
    lines = (not bar and not on_tty) if epoch_lines is None else epoch_lines
    return bar, [EpochLines(label)] if lines else []


def _speed_options(module: L.LightningModule, tc: TrainerConfig) -> L.LightningModule:
    if tc.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if tc.compile:  # an instance attribute: the state_dict and checkpoints keep their plain keys
        module.loss = torch.compile(module.loss)
    return module


def _logger(run_dir: Path, resume_step: int | None, created: bool) -> TBLogger:
    """The run's TensorBoard logger. Resumed: what the interrupted try logged after its checkpoint
    is superseded (TensorBoard drops earlier events from the purge step on), so every step shows
    once; started over in a used folder (a trial retried or resumed before its first checkpoint
    reached Tune): all of it."""
    if resume_step is not None:
        purge = {"purge_step": resume_step + 1}
    elif not created and any(run_dir.glob("events.out.tfevents.*")):
        purge = {"purge_step": 0}
    else:
        purge = {}
    return TBLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False, **purge)


def _finish_logging(logger: TBLogger, trainer: L.Trainer, tc: TrainerConfig, module: L.LightningModule,
                    dm: MNISTDataModule, cfg: dict, hparam_keys: Sequence[str] | None, test: dict[str, float]) -> None:
    """After the test: the embedding (``trainer.log_embedding``), the HParams session with the test
    metrics (rank 0 only; ``ae_lightning.tblog``), and the event file closed."""
    if tc.log_embedding and trainer.is_global_zero:
        _log_embedding(logger, module, dm)
    logger.log_session(cfg, hparam_keys, test)  # rank 0 only: the HParams columns, the test metrics
    logger.finalize("success")


class _Checkpoints:
    """The run's checkpoint callbacks and loss history, and the choice of the tested checkpoint."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "checkpoints"
        # no version counter: an epoch trained again after a kill -9 replaces its best file (atomically)
        self.best = BestCheckpoint(dirpath=self.dir, filename="best-{epoch:03d}", enable_version_counter=False,
                                   monitor="val/loss", mode="min", save_top_k=1, auto_insert_metric_name=False)
        # last.ckpt after every epoch, improved or not (Lightning 2.6's save_last=True writes it only
        # in an epoch that also saved a best one: a kill after a plateau would lose those epochs);
        # no version counter, so that a resumed run overwrites it
        self.last = ModelCheckpoint(dirpath=self.dir, filename="last", enable_version_counter=False)
        self.history = LossHistory()

    def callbacks(self, cfg: dict, tc: TrainerConfig, extra: Sequence[L.Callback]) -> list[L.Callback]:
        """Every callback of the run, in a fixed order: these, the run's own, then ``extra``'s."""
        cbs: list[L.Callback] = [self.best, self.last, RunConfigInCheckpoint(cfg), FiniteLossGuard(), self.history,
                                 ReconstructionImages(tc.images_every_n_epochs), ConfusionFigures(), *extra]
        if tc.images_every_n_epochs:  # decoded random codes at the end of the test (ae_lightning.generate)
            cbs.append(GenerationImages())
        if tc.early_stopping_patience:
            cbs.append(EarlyStopping("val/loss", patience=tc.early_stopping_patience, mode="min"))
        if tc.plateau_epochs:
            cbs.append(Plateau(tc.plateau_epochs, tc.plateau_min_improvement))
        return cbs

    def remove_stale_best(self) -> None:
        """A kill -9 between the best and the last checkpoint of one epoch leaves a best file that the
        resumed run's checkpoint state does not know of: only the best one stays."""
        if self.best.best_model_path:
            for stale in self.dir.glob("best-*.ckpt"):
                if stale.resolve() != Path(self.best.best_model_path).resolve():
                    stale.unlink(missing_ok=True)

    def tested(self, which: Literal["best", "last"]) -> str | None:
        return (self.last.best_model_path if which == "last" else self.best.best_model_path) or \
            self.last.best_model_path or None

    def best_score(self) -> float | None:
        return float(self.best.best_model_score) if self.best.best_model_score is not None else None


def _trainer(tc: TrainerConfig, passed: dict[str, Any], module: L.LightningModule, logger: TBLogger,
             callbacks: list[L.Callback], run_dir: Path, created: bool, verbose: bool, bar: bool) -> L.Trainer:
    """Lightning's Trainer of the run: the project's keys, the config's callbacks and loggers, then
    ``passed`` (its other Trainer keywords, as given). A mistake in them is one line, and leaves no
    run folder."""
    # DDP: a module whose steps leave some trainable parameters unused (the randomized variant's
    # layer-wise stages) says so with ``ddp_find_unused_parameters``; the others skip that search
    ddp_unused = tc.devices > 1 and module.ddp_find_unused_parameters
    try:
        return L.Trainer(
            max_epochs=tc.max_epochs, accelerator=tc.accelerator, devices=tc.devices, precision=tc.precision,
            strategy="ddp_find_unused_parameters_true" if ddp_unused else "auto",
            logger=[logger, *(built(s, Logger, "trainer.loggers") for s in tc.loggers)],
            callbacks=[*callbacks, *(built(s, L.Callback, "trainer.callbacks") for s in tc.callbacks)],
            log_every_n_steps=tc.log_every_n_steps,
            deterministic=tc.deterministic, gradient_clip_val=tc.gradient_clip_val or None,
            enable_progress_bar=bar,
            enable_model_summary=verbose, num_sanity_val_steps=0, default_root_dir=str(run_dir),
            plugins=[AtomicCheckpointIO()],  # every checkpoint: temporary file beside it, fsync, rename
            **passed,
        )
    except (UserError, TypeError, ValueError, MisconfigurationException) as e:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise e if isinstance(e, UserError) else UserError(f"trainer: {e}") from None


def _train(trainer: L.Trainer, module: L.LightningModule, dm: MNISTDataModule, ckpt_path: str | Path | None,
           run_dir: Path, created: bool, logger: TBLogger) -> None:
    """``trainer.fit``; a failed run leaves no folder if it created one and never checkpointed, else
    no empty event file of its own."""
    events = eventfiles.listed(run_dir)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except BaseException:
        if created and not (run_dir / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before its first checkpoint: no folder
        elif process_rank() == 0:
            # the writer flushes in a thread of its own, reopening its file by name: closed first,
            # or a late flush brings back the file removed here
            logger.finalize("failed")
            eventfiles.remove_empty(run_dir, keep=events)  # this try's, if it logged nothing
        if trainer.received_sigterm:  # Lightning's SIGTERMException is a SystemExit without a code: exit 0
            kept = (run_dir / "checkpoints" / "last.ckpt").exists()
            raise Terminated(f"terminated (SIGTERM) while training {run_dir}: " + (
                "its finished epochs are kept (last.ckpt); the same command with --resume continues it" if kept
                else "before its first epoch ended (nothing kept)")) from None
        raise


def _log_embedding(logger: TensorBoardLogger, module: L.LightningModule, dm: MNISTDataModule, n: int = 2000) -> None:
    x, y = dm.tensors("test", limit=n)
    z = module.encode_all(x)
    if z is None:  # a module without codes
        return
    z = z.cpu()
    names = [dm.class_names[i] for i in y.tolist()]
    logger.experiment.add_embedding(z, metadata=names, label_img=x, tag="test_codes")


def summary_line(cfg: dict, metrics: dict) -> str:
    """One line: the headline test figures (accuracy / likelihood first), epochs and wall time."""
    first = ("test_acc", "test_nll", "test_loss", "test_mse", "test_nrmse", "test_rel_error", "test_fid_cls")
    shown = [f"{k}={metrics[k]:.4g}" for k in first if isinstance(metrics.get(k), float)]
    latent = cfg["model"].get("latent_dim")
    return (f"{cfg['variant']} on {cfg['data']['dataset']}" + (f" (latent {latent})" if latent else "") +
            f": {' '.join(shown)} | {plural(metrics['epochs'], 'epoch')}, {metrics['wall_time_s']:.1f} s")
