"""The run folder ``<output_dir>/<dataset>/<variant>/version_N/``: choosing, creating and claiming
it, and sharing rank 0's choice with the other DDP processes (``fit`` uses these)."""
from __future__ import annotations

import os
from pathlib import Path

import lightning as L

from ae_lightning import files, runlock
from ae_lightning.checkpoint_io import remove_stale_temps
from ae_lightning.config import dump_yaml
from ae_lightning.errors import UserError

# DDP: the run folder rank 0 chose, for the processes Lightning's launcher starts (they inherit it)
RUN_DIR_ENV = "AE_LIGHTNING_RUN_DIR"


def process_rank() -> int:
    """This process's global rank as its launcher set it, before any process group exists (0 in a
    plain run; Lightning's DDP script launcher sets LOCAL_RANK in the processes it starts, torchrun
    RANK): Lightning's own ``rank_zero_only.rank``."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    return int(getattr(rank_zero_only, "rank", 0) or 0)


class SharedRunDir(L.Callback):
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


def open_run_dir(cfg: dict, devices: int, dm, run_dir: str | Path | None) -> tuple[Path, bool]:
    """``(run folder, created here)``. Rank 0 creates a new version_N (or takes the given folder),
    locks it and writes config.yaml; a DDP process takes rank 0's."""
    rank = process_rank()
    created = not run_dir and rank == 0
    if run_dir:
        run_dir = Path(run_dir)
    elif rank == 0:
        dm.prepare_data()  # missing or corrupt data stops the run before its folder exists
        run_dir = new_run_dir(cfg)
        if devices > 1:
            os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the DDP processes Lightning starts
    else:  # a DDP process: rank 0's folder (from the launcher's environment; else broadcast at setup)
        run_dir = Path(os.environ.get(RUN_DIR_ENV) or run_root(cfg) / "version_unknown")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        runlock.hold(run_dir)  # one writer per run: a second process on this folder is refused here
        remove_stale_temps(run_dir / "checkpoints")  # a kill -9 mid-save left them; we are the writer now
        files.write_text(run_dir / "config.yaml", dump_yaml(cfg))
    return run_dir, created
