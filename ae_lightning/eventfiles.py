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


def hparams_tab(run_dir: str | Path, shown: int = 5) -> dict[str, list]:
    """The HParams tab of a run as TensorBoard shows it: ``columns`` (titles in TensorBoard's order:
    ``differs`` first, then by name), ``ticked`` (the first ``shown`` of them, ticked by default),
    ``values`` (title -> the session's value, as written) and ``metrics`` (titles)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    experiment, values = None, {}
    for path in sorted(listed(run_dir)):
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
                if data.HasField("experiment"):
                    experiment = data.experiment
                elif data.HasField("session_start_info"):
                    values = {k: getattr(x, x.WhichOneof("kind")) for k, x in data.session_start_info.hparams.items()}
    if experiment is None:
        return {"columns": [], "ticked": [], "values": {}, "metrics": []}
    infos = sorted(experiment.hparam_infos, key=lambda h: (not h.differs, h.name))
    titles = [h.display_name or h.name for h in infos]
    return {"columns": titles, "ticked": titles[:shown],
            "values": {h.display_name or h.name: values.get(h.name) for h in infos},
            "metrics": [m.display_name or m.name.tag for m in experiment.metric_infos]}
