"""The module registry, and loading this project's checkpoints.

A module's file here registers it with ``@register(ItsConfig)``, the config dataclass of
:mod:`ae_lightning.configs` that names it and is its ``model`` section; the file bears that name
(``models/vae.py`` beside ``configs/vae.py``) and is imported when the module is first asked for.
A new variant is one model file, its config file and one ``configs/<variant>.yaml`` (whose
``module:`` names it). No central if/elif.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import torch

from ae_lightning import checkpoint_io, configs
from ae_lightning.errors import UserError

_REGISTRY: dict[str, type] = {}


def register(config: type) -> Callable[[type], type]:
    """Register a module class under its config's name (``configs.model("name")``); the class is
    built from that config's fields (``cls.Config``)."""
    name = config.registry_name

    def deco(cls: type) -> type:
        if _REGISTRY.get(name, cls) is not cls:
            raise RuntimeError(f"module name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.registry_name, cls.Config = name, config
        return cls
    return deco


def module_names() -> list[str]:
    return configs.model_names()


def get_module(name: str) -> type:
    configs.model_config(name)  # an unknown name: one line that lists the registered ones
    importlib.import_module(f"{__name__}.{name}")
    return _REGISTRY[name]


CKPT_KEY = "ae_lightning"  # checkpoint["ae_lightning"] = {"config": resolved run config}


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict of a run of this project; a clear UserError for anything else."""
    path = Path(path)
    try:  # truncated zip, pickle garbage, an empty file, permissions: one line, and the way out
        ckpt = checkpoint_io.read(path)  # weights only: a refused one is not damage, and says so alone
    except UserError as e:
        if not str(e).startswith("damaged checkpoint"):
            raise
        other = checkpoint_io.intact_beside(path)
        raise UserError(f"{e}; give another checkpoint" + (f", e.g. {other} (intact)" if other else
                        " (none beside it is intact: train the run again)")) from None
    if CKPT_KEY not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{path} is not a checkpoint of an ae-lightning run (no run config inside)")
    return ckpt


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """``(module, run_config)`` from a checkpoint written by ``fit``; the module is in eval mode."""
    ckpt = read_checkpoint(path)
    cfg = ckpt[CKPT_KEY]["config"]
    cls = get_module(cfg["module"])
    try:
        module = cls.load_from_checkpoint(str(path), map_location=map_location, weights_only=True)
    except Exception as e:
        raise UserError(f"cannot load {path} as {cls.__name__}: {type(e).__name__}: {e}") from None
    return module.eval(), cfg
