"""Studies: the classic autoencoder experiments, one command each.

    python -m ae_lightning.studies compression --dataset fashion_mnist --epochs 20
    python -m ae_lightning.studies all --out studies --epochs 5 --subset 20000

Each study lives in its own module of this package and registers itself with :func:`register`;
the CLI and ``all`` read the registry (no central if/elif). A study is a function
``run(ctx: Context) -> None`` that trains what it needs through ``ae_lightning.fit.fit`` (via
``ctx.train``) and fills ``ctx.report`` with text, tables, figures and numbers. Its parameters
(what a preset entry may set beyond the options every study takes) are a frozen dataclass
registered with it (``params=``), checked by the config's schema code (``config.check_keys``) and
read as ``ctx.params.<name>``.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable

from ae_lightning.config import check_keys
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
    params: type  # a frozen dataclass: the parameters a preset entry may set (NoParams: none)
    reference_budget: str = ""  # the references' training budget, for the combined report of `all`

    def make_params(self, given: dict, where: str, also: tuple[str, ...] = (), prefix: str = "") -> object:
        """``given`` (a preset entry's study parameters) checked against :attr:`params`: one line
        naming an unknown key (with the nearest valid one, ``also`` counted valid), a wrong type
        or an out-of-range value."""
        return self.params(**check_keys(where, given, self.params, what="key", also=also, prefix=prefix,
                                        context=f" of study {self.name}"))


@dataclasses.dataclass(frozen=True)
class NoParams:
    """A study without parameters of its own."""


_REGISTRY: dict[str, Study] = {}
_LOADED = False
_NOT_STUDIES = {"__main__", "common", "fidelity", "plots", "presets", "report", "reproduce", "runner", "seeds"}


def register(name: str, title: str, order: int, dataset: str = "mnist", variant: str | None = None,
             summary: str = "", params: type = NoParams, reference_budget: str = "") -> Callable[[Callable], Callable]:
    if not (dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):
        raise TypeError(f"study {name!r}: params must be a frozen dataclass, got {params!r}")

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise RuntimeError(f"study {name!r} registered twice")
        _REGISTRY[name] = Study(name, title, fn, order, dataset, variant,
                                summary or (fn.__doc__ or "").strip().split("\n")[0], params, reference_budget)
        return fn
    return deco


def _import_all() -> None:
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_STUDIES:
                importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True


def study_names() -> list[str]:
    """The registered studies' names in report order, read from the package's source (its
    ``register("name", ..., order=N)`` calls) without importing the studies, torch and Lightning:
    the command line is checked before they load. ``studies()`` gives the same names."""
    import ast
    from pathlib import Path

    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_STUDIES:
            continue
        tree = ast.parse((Path(__path__[0]) / f"{info.name}.py").read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                order = next((k.value.value for k in node.keywords if k.arg == "order"), 0)
                found.append((order, node.args[0].value))
    return [name for _, name in sorted(found)]


def studies() -> list[Study]:
    """Every registered study, in report order."""
    _import_all()
    return sorted(_REGISTRY.values(), key=lambda s: s.order)


def get(name: str) -> Study:
    _import_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown study {name!r}: choose one of {', '.join(s.name for s in studies())}, or all")
    return _REGISTRY[name]
