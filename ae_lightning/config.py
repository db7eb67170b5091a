"""Layered, strictly validated configuration.

A run's configuration is plain data, a dict with three sections plus three top-level keys:

    variant: fc            # name of configs/<variant>.yaml
    module: mlp            # registry name of the LightningModule class that trains it
    seed: 0
    data:    {...}         # fields of ae_lightning.configs.data.DataConfig
    model:   {...}         # fields of the module's config (ae_lightning.configs.<module>)
    trainer: {...}         # fields of ae_lightning.configs.trainer.TrainerConfig

Layers, later wins: configs/defaults.yaml, configs/<variant>.yaml, --config FILE, flags / --set.

The schema is the typed dataclasses of :mod:`ae_lightning.configs`, one per section, none of them
importing torch (``Annotated[int, Range(gt=0)]`` for ranges, ``Literal[...]`` for choices). An
unknown key, a wrong type or an out-of-range value raises :class:`UserError` with one line that
names the key. Nothing falls back silently.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, Union

import yaml

from ae_lightning import dotted
from ae_lightning.errors import Terminated, UserError
from ae_lightning.hints import Range, Seed

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"
SECTIONS = ("data", "model", "trainer")


def cli(main: Callable[..., int]) -> Callable[..., int]:
    """Wraps every command's ``main(argv) -> exit code``: a UserError raised anywhere inside becomes
    one line, ``error: <message>``, on stderr and exit code 2; never a traceback. A run terminated
    (SIGTERM, ``errors.Terminated``) is one line too, and exit code 143."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Terminated as e:
            print(f"error: {e}", file=sys.stderr)
            return 143

    return run


TOP_LEVEL = {"variant": str, "module": str, "seed": Seed}


# ----------------------------------------------------------------------------------------------
# YAML: PyYAML follows YAML 1.1, where "1e-3" is a *string*. Users write it everywhere, so teach
# the loader the YAML 1.2 float form instead of coercing strings later.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


class Text(str):
    """A value typed on the command line (a flag, ``--set``): :func:`coerce` reads it as YAML, unless
    its key takes text (a path stays ``"2024"``, ``--precision 32`` stays ``"32"``)."""


def _takes_text(hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _takes_text(args[0])
    if origin in (Union, types.UnionType):
        return any(_takes_text(a) for a in args if a is not type(None))
    if origin is Literal:
        return all(isinstance(a, str) for a in args)
    return hint is str or hint is Path


def parse_value(text: str) -> Any:
    """A flag or --set value, read as YAML so ``1e-3``, ``[784, 200]`` and ``null`` work."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def load_yaml(path: str | Path, empty_ok: bool = True) -> dict:
    """The mapping in a YAML file. ``empty_ok=False`` (a user's ``--config``): an empty file, or one
    of comments only, is refused rather than read as "no settings"."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a config file (give a YAML file, e.g. a run's config.yaml)")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        raise UserError(f"{path}: not valid YAML: {_yaml_cause(e)}") from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not valid YAML ({first})") from None
    if data is None:
        if not empty_ok:
            raise UserError(f"{path} is empty (no settings in it): give a config with at least one key, "
                            f"or leave out --config")
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _yaml_cause(e: yaml.MarkedYAMLError) -> str:
    """Where and why: ``line 3, column 1: a tab character (YAML indents with spaces only)``."""
    mark = e.problem_mark or e.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = e.problem or e.context or type(e).__name__
    if "'\\t'" in problem:
        problem = "a tab character (YAML indents with spaces only)"
    elif e.context and e.context not in problem and not e.context.startswith("while scanning for the next token"):
        problem += f" ({e.context}" + (f" from line {e.context_mark.line + 1})" if e.context_mark else ")")
    return where + problem


def dump_yaml(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


# ----------------------------------------------------------------------------------------------
# Schema from signatures
def schema_of(cls: type) -> dict[str, tuple[Any, Any]]:
    """``{name: (type hint, default)}`` of every field of the dataclass ``cls`` (a config section,
    a study's parameters, a sweep's settings), its bases' fields included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: (hints[f.name], f.default if f.default is not dataclasses.MISSING
                     else f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            for f in dataclasses.fields(cls)}


def defaults_of(cls: type) -> dict[str, Any]:
    return {k: copy.deepcopy(d) for k, (_, d) in schema_of(cls).items()}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, *meta = args
        rng = next((m for m in meta if isinstance(m, Range)), None)
        text = _describe(base)
        if rng is not None:
            bounds = ((">", rng.gt), (">=", rng.ge), ("<", rng.lt), ("<=", rng.le))
            bits = [f"{op} {int(b) if float(b).is_integer() else f'{b:g}'}" for op, b in bounds
                    if b is not None]
            text += " " + " and ".join(bits)
        return text
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    if hint is dict:
        return "a mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def nearest(key: str, valid: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest valid key, or ''."""
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(where: str, given: dict, cls: type, what: str = "key", context: str = "",
               also: Iterable[str] = (), prefix: str = "") -> dict[str, Any]:
    """``given`` checked against the typed keywords of ``cls`` (:func:`schema_of`): an unknown key
    names the nearest valid one, a wrong type or range names the key; returns the coerced values
    of the given keys. ``where``: the dotted path of ``given``; ``prefix``: what the message starts
    with (e.g. ``"preset keras: "``); ``also``: other valid keys, checked by the caller (left out of
    the result). The one schema check of config sections, study parameters and settings."""
    if not isinstance(given, dict):
        raise UserError(f"{prefix}{where} must be a mapping, got {given!r}")
    schema = schema_of(cls)
    valid = sorted({*schema, *also})
    out = {}
    for key, value in given.items():
        if key in also:
            continue
        path = f"{where}.{key}" if where else str(key)  # where "": a file's top level
        if key not in schema:
            raise UserError(f"{prefix}unknown {what} {path}{context}{nearest(str(key), valid)}; "
                            f"valid keys: {', '.join(valid)}")
        out[key] = coerce(f"{prefix}{path}", value, schema[key][0])
        _check_nested(path, out[key], schema[key][0], prefix)
    for f in dataclasses.fields(cls):  # a field without a default must be given
        if f.default is f.default_factory is dataclasses.MISSING and f.name not in given:
            raise UserError(f"{prefix}{f'{where}: ' if where else ''}missing {f.name!r}")
    return out


def _check_nested(where: str, value: Any, hint: Any, prefix: str) -> None:
    """The keys of dataclass-typed mappings inside a value (``dict[str, ModelSpec]``, optional or
    not), each checked by :func:`check_keys` under its own dotted path."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        _check_nested(where, value, args[0], prefix)
    elif origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and value is not None:
            _check_nested(where, value, inner[0], prefix)
    elif origin is dict and args and isinstance(value, dict):
        for k, v in value.items():
            _check_nested(f"{where}.{k}", v, args[1], prefix)
    elif origin is list and args and isinstance(value, list):
        for i, v in enumerate(value):
            _check_nested(f"{where}.{i}", v, args[0], prefix)
    elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
        check_keys(where, value, hint, prefix=prefix)


def coerce(key: str, value: Any, hint: Any, shown: Any = None) -> Any:
    """Check ``value`` against ``hint``; return it (ints widened to float where a float is due).
    ``shown``: what the message quotes as given (default ``value``), e.g. a flag's text."""
    ok, out = _coerce(value, hint)
    if not ok:
        raise UserError(f"{key}: expected {_describe(hint)}, got {value if shown is None else shown!r}")
    return out


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    if isinstance(value, Text):
        text = str(value)
        return _coerce(text if _takes_text(hint) and text != "null" else parse_value(text), hint)
    if hint is Any:
        return True, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ok, out = _coerce(value, args[0])
        if not ok:
            return False, value
        for meta in args[1:]:
            if isinstance(meta, Range) and out is not None and meta.check(out) is not None:
                return False, value
        return True, out
    if origin in (Union, types.UnionType):
        for a in args:
            ok, out = _coerce(value, a)
            if ok:
                return True, out
        return False, value
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args), value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return False, value
        outs = [_coerce(v, args[0]) if args else (True, v) for v in value]
        return all(o for o, _ in outs), [v for _, v in outs]
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(value), float(value)
    if hint is str:
        return isinstance(value, str), value
    if hint is dict:
        return isinstance(value, dict), value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a spec: its keys, by check_keys
        return isinstance(value, dict), value
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        kt, vt = args if args else (Any, Any)
        outs = [(_coerce(k, kt), _coerce(v, vt)) for k, v in value.items()]
        if not all(ok_k and ok_v for (ok_k, _), (ok_v, _) in outs):
            return False, value
        return True, {k: v for (_, k), (_, v) in outs}
    if isinstance(hint, type):
        return isinstance(value, hint), value
    raise TypeError(f"the schema code cannot check the hint {hint!r}")  # a schema's mistake, not a user's


# ----------------------------------------------------------------------------------------------
# Variants and layering
def variants() -> list[str]:
    """Every runnable variant: one YAML file in configs/ each (defaults.yaml aside)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "defaults")


def merge(base: dict, over: dict, where: str = "") -> dict:
    """Deep-merge ``over`` into a copy of ``base``. Sections merge; leaves replace."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_key(cfg: dict, key: str, value: Any) -> None:
    """Apply ``--set section.key=value`` (or a top-level key) to ``cfg`` in place."""
    parts = dotted.split(key)
    if not (len(parts) == 1 and parts[0] in TOP_LEVEL) and (len(parts) != 2 or parts[0] not in SECTIONS):
        raise UserError(f"--set {key}: keys are section.key with section one of {', '.join(SECTIONS)} "
                        f"(or one of {', '.join(TOP_LEVEL)})")
    dotted.set_in(cfg, parts, value)


# module name -> {section: the dataclass that is the section's schema}, in SECTIONS order. Given by
# the layer above (ae_lightning.resolve.sections), which knows the model registry.
Sections = Callable[[str], dict[str, type]]


def load(variant: str, config_file: str | Path | None = None,
         overrides: dict[str, Any] | None = None, *, sections: Sections) -> dict:
    """Resolve and validate a run's configuration. ``overrides`` maps dotted keys to values.

    A ``config.yaml`` written by an earlier run can be given as ``config_file`` on its own: its
    ``variant`` then decides which variant file is layered beneath it. Callers use
    :func:`ae_lightning.resolve.load`, which passes ``sections``.
    """
    user = load_yaml(config_file, empty_ok=False) if config_file else {}
    overrides = dict(overrides or {})
    variant = overrides.pop("variant", None) or variant or user.get("variant")
    if not variant:
        raise UserError("no variant given: use --variant NAME (one of " + ", ".join(variants()) + ")")
    if not isinstance(variant, str) or variant not in variants():
        raise UserError(f"unknown variant {variant!r}: choose one of {', '.join(variants())}")
    cfg = merge(load_yaml(CONFIG_DIR / "defaults.yaml"), load_yaml(CONFIG_DIR / f"{variant}.yaml"))
    cfg = merge(cfg, user)
    cfg["variant"] = variant
    for k, v in overrides.items():
        set_key(cfg, k, v)
    return validate(cfg, sections)


def validate(cfg: dict, sections: Sections) -> dict:
    """Check every key, type and range, then each section's cross-field rules (its dataclass's
    ``check()``); fill in the defaults. Returns a new dict of plain values."""
    for k in cfg:
        if k not in TOP_LEVEL and k not in SECTIONS:
            raise UserError(f"unknown config key {k!r}: top-level keys are "
                            f"{', '.join(list(TOP_LEVEL) + list(SECTIONS))}")
    out: dict[str, Any] = {}
    for k, t in TOP_LEVEL.items():
        if k not in cfg:
            raise UserError(f"config key {k!r} is missing")
        out[k] = coerce(k, cfg[k], t)
    for section, cls in sections(out["module"]).items():
        given = cfg.get(section) or {}
        if not isinstance(given, dict):
            raise UserError(f"config section {section!r} must be a mapping, got {given!r}")
        fields = schema_of(cls)
        extra = {k: v for k, v in given.items() if k not in fields} if hasattr(cls, "passthrough") else {}
        if extra:  # keys another library checks (the trainer's: Lightning's Trainer keywords)
            cls.passthrough(extra, sorted(fields))
        resolved = check_keys(section, given, cls, what="config key", context=f" for variant {out['variant']!r}",
                              also=extra)
        out[section] = {**defaults_of(cls), **resolved}
        cls(**out[section]).check()
        out[section].update(extra)
    return out
