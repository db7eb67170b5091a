"""Command-line flags through the config schema: the same type and range checks as the config keys.

Every command (train.py, ``python -m ae_lightning.studies``, probes, generate) declares no argparse
``type=`` or ``choices=``: each flag's text is checked by :func:`check` against a type hint, the
hint of the config key it sets (``--epochs`` of the studies is ``trainer.max_epochs``) or of the
typed parameter it feeds (``--k`` of the probes is ``run_probes(k: PosInt)``). A wrong type, an
out-of-range value and argparse's own complaints are each one ``error:`` line and exit 2.
"""
from __future__ import annotations

import argparse
import typing
from typing import Any, Callable, Sequence

from ae_lightning.config import TOP_LEVEL, Text, UserError, coerce, schema_of


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, missing value) are one :class:`UserError` line, not a
    usage block: ``config.cli`` prints it and exits 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


def config_hint(dotted: str, modules: Sequence[str] = ("mlp",)) -> Any:
    """The type hint of a config key: top-level, ``data.*``, ``trainer.*``, or ``model.*`` of the
    first of ``modules`` (registry names) that takes it."""
    from ae_lightning.data import MNISTDataModule
    from ae_lightning.fit import TrainerConfig
    from ae_lightning.models import get_module

    if "." not in dotted:
        return TOP_LEVEL[dotted]
    section, key = dotted.split(".", 1)
    classes = {"data": [MNISTDataModule], "trainer": [TrainerConfig],
               "model": [get_module(m) for m in modules]}[section]
    for cls in classes:
        schema = schema_of(cls)
        if key in schema:
            return schema[key][0]
    raise KeyError(dotted)


def param_hints(fn: Callable, names: Sequence[str]) -> dict[str, Any]:
    """The type hints of some parameters of a typed function (for flags that feed it)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return {n: hints[n] for n in names}


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check(args: argparse.Namespace, hints: dict[str, Any], keys: dict[str, str] | None = None) -> None:
    """Check, and replace by its typed value, every given flag of ``args`` named in ``hints``
    (``dest -> hint``). ``keys`` (``dest -> config key``) puts the key in the message."""
    for dest, hint in hints.items():
        raw = getattr(args, dest, None)
        if raw is None:
            continue
        name = flag_name(dest) + (f" ({keys[dest]})" if keys and dest in keys else "")
        setattr(args, dest, coerce(name, Text(raw) if isinstance(raw, str) else raw, hint))
