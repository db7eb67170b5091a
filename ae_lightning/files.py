"""Atomic file writes: write a temporary file in the same folder, fsync, then rename over the target.

A crash (or kill -9) mid-write leaves either the old file or the new one, never half of one. The
temporary file lies beside the target, so the rename never crosses a filesystem (a rename across
filesystems would be a copy that first truncates the target). No temporary file survives a failure
that Python sees; a kill -9 can leave a ``.<name>.*.tmp`` beside the target, never in its place.

A full disk or a refused permission becomes one :class:`UserError` line naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

from ae_lightning.errors import UserError


class WriteError(UserError):
    """A file could not be written for a reason the user fixes (space, quota, permissions)."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


_UMASK = os.umask(0)
os.umask(_UMASK)


# the errors a user fixes on the machine (space, quota, permissions, a read-only mount)
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def _user_os_error(e: BaseException | None) -> OSError | None:
    """The space / permission OSError behind ``e``, if any: a writer may wrap it (torch.save's zip
    writer raises a RuntimeError about the stream position when its file write failed)."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in _USER_ERRNOS:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (some filesystems, e.g. NFS or FUSE ones, cannot: skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """``with atomic_open(p) as f: f.write(...)``: ``p`` appears complete when the block ends, or
    not at all (the previous ``p`` stays) when it raises. Never opens ``p`` itself for writing."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except Exception as e:
        cause = _user_os_error(e)
        if cause is not None:
            raise WriteError(f"cannot write {path}: {cause.strerror or cause}", path) from None
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()  # numpy / torch scalars
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/inf; null marks a diverged figure
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def checkpoint_file(path: str | Path, runs: bool = False) -> Path:
    """``path`` as an existing checkpoint file (torch-free, so the commands check it before their
    imports); UserError ``checkpoint not found: PATH``, or that it is a folder or another file of a
    run (its config.yaml). ``runs``: a run folder stands for its checkpoint (:func:`run_checkpoint`)."""
    path = Path(path)
    if path.is_dir():
        if runs and (path / "checkpoints").is_dir():
            return run_checkpoint(path)
        if runs and path.name == "checkpoints":
            return run_checkpoint(path.parent)
        raise UserError(f"{path} is a folder, not a checkpoint file" + (" or a run folder (no checkpoints/ in it)"
                                                                         if runs else ""))
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix != ".ckpt" and (path.parent / "checkpoints").is_dir():
        give = f"the run folder, {path.parent}" if runs else f"one of its checkpoints, in {path.parent / 'checkpoints'}"
        raise UserError(f"{path} is a file of a run, not a checkpoint: give {give}")
    return path


def run_checkpoint(run: Path) -> Path:
    """The checkpoint a run folder stands for: the one its test metrics were measured on
    (metrics.json's best_checkpoint), else its newest ``checkpoints/best-*.ckpt``, else
    ``checkpoints/last.ckpt`` (a run stopped before its test)."""
    folder = run / "checkpoints"
    try:
        best = json.loads((run / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        best = None
    # by name in this folder: metrics.json holds the path the run had, and a run folder can move
    named = [folder / Path(best).name] if isinstance(best, str) and best else []
    found = next((p for p in [*named, *sorted(folder.glob("best-*.ckpt"), reverse=True), folder / "last.ckpt"]
                  if p.is_file()), None)
    if found is None:
        raise UserError(f"{run} holds no checkpoint (no best-*.ckpt or last.ckpt in {folder})")
    return found


def run_folder(checkpoint: Path) -> Path | None:
    """The run folder of ``<run>/checkpoints/x.ckpt``; None for a checkpoint elsewhere."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else None
