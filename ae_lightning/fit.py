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
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from ae_lightning import eventfiles, files, quiet, runlock
from ae_lightning.callbacks import (
    BestCheckpoint,
    FiniteLossGuard,
    LossHistory,
    Plateau,
    ReconstructionImages,
    RunConfigInCheckpoint,
)
from ae_lightning.checkpoint_io import AtomicCheckpointIO, check_fits, remove_stale_temps
from ae_lightning.config import dump_yaml
from ae_lightning.data import MNISTDataModule
from ae_lightning.errors import UserError
from ae_lightning.generate import GenerationImages
from ae_lightning.hints import Fraction, NonNegFloat, NonNegInt, PosInt
from ae_lightning.models import get_module
from ae_lightning.tblog import TBLogger as _TBLogger
from ae_lightning.tblog import hparams  # noqa: F401  (search.trainable, tests: fit.hparams)
from ae_lightning.text import plural


@dataclasses.dataclass
class TrainerConfig:
    """The ``trainer`` section of a run config."""

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
    # Speed options, measured by benchmarks/bench_options.py (figures in docs/benchmarks.md). Off by
    # default: compile lost on CPU and H100 (0.75-0.99x); channels_last gave conv 1.12x on the CPU
    # but 0.79x on the H100. Turn on with --set trainer.<name>=true.
    compile: bool = False  # torch.compile the module's loss (the forward of every step)
    channels_last: bool = False  # NHWC memory format for conv weights and activations

    @classmethod
    def check_config(cls, trainer: dict[str, Any]) -> None:
        if trainer["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
            raise UserError("trainer.accelerator gpu was asked for, but this machine has no CUDA GPU "
                            "(use --accelerator cpu or auto)")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        on_gpu = trainer["accelerator"] in ("gpu", "cuda") or (trainer["accelerator"] == "auto" and gpus)
        if on_gpu and trainer["devices"] > gpus:
            raise UserError(f"trainer.devices {trainer['devices']}: this machine has {gpus} CUDA GPU(s) "
                            f"(lower --devices, or --accelerator cpu for {trainer['devices']} CPU processes)")


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    rank: int = 0  # DDP: this process's global rank; only rank 0 writes files (and train.py prints)


# DDP: the run folder rank 0 chose, for the processes Lightning's launcher starts (they inherit it)
RUN_DIR_ENV = "AE_LIGHTNING_RUN_DIR"


def process_rank() -> int:
    """This process's global rank as its launcher set it, before any process group exists (0 in a
    plain run; Lightning's DDP script launcher sets LOCAL_RANK in the processes it starts, torchrun
    RANK): Lightning's own ``rank_zero_only.rank``."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    return int(getattr(rank_zero_only, "rank", 0) or 0)


class _SharedRunDir(L.Callback):
    """Every DDP rank takes rank 0's run folder, broadcast once the process group exists (a process
    started by another launcher than Lightning's, e.g. torchrun, has no RUN_DIR_ENV)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.run_dir = Path(trainer.strategy.broadcast(str(self.run_dir), src=0))


def run_root(cfg: dict) -> Path:
    return Path(cfg["trainer"]["output_dir"]) / cfg["data"]["dataset"] / cfg["variant"]


def new_run_dir(cfg: dict) -> Path:
    """The next free ``version_N`` (created exclusively, so concurrent runs never share one)."""
    root = run_root(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. --output-dir names a file
        raise UserError(f"trainer.output_dir {cfg['trainer']['output_dir']}: cannot create the run folder "
                        f"{root} ({e.strerror or e})") from None
    taken = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
    n = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{n}").mkdir()
            return root / f"version_{n}"
        except FileExistsError:
            n += 1


def latest_run_dir(cfg: dict) -> Path:
    """The run ``--resume`` continues: the latest version with a ``last.ckpt`` and no metrics.json.

    Folders of runs that never wrote a checkpoint (killed before their first epoch ended) are
    skipped: there is nothing in them to continue."""
    root = run_root(cfg)
    runs = sorted((p for p in root.glob("version_*") if p.name[8:].isdigit() and
                   ((p / "metrics.json").exists() or (p / "checkpoints" / "last.ckpt").is_file())),
                  key=lambda p: int(p.name[8:]))
    if not runs:
        raise UserError(f"--resume: nothing to resume, no run in {root}")
    run = runs[-1]
    if (run / "metrics.json").exists():
        raise UserError(f"--resume: the latest run {run} already finished (metrics.json exists)")
    if not (run / "checkpoints" / "last.ckpt").is_file():
        raise UserError(f"--resume: {run} has no checkpoints/last.ckpt (it stopped before its first epoch ended)")
    return run


def _quiet_lightning(verbose: bool) -> None:
    quiet.apply(verbose)  # Lightning's banners and repeated warnings: --verbose only


def build(cfg: dict) -> tuple[L.LightningModule, MNISTDataModule]:
    """The module and datamodule of a resolved config (no training)."""
    dm = MNISTDataModule(**cfg["data"])
    module = get_module(cfg["module"])(**cfg["model"])
    prepare = getattr(module, "prepare_for_data", None)  # e.g. the classifier checks the dataset
    if prepare is not None:
        prepare(dm)
    return module, dm


@runlock.scoped
def fit(cfg: dict, *, run_dir: str | Path | None = None, ckpt_path: str | Path | None = None,
        callbacks: Sequence[L.Callback] = (), verbose: bool | None = None,
        hparam_keys: Sequence[str] | None = None) -> RunResult:
    """Train and test one resolved config (``ae_lightning.resolve.load``); return its metrics.

    ``run_dir``: an existing folder to use (``--resume``, search trials); else a new version_N,
    removed again if the run fails before its first checkpoint.
    ``ckpt_path``: a ``last.ckpt`` to continue from, with its epoch counter and optimizer state.
    ``hparam_keys``: dotted config keys logged first in the HParams tab (a sweep's searched keys);
    the keys of :func:`hparams` follow.

    DDP (``trainer.devices`` > 1): every rank runs this function. Rank 0 chooses the run folder and
    the others use it; only rank 0 writes config.yaml, metrics.json and TensorBoard, and every rank
    returns the same metrics (reduced over the ranks).
    """
    t0 = time.time()
    tc = TrainerConfig(**cfg["trainer"])
    on_tty = sys.stderr.isatty() and not os.environ.get("CI")
    verbose = quiet.verbose() if verbose is None else verbose  # the command's --verbose
    _quiet_lightning(verbose)
    L.seed_everything(cfg["seed"], workers=True, verbose=False)

    module, dm = build(cfg)
    if tc.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if tc.compile:  # an instance attribute: the state_dict and checkpoints keep their plain keys
        module.loss = torch.compile(module.loss)
    resume_step = None
    if ckpt_path:  # a checkpoint of another model is refused before the run folder is touched
        resume_step = check_fits(module, ckpt_path)
    rank = process_rank()
    created = not run_dir and rank == 0
    if run_dir:
        run_dir = Path(run_dir)
    elif rank == 0:
        dm.prepare_data()  # missing or corrupt data stops the run before its folder exists
        run_dir = new_run_dir(cfg)
        if tc.devices > 1:
            os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the DDP processes Lightning starts
    else:  # a DDP process: rank 0's folder (from the launcher's environment; else broadcast at setup)
        run_dir = Path(os.environ.get(RUN_DIR_ENV) or run_root(cfg) / "version_unknown")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        runlock.hold(run_dir)  # one writer per run: a second process on this folder is refused here
        remove_stale_temps(run_dir / "checkpoints")  # a kill -9 mid-save left them; we are the writer now
        files.write_text(run_dir / "config.yaml", dump_yaml(cfg))

    # resumed: what the interrupted try logged after its checkpoint is superseded (TensorBoard
    # drops earlier events from the purge step on), so every step shows once; started over in a
    # used folder (a trial retried or resumed before its first checkpoint reached Tune): all of it
    if resume_step is not None:
        purge = {"purge_step": resume_step + 1}
    elif not created and any(run_dir.glob("events.out.tfevents.*")):
        purge = {"purge_step": 0}
    else:
        purge = {}
    logger = _TBLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False, **purge)
    # no version counter: an epoch trained again after a kill -9 replaces its best file (atomically)
    best = BestCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", enable_version_counter=False,
                           monitor="val/loss", mode="min", save_top_k=1, auto_insert_metric_name=False)
    # last.ckpt after every epoch, improved or not (Lightning 2.6's save_last=True writes it only in
    # an epoch that also saved a best one: a kill after a plateau would lose those epochs);
    # no version counter, so that a resumed run overwrites it
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
    history = LossHistory()
    cbs: list[L.Callback] = [best, last, RunConfigInCheckpoint(cfg), FiniteLossGuard(), history,
                             ReconstructionImages(tc.images_every_n_epochs), *callbacks]
    if tc.images_every_n_epochs:  # decoded random codes at the end of the test (ae_lightning.generate)
        cbs.append(GenerationImages())
    if tc.early_stopping_patience:
        cbs.append(EarlyStopping("val/loss", patience=tc.early_stopping_patience, mode="min"))
    if tc.plateau_epochs:
        cbs.append(Plateau(tc.plateau_epochs, tc.plateau_min_improvement))
    # DDP: a module whose steps leave some trainable parameters unused (the randomized variant's
    # layer-wise stages) says so with ``ddp_find_unused_parameters``; the others skip that search
    strategy = "ddp_find_unused_parameters_true" if tc.devices > 1 and getattr(
        module, "ddp_find_unused_parameters", False) else "auto"
    trainer = L.Trainer(
        max_epochs=tc.max_epochs, accelerator=tc.accelerator, devices=tc.devices, precision=tc.precision,
        strategy=strategy,
        logger=logger, callbacks=cbs, log_every_n_steps=tc.log_every_n_steps,
        deterministic=tc.deterministic, gradient_clip_val=tc.gradient_clip_val or None,
        enable_progress_bar=on_tty if tc.progress_bar is None else tc.progress_bar,
        enable_model_summary=verbose, num_sanity_val_steps=0, default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],  # every checkpoint: temporary file beside it, fsync, rename
    )
    shared = _SharedRunDir(run_dir)
    trainer.callbacks.append(shared)
    if (verbose or on_tty) and rank == 0:  # the project's own line: on a terminal
        print(f"data: {dm.data_dir} ({cfg['data']['dataset']})", file=sys.stderr)
    events = eventfiles.listed(run_dir)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except BaseException:
        if created and not (run_dir / "checkpoints" / "last.ckpt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before its first checkpoint: no folder
        elif rank == 0:
            # the writer flushes in a thread of its own, reopening its file by name: closed first,
            # or a late flush brings back the file removed here
            logger.finalize("failed")
            eventfiles.remove_empty(run_dir, keep=events)  # this try's, if it logged nothing
        raise
    run_dir = shared.run_dir
    epochs = trainer.current_epoch
    if trainer.is_global_zero and best.best_model_path:
        # a kill -9 between the best and the last checkpoint of one epoch leaves a best file that the
        # resumed run's checkpoint state does not know of: only the best one stays
        for stale in (run_dir / "checkpoints").glob("best-*.ckpt"):
            if stale.resolve() != Path(best.best_model_path).resolve():
                stale.unlink(missing_ok=True)
    # trainer.test(ckpt_path=...) restores the callbacks' state too: without this copy, the history
    # would end at the tested checkpoint's epoch (a best epoch before the last)
    loss_history = {k: list(v) for k, v in history.history.items()}
    test_ckpt = (last.best_model_path if tc.test_checkpoint == "last" else best.best_model_path) or \
        last.best_model_path or None
    results = trainer.test(module, datamodule=dm, ckpt_path=test_ckpt, verbose=False)[0] if test_ckpt else {}
    test = {k.replace("/", "_"): float(v) for k, v in results.items() if k.startswith("test/")}
    metrics = {
        **test,
        "best_val_loss": float(best.best_model_score) if best.best_model_score is not None else None,
        "epochs": epochs,
        "history": loss_history,
        "wall_time_s": round(time.time() - t0, 3),
        "run_dir": str(run_dir),
        "best_checkpoint": test_ckpt,
        "data_dir": str(dm.data_dir),
        "config": cfg,
    }
    if tc.log_embedding and trainer.is_global_zero:
        _log_embedding(logger, module, dm)
    logger.log_session(cfg, hparam_keys, test)  # rank 0 only: HParams columns, the test metrics
    logger.finalize("success")
    if trainer.is_global_zero:
        files.write_json(run_dir / "metrics.json", metrics)
    return RunResult(run_dir, metrics, trainer.global_rank)


def _log_embedding(logger: TensorBoardLogger, module: L.LightningModule, dm: MNISTDataModule, n: int = 2000) -> None:
    if not hasattr(module, "encode_all"):
        return
    x, y = dm.tensors("test", limit=n)
    z = module.encode_all(x).cpu()
    names = [dm.class_names[i] for i in y.tolist()]
    logger.experiment.add_embedding(z, metadata=names, label_img=x, tag="test_codes")


def summary_line(cfg: dict, metrics: dict) -> str:
    """One line: the headline test figures (accuracy / likelihood first), epochs and wall time."""
    first = ("test_acc", "test_nll", "test_loss", "test_mse", "test_nrmse", "test_rel_error")
    shown = [f"{k}={metrics[k]:.4g}" for k in first if isinstance(metrics.get(k), float)]
    latent = cfg["model"].get("latent_dim")
    return (f"{cfg['variant']} on {cfg['data']['dataset']}" + (f" (latent {latent})" if latent else "") +
            f": {' '.join(shown)} | {plural(metrics['epochs'], 'epoch')}, {metrics['wall_time_s']:.1f} s")
