"""TensorBoard event files: a failed try leaves none that holds nothing.

TensorBoard's writer creates its file, with only a ``file_version`` record (and, for a resumed
run, its purge mark), as soon as a logger's ``experiment`` is touched; a run that then fails (e.g.
while restoring a checkpoint) would leave such an empty file in the run folder after every try.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

PATTERN = "events.out.tfevents.*"


def listed(run_dir: str | Path) -> set[Path]:
    return set(Path(run_dir).glob(PATTERN))


def _empty(path: Path) -> bool:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    try:
        # file_version opens every file; a resumed run's writer adds its purge mark (session_log)
        return all(e.WhichOneof("what") in ("file_version", "session_log") for e in EventFileLoader(str(path)).Load())
    except Exception:  # unreadable: not ours to judge
        return False


def remove_empty(run_dir: str | Path, keep: Iterable[Path] = ()) -> list[Path]:
    """Remove the event files of ``run_dir`` that hold no record, except those in ``keep``."""
    keep = set(keep)
    gone = [p for p in sorted(listed(run_dir) - keep) if _empty(p)]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone
