"""A run's configuration resolved against its schema: the section dataclasses of
:mod:`ae_lightning.configs`, the model's chosen by the config's ``module``. None imports torch, so
every mistake in a config answers in one line before torch loads. Every caller that resolves a
config calls :func:`load` or :func:`validate` here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ae_lightning import config, configs, dotted
from ae_lightning.config import TOP_LEVEL, schema_of
from ae_lightning.configs.data import DataConfig
from ae_lightning.configs.trainer import TrainerConfig


def sections(module: str) -> dict[str, type]:
    """``{section: dataclass}`` of a run of the module registered as ``module`` (config.SECTIONS
    order); an unknown module is a UserError that lists the registered ones."""
    return {"data": DataConfig, "model": configs.model_config(module), "trainer": TrainerConfig}


def load(variant: str, config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """Resolve and validate a run's configuration (:func:`ae_lightning.config.load`): layers, then
    every key, type, range and cross-field rule. ``overrides``: dotted keys."""
    return config.load(variant, config_file, overrides, sections=sections)


def validate(cfg: dict) -> dict:
    """Check every key, type, range and cross-field rule of a layered config; fill in the defaults (a new dict)."""
    return config.validate(cfg, sections)


def config_hint(key: str, modules: Sequence[str] = ("mlp",)) -> Any:
    """The type hint of a config key: top-level, ``data.*``, ``trainer.*``, or ``model.*`` of the
    first of ``modules`` (registry names) that takes it."""
    section, *rest = dotted.split(key)
    if not rest:
        return TOP_LEVEL[key]
    name = dotted.join(*rest)
    for cls in dict.fromkeys(sections(m)[section] for m in modules):  # data, trainer: one class
        schema = schema_of(cls)
        if name in schema:
            return schema[name][0]
    raise KeyError(key)
