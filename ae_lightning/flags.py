"""The one parser of every command: its flags checked by the config schema's own code.

Every command (train.py, the studies and ``reproduce``, probes, generate, search.tune, search.bench,
search.report) builds a :class:`Parser`. A flag declares no argparse ``type=`` or ``choices=``: it
names the type hint its text must meet (``hint=``, e.g. a typed parameter it feeds: ``--k`` of the
probes is ``run_probes(k: PosInt)``), or the config key whose hint it takes (``key=``: ``--epochs``
of the studies is ``trainer.max_epochs``). After parsing, each given flag's text is read as YAML and
checked by :func:`ae_lightning.config.coerce`, then replaced by its typed value. A wrong type, an
out-of-range value, and argparse's own complaints are each one ``error:`` line and exit 2
(``config.cli``); an unknown flag names the nearest one.
"""
from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Callable, Sequence

from ae_lightning.config import Text, coerce, nearest
from ae_lightning.errors import UserError
from ae_lightning.resolve import config_hint


class Parser(argparse.ArgumentParser):
    """argparse with typed flags (``add_argument(..., hint=H)`` or ``key="model.lr"``) and one-line errors.
    ``models``: the modules whose schema a ``model.*`` key is read from (the first that has it)."""

    def __init__(self, prog: str | None, doc: str | None, models: Sequence[str] = ("mlp",), **kwargs: Any):
        # no abbreviations: --num-sample would silently be --num-samples; a near miss is named instead
        super().__init__(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                         allow_abbrev=False, **kwargs)
        self.models = tuple(models)
        self.hints: dict[str, Any] = {}  # dest -> type hint
        self.keys: dict[str, str] = {}  # dest -> config key, named in the messages

    def add_argument(self, *names: str, hint: Any = None, key: str | None = None, **kwargs: Any) -> argparse.Action:
        if "type" in kwargs or "choices" in kwargs:
            raise TypeError(f"{names[0]}: a flag is typed by hint= or key=, checked by the config's schema code")
        action = super().add_argument(*names, **kwargs)
        if key is not None:
            self.keys[action.dest] = key
            hint = config_hint(key, self.models)
        if hint is not None:
            self.hints[action.dest] = _given(hint)
        return action

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        ns = super().parse_args(args, namespace)
        for dest, hint in self.hints.items():
            raw = getattr(ns, dest, None)
            if isinstance(raw, str):
                name = flag_name(dest) + (f" ({self.keys[dest]})" if dest in self.keys else "")
                setattr(ns, dest, coerce(name, _text(raw, hint), hint, shown=raw))
        return ns

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments: "):
            first = message.split(": ", 1)[1].split()[0]
            message += nearest(first.split("=")[0], [o for a in self._actions for o in a.option_strings])
        raise UserError(f"{self.prog}: {message} (see --help)")


def _given(hint: Any) -> Any:
    """A flag that is given is never null: ``int | None`` is read as ``int``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return hint


def _text(raw: str, hint: Any) -> Any:
    """A list-typed flag takes ``a,b,c`` as well as YAML's ``[a, b, c]``."""
    base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if typing.get_origin(base) is list and not raw.lstrip().startswith("["):
        return [Text(v.strip()) for v in raw.split(",")]
    return Text(raw)


def param_hints(fn: Callable, names: Sequence[str]) -> dict[str, Any]:
    """The type hints of some parameters of a typed function (for flags that feed it)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return {n: hints[n] for n in names}


def flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")
