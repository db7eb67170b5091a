"""Dotted keys: ``{"model": {"lr": 0.01}}`` <-> ``{"model.lr": 0.01}``, and ``--set KEY=VALUE``.

The one place that converts between nested mappings and dotted keys: a run's config and its
``--set`` overrides (``config``, ``train.py``), a preset's nested overrides (the studies,
``reproduce``), the HParams columns (``fit``) and a search space's keys (``search``). Each caller
keeps its own checks of which keys are allowed (and their messages); this module only converts.
A leaf: it imports nothing of the project but :mod:`ae_lightning.errors`.
"""
from __future__ import annotations

from typing import Any

from ae_lightning.errors import UserError


def split(key: str) -> list[str]:
    """``"model.lr"`` -> ``["model", "lr"]``; a top-level key is one part."""
    return key.split(".")


def join(*parts: str) -> str:
    return ".".join(parts)


def flatten(nested: dict | None, levels: int | None = None) -> dict[str, Any]:
    """``{"model": {"lr": 0.01}, "seed": 0}`` -> ``{"model.lr": 0.01, "seed": 0}``.

    ``levels``: how many levels of mappings are opened (``1``: the sections only, so a mapping-valued
    key stays one value); ``None``: every level. An empty mapping that is opened gives no key."""
    out: dict[str, Any] = {}
    for key, value in (nested or {}).items():
        if isinstance(value, dict) and (levels is None or levels > 0):
            inner = flatten(value, None if levels is None else levels - 1)
            out.update({f"{key}.{k}": v for k, v in inner.items()})
        else:
            out[key] = value
    return out


def set_in(tree: dict, key: str | list[str], value: Any) -> None:
    """Set the dotted ``key`` in the nested ``tree`` in place, making the mappings on the way."""
    *parents, leaf = split(key) if isinstance(key, str) else key
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def nest(flat: dict[str, Any]) -> dict:
    """``{"model.lr": 0.01, "seed": 0}`` -> ``{"model": {"lr": 0.01}, "seed": 0}`` (the inverse of
    :func:`flatten`)."""
    out: dict = {}
    for key, value in flat.items():
        set_in(out, key, value)
    return out


def parse_set(item: str, usage: str = "KEY=VALUE", quoted: bool = False) -> tuple[str, str]:
    """One ``--set KEY=VALUE``: ``(key, value text)``, the key stripped of spaces; the value's text
    is read by the caller (as ``config.Text`` or ``config.parse_value``). No ``=``: one line,
    ``--set ITEM: expected <usage>`` (``quoted``: the item as ``repr``)."""
    if "=" not in item:
        raise UserError(f"--set {repr(item) if quoted else item}: expected {usage}")
    key, text = item.split("=", 1)
    return key.strip(), text
