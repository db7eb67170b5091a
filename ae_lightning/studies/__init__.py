"""Studies: the classic autoencoder experiments, one command each.

    python -m ae_lightning.studies compression --dataset fashion_mnist --epochs 20
    python -m ae_lightning.studies all --out studies --epochs 5 --subset 20000

Each study lives in its own module of this package and registers itself with :func:`register`;
the CLI and ``all`` read the registry (no central if/elif). A study is a function
``run(ctx: Context) -> None`` that trains what it needs through ``ae_lightning.fit.fit`` (via
``ctx.train``) and fills ``ctx.report`` with text, tables, figures and numbers.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable

from ae_lightning.errors import UserError


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    run: Callable  # run(ctx: ae_lightning.studies.common.Context) -> None
    order: int  # position in `all` and in the table of contents
    dataset: str  # the dataset of the original study, used when --dataset is not given
    variant: str | None  # default variant; None: the study fixes its own models (--variant refused);
    # "": the study covers every variant unless --variant names one
    summary: str


_REGISTRY: dict[str, Study] = {}
_LOADED = False
_NOT_STUDIES = {"__main__", "common", "report", "pixel_classifier", "reproduce", "runner"}


def register(name: str, title: str, order: int, dataset: str = "mnist", variant: str | None = None,
             summary: str = "") -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise RuntimeError(f"study {name!r} registered twice")
        _REGISTRY[name] = Study(name, title, fn, order, dataset, variant, summary or (fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def _import_all() -> None:
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_STUDIES:
                importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True


def studies() -> list[Study]:
    """Every registered study, in report order."""
    _import_all()
    return sorted(_REGISTRY.values(), key=lambda s: s.order)


def get(name: str) -> Study:
    _import_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown study {name!r}: choose one of {', '.join(s.name for s in studies())}, or all")
    return _REGISTRY[name]
