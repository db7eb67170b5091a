"""One writer per run folder: an exclusive ``fcntl.flock`` on ``<run>/run.lock`` while a process trains.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so a dead
run never blocks its ``--resume``. A second process that asks for a held folder gets one line
naming the holder's PID (written into the lock file). flock works on local filesystems and tmpfs;
on NFS it depends on the mount (Linux emulates it with NFS byte-range locks since 2.6.12).

``fit`` takes the lock with :func:`hold` as soon as it knows its run folder; :func:`scoped`, its
decorator, releases every lock taken during the call, however the call ends.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import os
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from ae_lightning.errors import UserError

LOCK_NAME = "run.lock"
_held: dict[Path, int] = {}  # run folder -> file descriptor of its lock, in this process
F = TypeVar("F", bound=Callable)


def holder(lock_file: str | Path) -> str:
    """The PID written in a lock file ('' if none)."""
    try:
        return Path(lock_file).read_text().strip()
    except OSError:
        return ""


def hold(run_dir: str | Path, lock_file: str | Path | None = None, doing: str = "training",
         wait_s: float = 0.0) -> None:
    """Lock ``run_dir`` for this process; UserError naming the PID of a live process that holds it.
    ``lock_file``: the lock's own path where it cannot live inside the folder (a sweep's, whose
    folder Tune syncs over); ``doing``: what the holder does, for the message; ``wait_s``: how long
    to wait for the holder to end first (a resumed sweep's trial waits for a worker of the killed
    driver, which ends on its own once it sees its raylet gone)."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    path = Path(lock_file) if lock_file is not None else run_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot lock the run folder {run_dir}: {e.strerror or e}") from None
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise UserError(f"cannot lock the run folder {run_dir}: {e.strerror or e}") from None
            pid = holder(path)
            if time.monotonic() >= deadline:
                os.close(fd)
                raise UserError(f"{run_dir} is in use: process {pid or '(unknown PID)'} is {doing} in it; "
                                f"wait for it to end (or stop it) before --resume") from None
            if not told:
                print(f"waiting up to {wait_s:.0f} s for process {pid or '(unknown PID)'} to let go of {run_dir}",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[run_dir] = fd


def release(run_dir: str | Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor drops the flock


def scoped(fn: F) -> F:
    """Release, when ``fn`` returns or raises, the run locks it took."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        before = set(_held)
        try:
            return fn(*args, **kwargs)
        finally:
            for run_dir in set(_held) - before:
                release(run_dir)

    return run  # type: ignore[return-value]
