"""A run's configuration resolved against the classes that consume it.

:mod:`ae_lightning.config` layers the YAML files and checks keys against schemas, but knows no class:
this module, above ``data``, ``fit`` and ``models``, hands it the class of each section (the data
module, the registered model class the config's ``module`` names, the trainer's config). Every caller
that resolves a config calls :func:`load` or :func:`validate` here; the dependency points downward.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from ae_lightning import config, dotted, sourceschema
from ae_lightning.config import TOP_LEVEL, schema_of
from ae_lightning.errors import UserError

# where the data and trainer sections' classes live (section_classes imports them; schema_sources
# reads their signatures from these files without importing them)
DATA_CLASS = ("ae_lightning.data", "MNISTDataModule")
TRAINER_CLASS = ("ae_lightning.fit", "TrainerConfig")


def section_classes(module: str) -> dict[str, type]:
    """``{section: class}`` for a run of the module registered as ``module`` (config.SECTIONS order);
    an unknown module is a UserError that lists the registered ones."""
    # late: data, fit and models import torch and Lightning (seconds); train.py --help, the flags'
    # checks and a config file's mistakes answer before that
    from ae_lightning import data, fit, models

    return {"data": getattr(data, DATA_CLASS[1]), "model": models.get_module(module),
            "trainer": getattr(fit, TRAINER_CLASS[1])}


def schema_sources(module: str) -> dict[str, type]:
    """:func:`section_classes` as stand-ins read from the source (:mod:`ae_lightning.sourceschema`):
    the same schemas, without importing torch and Lightning, and without cross-field checks."""
    try:
        model = sourceschema.model_stub(module)
    except UserError:  # a module registered outside ae_lightning/models (a study's pixel CNN), once imported
        live = sys.modules.get("ae_lightning.models")
        if live is None:
            raise
        model = live.get_module(module)
    return {"data": sourceschema.class_stub(*DATA_CLASS), "model": model,
            "trainer": sourceschema.class_stub(*TRAINER_CLASS)}


def load(variant: str, config_file: str | Path | None = None,
         overrides: dict[str, Any] | None = None, classes: bool = True) -> dict:
    """Resolve and validate a run's configuration (:func:`ae_lightning.config.load`): layers, then
    every key, type and range checked against its class's signature. ``overrides``: dotted keys.

    Checked twice: first against the signatures read from the source (a mistake is one line before
    torch is imported), then against the classes themselves, with their cross-field checks;
    ``classes=False``: the first check alone (the caller runs :func:`validate` later)."""
    cfg = config.load(variant, config_file, overrides, sections=schema_sources)
    return config.validate(cfg, section_classes) if classes else cfg


def validate(cfg: dict) -> dict:
    """Check every key, type and range of a layered config; fill in signature defaults (a new dict)."""
    return config.validate(cfg, section_classes)


def config_hint(key: str, modules: Sequence[str] = ("mlp",)) -> Any:
    """The type hint of a config key: top-level, ``data.*``, ``trainer.*``, or ``model.*`` of the
    first of ``modules`` (registry names) that takes it."""
    section, *rest = dotted.split(key)
    if not rest:
        return TOP_LEVEL[key]
    name = dotted.join(*rest)
    for cls in dict.fromkeys(schema_sources(m)[section] for m in modules):  # data, trainer: one class
        schema = schema_of(cls)
        if name in schema:
            return schema[name][0]
    raise KeyError(key)
