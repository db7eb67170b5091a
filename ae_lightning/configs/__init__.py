"""The config schema: one typed dataclass per config section, none of them importing torch.

``data`` is :class:`~ae_lightning.configs.data.DataConfig`, ``trainer`` is
:class:`~ae_lightning.configs.trainer.TrainerConfig`, and ``model`` is the config of the module the
run's ``module:`` names, registered here with ``@model("name")`` in a file named as its model file
(``configs/vae.py`` beside ``models/vae.py``). The model class takes that config
(``models.register(VAEConfig)``), so the name is written once. A new variant is a model file, its
config file and a YAML file; nothing central changes.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from ae_lightning.errors import UserError

_MODELS: dict[str, type] = {}
_LOADED = False


def model(name: str) -> Callable[[type], type]:
    """Register a config dataclass as the ``model`` section of the module named ``name``."""
    def deco(cls: type) -> type:
        if _MODELS.get(name, cls) is not cls:
            raise RuntimeError(f"model config {name!r} registered twice")
        _MODELS[name] = cls
        cls.registry_name = name
        return cls
    return deco


def _import_all() -> None:
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True


def model_names() -> list[str]:
    _import_all()
    return sorted(_MODELS)


def model_config(name: str) -> type:
    """The config dataclass of the module registered as ``name``; a UserError lists the names."""
    _import_all()
    if name not in _MODELS:
        raise UserError(f"unknown module {name!r}: registered modules are {', '.join(sorted(_MODELS))}")
    return _MODELS[name]
