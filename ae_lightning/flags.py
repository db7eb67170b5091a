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

from ae_lightning.config import Text, coerce
from ae_lightning.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, missing value) are one :class:`UserError` line, not a
    usage block: ``config.cli`` prints it and exits 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(f"{self.prog}: {message} (see --help)")


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
