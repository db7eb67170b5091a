"""Studies: the classic autoencoder experiments, one command each.

    python -m ae_lightning.studies compression --dataset fashion_mnist --epochs 20
    python -m ae_lightning.studies all --out studies --epochs 5 --subset 20000

Each study is declared in :mod:`ae_lightning.studies.catalog` (torch-free: name, title, order,
dataset, variant, summary and its typed parameters) and lives in the module that bears its name, as
``measure(ctx: Context) -> dict`` (it trains through ``ae_lightning.fit.fit``, ``ctx.train``, and returns
the numbers, which ``runner`` writes as ``results.json``) and ``render(ctx, results)`` (the report, from
the study's folder alone: no training, data or checkpoint, so ``reproduce --render-only`` renders a
finished study again). The line between them: figures of numbers (curves, bars, tables) are drawn by
``render`` from ``results`` (its integer keys as ints again); images of model outputs (reconstructions,
weights, decoded samples, maps of the codes) are measurements, written as PNGs by ``measure`` and only
linked by ``render``. Results written before a key was added are read with that key derived from what
they hold. The CLI and ``all`` read the catalog (no central if/elif); a study's module is imported when
it runs. Its parameters (what a preset entry may set beyond the options every study takes) are checked
by the config's schema code (``config.check_keys``) before torch loads, and read as ``ctx.params.<name>``.
"""
from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from ae_lightning.config import check_keys
from ae_lightning.errors import UserError


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    title: str
    order: int  # position in `all` and in the table of contents
    dataset: str  # the dataset of the original study, used when --dataset is not given
    variant: str | None  # default variant; None: the study fixes its own models (--variant refused);
    # "": the study covers every variant unless --variant names one
    summary: str
    params: type  # a frozen dataclass: the parameters a preset entry may set (NoParams: none)
    reference_budget: str = ""  # the references' training budget, for the combined report of `all`

    @property
    def module(self) -> ModuleType:
        """The study's module, with its ``measure`` and ``render`` (imports torch)."""
        return importlib.import_module(f"{__name__}.{self.name}")

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


def declare(name: str, title: str, order: int, dataset: str, variant: str | None, summary: str,
            params: type = NoParams, reference_budget: str = "") -> None:
    """Declare the study of the module ``ae_lightning.studies.<name>`` (called by the catalog)."""
    if not (dataclasses.is_dataclass(params) and params.__dataclass_params__.frozen):
        raise TypeError(f"study {name!r}: params must be a frozen dataclass, got {params!r}")
    if name in _REGISTRY:
        raise RuntimeError(f"study {name!r} declared twice")
    _REGISTRY[name] = Study(name, title, order, dataset, variant, summary, params, reference_budget)


def studies() -> list[Study]:
    """Every declared study, in report order."""
    importlib.import_module(f"{__name__}.catalog")
    return sorted(_REGISTRY.values(), key=lambda s: s.order)


def study_names() -> list[str]:
    return [s.name for s in studies()]


def get(name: str) -> Study:
    if name not in study_names():
        raise UserError(f"unknown study {name!r}: choose one of {', '.join(study_names())}, or all")
    return _REGISTRY[name]
