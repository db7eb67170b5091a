"""Checkpoints written atomically on any local filesystem, and read with one clear line when damaged.

:class:`AtomicCheckpointIO` is the Lightning ``CheckpointIO`` plugin of every ``fit`` (last, best,
the classifier's and the studies' checkpoints): ``torch.save`` streams into a temporary file beside
the checkpoint, which is flushed, fsynced and renamed over it (``files.atomic_open``). Lightning's
own save writes through fsspec, whose local transaction keeps its temporary file in the system
temporary folder: with the run folder on another filesystem (a second disk, NFS, a tmpfs) the
final move is a copy that first truncates the previous checkpoint.

:func:`read` loads a checkpoint or raises a one-line :class:`UserError` that says how it is damaged
(empty, truncated, not a checkpoint). The commands add the way out: ``--resume`` falls back to the
newest intact checkpoint of the run (:func:`resume_point`); probes, generation and ``--encoder``
name an intact checkpoint beside the damaged one (:func:`intact_beside`).

Every load is ``weights_only``: tensors and plain data, which is all this project's checkpoints
hold, so no allow-list is needed. Checkpoints travel between people and machines, and a pickle
can run code as it loads; one that needs anything else is refused in one line naming it
(``refused checkpoint PATH``, never mistaken for damage), and nothing in it runs.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ae_lightning import files
from ae_lightning.errors import UserError

TEMP_GLOB = ".*.ckpt.*.tmp"  # the temporary files of files.atomic_open for *.ckpt targets
ZIP_MAGIC = b"PK\x03\x04"  # the first bytes of every file torch.save writes
# what a weights-only load refused, as torch's message names it ("GLOBAL posix.system", "but got <class 'x.Y'>")
_REFUSED = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save never opens the checkpoint's own name for writing."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with files.atomic_open(path) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        """Lightning's own loads (``fit(ckpt_path=...)``, ``test(ckpt_path=...)``): weights only, whatever
        the caller asks; explicit, as torch's default yields to ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``."""
        files.checkpoint_file(path)
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except Exception as e:
            raise unreadable(Path(path), e) from None


def unreadable(path: Path, error: BaseException) -> UserError:
    """The one line for a checkpoint that ``torch.load`` refused: ``refused checkpoint PATH`` naming
    the global a weights-only load does not allow (code, or a type that is not data; the load stops
    before it is called), else ``damaged checkpoint PATH: cause``."""
    found = _REFUSED.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
    if found:
        return UserError(f"refused checkpoint {path}: it needs {found.group(1) or found.group(2)}, which is "
                         f"not tensors or plain data (checkpoints load as data only: nothing in it ran)")
    return UserError(f"damaged checkpoint {path}: {why_damaged(path, error)}")


def why_damaged(path: Path, error: BaseException) -> str:
    """A short cause for a checkpoint that ``torch.load`` refused (never torch's advice to load it
    unsafely: a damaged file is not made whole by trusting it)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    text = str(error)
    if size == 0:
        return "empty file (0 bytes)"
    if head != ZIP_MAGIC:  # torch.save writes a zip archive
        return f"not a checkpoint ({size} bytes that are not the zip archive torch.save writes)"
    if isinstance(error, (zipfile.BadZipFile, EOFError)) or "zip archive" in text or "central directory" in text:
        return f"truncated ({size} bytes, an incomplete zip archive)"
    if isinstance(error, pickle.UnpicklingError) or "Weights only load failed" in text:
        return f"not a checkpoint of this project ({size} bytes whose contents torch cannot unpickle safely)"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "weights_only" in first:
        first = ""
    return f"damaged zip archive ({size} bytes; {type(error).__name__}" + (f": {first})" if first else ")")


def read(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (on the CPU), loaded weights only; UserError ``damaged
    checkpoint PATH: cause`` or ``refused checkpoint PATH: ...`` (:func:`unreadable`)."""
    path = files.checkpoint_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise unreadable(path, e) from None
    if not isinstance(ckpt, dict):
        raise UserError(f"damaged checkpoint {path}: not a checkpoint of this project (holds a {type(ckpt).__name__})")
    return ckpt


def intact(path: Path) -> dict[str, Any] | None:
    try:
        return read(path)
    except UserError:
        return None


def _newest_first(folder: Path, skip: Path) -> list[Path]:
    others = [p for p in folder.glob("*.ckpt") if p.is_file() and p.resolve() != skip.resolve()]
    return sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def intact_beside(path: str | Path) -> Path | None:
    """The newest other ``*.ckpt`` in ``path``'s folder that loads, if any."""
    path = Path(path)
    return next((p for p in _newest_first(path.parent, path) if intact(p) is not None), None)


def resume_point(last: str | Path, max_epochs: int | None = None) -> tuple[Path, str | None]:
    """The checkpoint ``--resume`` continues from: ``last`` when it loads, else the intact checkpoint
    of the run with the most training steps, and a one-line note saying so. UserError when none is
    intact (the way out: start the run afresh), or when it trained more than ``max_epochs``."""
    last = Path(last)
    try:
        _check_epochs(last, read(last), max_epochs)
        return last, None
    except UserError as e:
        if not str(e).startswith("damaged checkpoint"):
            raise
        damage = str(e)
    candidates = [(c, p) for p in _newest_first(last.parent, last) if (c := intact(p)) is not None]
    if not candidates:
        raise UserError(f"--resume: {damage}, and no intact checkpoint is left in {last.parent}; "
                        f"train afresh without --resume")
    ckpt, path = max(candidates, key=lambda cp: (int(cp[0].get("global_step", -1)), cp[1].stat().st_mtime))
    _check_epochs(path, ckpt, max_epochs)
    return path, (f"{damage}; resuming from the intact {path.name} instead "
                  f"(saved at epoch {ckpt.get('epoch')}; the epochs after it train again)")


def check_fits(module: torch.nn.Module, path: str | Path) -> int:
    """UserError unless the weights of checkpoint ``path`` have the names and shapes of ``module``'s
    (a ``--resume`` whose flags change the model), before anything of the run is touched. Returns
    the checkpoint's global step (where the resumed run's logging starts again)."""
    ckpt = read(path)
    theirs = ckpt.get("state_dict") or {}
    ours = module.state_dict()
    for k, v in ours.items():
        if k not in theirs:
            problem = f"it has no {k}"
        elif tuple(theirs[k].shape) != tuple(v.shape):
            problem = f"{k} is {tuple(theirs[k].shape)} there and {tuple(v.shape)} in this config"
        else:
            continue
        raise UserError(f"--resume: {path} does not fit this config ({problem}); resume with the run's own "
                        f"model settings")
    extra = [k for k in theirs if k not in ours]
    if extra:
        raise UserError(f"--resume: {path} does not fit this config (it has {extra[0]}, this model has not); "
                        f"resume with the run's own model settings")
    return int(ckpt.get("global_step") or 0)


def _check_epochs(path: Path, ckpt: dict[str, Any], max_epochs: int | None) -> None:
    done = int(ckpt.get("epoch", -1)) + 1  # a checkpoint of the end of epoch e: e + 1 epochs trained
    if max_epochs is not None and done > max_epochs:
        raise UserError(f"--resume: {path} has trained {done} epochs, more than trainer.max_epochs "
                        f"{max_epochs}; give --max-epochs {done} or more")


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files a kill -9 left mid-save in ``folder`` (call with the run's lock held)."""
    stale = sorted(Path(folder).glob(TEMP_GLOB))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
