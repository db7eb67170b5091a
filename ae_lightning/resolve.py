"""A run's configuration resolved against the classes that consume it.

:mod:`ae_lightning.config` layers the YAML files and checks keys against schemas, but knows no class:
this module, above ``data``, ``fit`` and ``models``, hands it the class of each section (the data
module, the registered model class the config's ``module`` names, the trainer's config). Every caller
that resolves a config calls :func:`load` or :func:`validate` here; the dependency points downward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ae_lightning import config, dotted
from ae_lightning.config import TOP_LEVEL, schema_of


def section_classes(module: str) -> dict[str, type]:
    """``{section: class}`` for a run of the module registered as ``module`` (config.SECTIONS order);
    an unknown module is a UserError that lists the registered ones."""
    # late: data, fit and models import torch and Lightning (seconds); train.py --help, the flags'
    # checks and a config file's mistakes answer before that
    from ae_lightning import data, fit, models

    return {"data": data.MNISTDataModule, "model": models.get_module(module), "trainer": fit.TrainerConfig}


def load(variant: str, config_file: str | Path | None = None,
         overrides: dict[str, Any] | None = None) -> dict:
    """Resolve and validate a run's configuration (:func:`ae_lightning.config.load`): layers, then
    every key, type and range checked against its class's signature. ``overrides``: dotted keys."""
    return config.load(variant, config_file, overrides, sections=section_classes)


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
    for cls in dict.fromkeys(section_classes(m)[section] for m in modules):  # data, trainer: one class
        schema = schema_of(cls)
        if name in schema:
            return schema[name][0]
    raise KeyError(key)
