"""What a run writes to TensorBoard beyond its curves: the HParams tab and the order of the groups.

TensorBoard (2.x) decides what a user sees without clicking, and this module writes for that:

* Scalars / Images: cards are grouped by the tag's first ``/`` part, groups sorted by name, and the
  first two groups are open. The loss curves (``train/``, ``val/``) are those two: Lightning's
  ``epoch`` counter is not logged, nor are the one-point ``test/*`` scalars; what is written once at
  the end goes under names that sort after ``val`` (``z_test/`` for the HParams metrics,
  ``z_generated/`` for decoded random codes, ``z_interpolate`` and ``z_traverse`` for latent walks),
  in groups that stay closed.
* HParams: the tab ticks the first five columns only, after sorting them by ``differs`` (True
  first) and then by name. The columns that matter (a sweep's searched keys, then ``run``: variant
  on dataset, then ``config``: what configs/<variant>.yaml sets, in one line, then lr, batch size and
  epochs while there is room) get ``differs`` and a
  name that keeps their order (``1 model.lr``) with a ``display_name`` (``lr``); the other keys
  follow, unticked. TensorBoard prints numbers with five significant digits (``256.00``):
  integers and lists are written as text, so they read as written.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from ae_lightning import dotted
from ae_lightning.config import CONFIG_DIR, load_yaml
from ae_lightning.errors import UserError
from ae_lightning.models import get_module

SHOWN = 5  # columns the HParams tab ticks by default (TensorBoard's query pane: the first 5)
METRIC_GROUP = "z_test"  # the HParams metrics' scalars: one point each, in a group after train/ and val/

# HParams of a plain run (dotted keys; missing ones skipped), then the variant's own options: the
# model and data keys its configs/<variant>.yaml sets. A sweep's searched keys (``hparam_keys``) first.
HPARAM_KEYS = ("variant", "data.dataset", "model.optimizer", "model.lr", "model.weight_decay", "data.batch_size",
               "trainer.max_epochs", "model.latent_dim", "model.loss", "model.likelihood")


def _flat(cfg: dict) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in dotted.flatten(cfg).items()}


def _variant_keys(cfg: dict) -> list[str]:
    """The model and data keys configs/<variant>.yaml sets (its identity beyond the defaults)."""
    try:
        own = load_yaml(CONFIG_DIR / f"{cfg['variant']}.yaml")
    except UserError:
        own = {}
    return [f"{section}.{k}" for section in ("model", "data") for k in (own.get(section) or {})]


def hparams(cfg: dict, hparam_keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The HParams keys of a run, in order: ``hparam_keys`` (e.g. a sweep's searched keys), the keys
    that matter in every run (:data:`HPARAM_KEYS`), then the variant's own main options. The full
    config stays in config.yaml. Keys the module declares unused (``hparam_options_unused``: the
    VAE has no ``model.loss``, its objective is set by likelihood) are left out unless searched."""
    flat = _flat(cfg)
    unused = set(get_module(cfg["module"]).hparam_options_unused) - set(hparam_keys or ())
    keys = [k for k in (*(hparam_keys or ()), *HPARAM_KEYS, *_variant_keys(cfg)) if k not in unused]
    return {k: flat[k] for k in dict.fromkeys(keys) if k in flat}


@dataclasses.dataclass
class Column:
    name: str  # the HParams name (sorted by TensorBoard); shown ones carry their rank
    display: str  # the column's title
    value: Any  # bool, float or str (integers and lists as text)
    shown: bool


def _cell(value: Any) -> Any:
    if isinstance(value, (bool, str, float)):
        return value
    if isinstance(value, int):
        return str(value)  # a float64 column would print 256 as 256.00
    return "null" if value is None else str(value)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).replace(", ", ",")  # [8,16,32]


def columns(cfg: dict, hparam_keys: Sequence[str] | None = None) -> list[Column]:
    """The HParams columns of a run: the ticked ones first, in order (searched keys, ``run``,
    ``config``, then lr, batch size, epochs up to five), then the other keys of :func:`hparams`."""
    flat = _flat(cfg)
    searched = [k for k in dict.fromkeys(hparam_keys or ()) if k in flat]
    own = [k for k in _variant_keys(cfg) if k in flat and k not in searched]
    shown: list[tuple[str, str, Any]] = [(k, k.split(".")[-1], flat[k]) for k in searched]
    shown.append(("run", "run", f"{cfg['variant']} on {flat.get('data.dataset', '?')}"))
    if own:
        shown.append(("config", f"{cfg['variant']}.yaml",
                      " ".join(f"{k.split('.')[-1]}={_text(flat[k])}" for k in own)))
    # TensorBoard ticks SHOWN columns whatever their differs: the rest of them, the usual suspects
    for k in ("model.lr", "data.batch_size", "trainer.max_epochs", "model.latent_dim"):
        if len(shown) < SHOWN and k in flat and k not in searched and k not in own:
            shown.append((k, k.split(".")[-1], flat[k]))
    out = [Column(f"{i + 1} {key}", display, _cell(v), True) for i, (key, display, v) in enumerate(shown)]
    shorts = [k.split(".")[-1] for k in flat]
    out += [Column(k, k.split(".")[-1] if shorts.count(k.split(".")[-1]) == 1 else k, _cell(v), False)
            for k, v in hparams(cfg).items() if k not in {key for key, _, _ in shown}]
    return out


def summaries(cfg: dict, hparam_keys: Sequence[str] | None, metric_names: Sequence[str],
              experiment: bool = True) -> list:
    """The experiment summary (columns, metrics; unless ``experiment`` is False) and the session's
    start and end, as summary protos."""
    import time

    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    def summary(tag: str, **data) -> Summary:  # the plugin's own summary.py needs TensorFlow
        content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data)
        return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])

    cols = columns(cfg, hparam_keys)
    infos = []
    for c in cols:
        kind = (api_pb2.DATA_TYPE_BOOL if isinstance(c.value, bool) else
                api_pb2.DATA_TYPE_FLOAT64 if isinstance(c.value, float) else api_pb2.DATA_TYPE_STRING)
        infos.append(api_pb2.HParamInfo(name=c.name, display_name=c.display, type=kind, differs=c.shown))
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=f"{METRIC_GROUP}/{m}"), display_name=m)
               for m in metric_names]
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
    for c in cols:
        value = start.hparams[c.name]
        if isinstance(c.value, bool):
            value.bool_value = c.value
        elif isinstance(c.value, float):
            value.number_value = c.value
        else:
            value.string_value = c.value
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [*([summary(metadata.EXPERIMENT_TAG, experiment=api_pb2.Experiment(
                hparam_infos=infos, metric_infos=metrics, time_created_secs=time.time()))] if experiment else []),
            summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
            summary(metadata.SESSION_END_INFO_TAG, session_end_info=end)]


def write_session(writer, cfg: dict, hparam_keys: Sequence[str] | None, metrics: dict[str, float] | None) -> None:
    """One HParams session in the event file of ``writer`` (a ``SummaryWriter``): the columns of
    :func:`columns` and the final ``metrics`` (``{"test_loss": 0.1}``), each a one-point scalar
    under ``z_test/``. ``metrics`` None (a trial ASHA stopped): the session without an experiment
    summary, for TensorBoard takes the metric columns from a finished trial's; its row shows them blank."""
    file_writer = writer._get_file_writer()
    for s in summaries(cfg, hparam_keys, list(metrics or ()), experiment=metrics is not None):
        file_writer.add_summary(s)
    for name, value in (metrics or {}).items():
        writer.add_scalar(f"{METRIC_GROUP}/{name}", value, global_step=0)
    writer.flush()


class TBLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger without what buries the loss curves: no ``epoch`` scalar and no
    one-point ``test/*`` scalars (the test metrics go to the HParams session, :func:`write_session`);
    no HParams session of Lightning's (fit writes its own, once, at the end)."""

    def log_hyperparams(self, params, metrics=None) -> None:  # noqa: D401
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch" and not k.startswith("test/")}
        if metrics:
            super().log_metrics(metrics, step)

    @rank_zero_only
    def log_session(self, cfg: dict, hparam_keys: Sequence[str] | None, metrics: dict[str, float]) -> None:
        write_session(self.experiment, cfg, hparam_keys, metrics)

    @rank_zero_only
    def save(self) -> None:
        """Flush the event file only: Lightning would also write ``hparams.yaml``, which holds ``{}``
        here (the HParams session is in the event file, ``config.yaml`` holds the whole config)."""
        if self._experiment is not None:  # never create an event file just to flush it
            self._experiment.flush()
