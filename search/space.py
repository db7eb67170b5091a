"""Search spaces: a YAML file of dotted config keys, validated against the variant's schema.

    # configs/search/default.yaml
    space:
      model.lr:           {type: loguniform, low: 1.0e-3, high: 5.0e-3}
      model.weight_decay: {type: loguniform, low: 1.0e-6, high: 2.0e-6}
      data.batch_size:    {type: choice, values: [128, 256, 512, 1024]}
      model.latent_dim:   {type: int, low: 2, high: 5}
    points:                # optional: complete configs tried first (e.g. a known good one)
      - {model.lr: 3.3e-3, model.weight_decay: 1.48e-6, data.batch_size: 1024, model.latent_dim: 5}
    objectives: [val_loss]  # optional: one or more (search.objectives); --objective overrides it

Types: ``uniform`` / ``loguniform`` (floats), ``int`` / ``logint`` (integers, both bounds
included), ``choice`` (a list of values). Keys are the dotted keys of ``train.py --set``: any key of
the variant's ``data``, ``model`` or ``trainer`` section (``model.beta``, ``model.noise_factor``,
...), checked with ``ae_lightning.config`` before any trial starts. Every bound and every choice is
also run through the full config validation (ranges, cross-field checks), so a space that would
produce an invalid trial fails at once with one line instead of as a failed trial hours later.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

from ae_lightning import dotted
from ae_lightning.config import SECTIONS, coerce, load_yaml, merge, schema_of
from ae_lightning.errors import UserError
from ae_lightning.resolve import sections, validate
from search.objectives import Objective, metrics_of, parse_all

FLOAT_TYPES = ("uniform", "loguniform")
INT_TYPES = ("int", "logint")
TYPES = FLOAT_TYPES + INT_TYPES + ("choice",)
# keys the sweep itself owns: the CLI flags set them, a space may not
RESERVED = {"data.fold": "--cv", "data.folds": "--cv", "trainer.max_epochs": "--max-epochs",
            "trainer.accelerator": "--gpus-per-trial", "trainer.devices": "--gpus-per-trial",
            "data.dataset": "--dataset", "data.data_dir": "--data-dir"}


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched key. ``low``/``high`` for ranges (both included), ``values`` for choices."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple = ()

    @property
    def numeric(self) -> bool:
        return self.type == "choice" and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             for v in self.values)

    def samples(self) -> list:
        """The values the full-config check runs through: the bounds, or every choice."""
        return list(self.values) if self.type == "choice" else [self.low, self.high]

    def contains(self, value: Any) -> bool:
        if self.type == "choice":
            return any(value == v and type(value) is type(v) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type in INT_TYPES and not isinstance(value, int):
            return False
        return self.low <= value <= self.high

    def from_unit(self, u: float) -> float:
        """Float keys reach the searchers as a position ``u`` in [0, 1] of their range, log-spaced
        for loguniform: Ax refuses raw ranges narrower than ~1e-5 (weight decay [1e-6, 2e-6]),
        and on this scale it models exactly what its own log transform would."""
        u = min(max(float(u), 0.0), 1.0)
        if self.type == "loguniform":
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        # 12 significant digits: 0.005 at the bound, not 0.005000000000000002; clamped into range
        return min(max(float(f"{v:.12g}"), self.low), self.high)

    def to_unit(self, value: float) -> float:
        if self.type == "loguniform":
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def describe(self) -> str:
        if self.type == "choice":
            return f"{self.key}: choice of {list(self.values)}"
        return f"{self.key}: {self.type} [{self.low:g}, {self.high:g}]"


@dataclasses.dataclass
class Space:
    params: dict[str, Param]
    points: list[dict[str, Any]]
    source: str
    raw: dict  # the file's content, kept in search.json so --resume decodes trials the same way
    # "rank": numeric choices reach the searchers as their rank; "value" (sweeps saved before
    # the rank encoding): as the values themselves
    objectives: list[Objective] = dataclasses.field(default_factory=lambda: [Objective("val_loss")])

    @staticmethod
    def ranked(p: Param) -> bool:
        """A numeric choice reaches the searchers as its rank: 0, 1, ... in ascending order."""
        return p.type == "choice" and p.numeric

    def searcher_domain(self, p: Param) -> dict:
        """How one key reaches the searchers, as an Ax parameter (without its name): floats as a
        position in [0, 1] of their range (log-spaced for loguniform, see ``Param.from_unit``);
        integers as integer ranges (log-scale for logint); numeric choices as their rank, an
        ordered choice, so that 32, 64, ..., 1024 are equally spaced for Ax's GP (their values
        would be modelled on a linear scale); other choices unordered."""
        if p.type in FLOAT_TYPES:
            return {"type": "range", "bounds": [0.0, 1.0], "value_type": "float", "log_scale": False}
        if p.type in INT_TYPES:
            return {"type": "range", "bounds": [p.low, p.high], "value_type": "int", "log_scale": p.type == "logint"}
        if self.ranked(p):
            return {"type": "choice", "values": list(range(len(p.values))), "value_type": "int",
                    "is_ordered": True, "sort_values": True}
        return {"type": "choice", "values": list(p.values), "is_ordered": p.numeric, "sort_values": False}

    def encodings(self) -> dict[str, str]:
        """What each key is to the searchers, in words (reported with every sweep)."""
        out = {}
        for p in self.params.values():
            if p.type in FLOAT_TYPES:
                out[p.key] = f"position in [0, 1] of its {'log ' if p.type == 'loguniform' else ''}range"
            elif p.type in INT_TYPES:
                out[p.key] = f"integer range{' on a log scale' if p.type == 'logint' else ''}"
            elif self.ranked(p):
                out[p.key] = f"rank 0..{len(p.values) - 1} of {list(p.values)} (ordered)"
            else:
                out[p.key] = f"unordered choice of {list(p.values)}"
        return out

    def to_tune(self) -> dict:
        """Ray Tune's param_space for random search, nested by section, in real values:
        ``{"model": {"lr": tune.loguniform(1e-3, 5e-3)}}``, the distributions of a uniform draw of the
        searchers' encoding (a uniform position in the log range, a uniform choice). Nested (not
        dotted): Tune flattens nested keys with "/" and back again."""
        from ray import tune

        out: dict[str, dict] = {}
        for p in self.params.values():
            if p.type == "loguniform":
                dom = tune.loguniform(p.low, p.high)
            elif p.type == "uniform":
                dom = tune.uniform(p.low, p.high)
            elif p.type == "int":
                dom = tune.randint(p.low, p.high + 1)  # Tune's upper bound is exclusive
            elif p.type == "logint":
                dom = tune.lograndint(p.low, p.high + 1)
            else:
                dom = tune.choice(list(p.values))
            dotted.set_in(out, list(split_key(p.key)), dom)
        return out

    def encode(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Real values -> the searchers' values (floats as positions in [0, 1], ranks of choices)."""
        out = {}
        for k, v in flat.items():
            p = self.params[k]
            if p.type in FLOAT_TYPES:
                v = p.to_unit(v)
            elif self.ranked(p):
                v = sorted(p.values).index(v)
            out[k] = v
        return out

    def from_searcher(self, params: dict[str, Any]) -> dict[str, Any]:
        """Ax's parameters (``model/lr``, in the searchers' encoding) -> real values by dotted key."""
        out = {}
        for p in self.params.values():
            v = params[ax_name(p.key)]
            if p.type in FLOAT_TYPES:
                v = p.from_unit(v)
            elif self.ranked(p):
                v = sorted(p.values)[int(v)]
            elif p.type in INT_TYPES:
                v = int(v)
            out[p.key] = v
        return out

    @staticmethod
    def decode(trial_config: dict) -> dict[str, Any]:
        """A trial's Tune config (nested, real values) -> real values by dotted key."""
        return flatten(trial_config)

    def points_nested(self) -> list[dict]:
        """Points as random search's Tune configs (real values)."""
        return [nest(pt) for pt in self.points]

    def points_flat(self) -> list[dict]:
        """Points as Ax parameter names (Tune's flattening: ``model/lr``)."""
        return [{ax_name(k): v for k, v in self.encode(pt).items()} for pt in self.points]

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.params.values())


def ax_name(key: str) -> str:
    """A key's name for Ax: Tune's flattening of the nested trial config (``model/lr``)."""
    return "top/seed" if key == "seed" else key.replace(".", "/")


TOP = "top"  # a trial's Tune config nests every key: the top-level key seed is top.seed there


def split_key(key: str) -> tuple[str, str]:
    """A space key's (section, name) in a trial's Tune config; ``seed`` is (top, seed)."""
    parts = dotted.split(key)
    if key == "seed":
        return TOP, "seed"
    if len(parts) != 2 or parts[0] not in SECTIONS or not parts[1]:
        raise UserError(f"search space key {key!r}: keys are section.key with section one of "
                        f"{', '.join(SECTIONS)} (or seed)")
    return parts[0], parts[1]


def nest(flat: dict[str, Any]) -> dict:
    """``{"model.lr": x, "seed": s}`` -> a trial's Tune config ``{"model": {"lr": x}, "top": {"seed": s}}``."""
    return dotted.nest({dotted.join(*split_key(k)): v for k, v in flat.items()})


def flatten(nested: dict) -> dict[str, Any]:
    """``{"model": {"lr": x}}`` (a trial's Tune config) -> ``{"model.lr": x}`` (:func:`nest` undone)."""
    return {"seed" if k == f"{TOP}.seed" else k: v for k, v in dotted.flatten(nested, levels=1).items()}


def apply(base: dict, flat: dict[str, Any]) -> dict:
    """``base`` with the dotted values in ``flat`` set, validated again (a new dict)."""
    for k in flat:
        split_key(k)  # a space's key, or one line saying what keys are
    return validate(merge(base, dotted.nest(flat)))


def _schemas(base: dict) -> dict[str, dict]:
    classes = sections(base["module"])
    return {**{section: schema_of(cls) for section, cls in classes.items()}, "top": {"seed": (int, 0)}}


def _number(where: str, value: Any, integer: bool) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise UserError(f"{where}: expected {'an integer' if integer else 'a finite number'}, got {value!r}")
    return value


def parse_param(key: str, spec: Any, hint: Any, where: str) -> Param:
    """One entry of ``space:``; every malformed range is a UserError naming the file and key."""
    w = f"{where}: {key}"
    if not isinstance(spec, dict):
        raise UserError(f"{w}: expected a mapping like {{type: loguniform, low: 1e-4, high: 1e-2}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise UserError(f"{w}: type must be one of {', '.join(TYPES)}, got {kind!r}")
    allowed = {"type", "values"} if kind == "choice" else {"type", "low", "high"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise UserError(f"{w}: unknown field(s) {', '.join(extra)} for type {kind} (expected {', '.join(sorted(allowed))})")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or len(values) < 2:
            raise UserError(f"{w}: choice needs `values:` with at least two entries, got {values!r}")
        if any(not isinstance(v, (int, float, str, bool)) for v in values):
            raise UserError(f"{w}: choice values must be numbers, strings or booleans, got {values!r}")
        if len({(type(v), v) for v in values}) != len(values):
            raise UserError(f"{w}: choice values repeat: {values!r}")
        return Param(key, kind, values=tuple(coerce(key, v, hint) for v in values))
    if "low" not in spec or "high" not in spec:
        raise UserError(f"{w}: type {kind} needs both low and high")
    integer = kind in INT_TYPES
    low, high = _number(f"{w}.low", spec["low"], integer), _number(f"{w}.high", spec["high"], integer)
    if not low < high:
        raise UserError(f"{w}: low ({low}) must be below high ({high})")
    if kind.startswith("log") and low <= 0:
        raise UserError(f"{w}: {kind} needs low > 0, got {low}")
    if not integer:
        low, high = float(low), float(high)
    for v in (low, high):  # the key's own type and range: PosInt, Fraction, ...
        try:
            coerce(key, v, hint)
        except UserError as e:
            tip = " (an integer key: use type int or logint)" if not integer and isinstance(v, float) and \
                _accepts(hint, int(v)) else ""
            raise UserError(f"{where}: {e}{tip}") from None
    return Param(key, kind, low, high)


def _accepts(hint: Any, value: Any) -> bool:
    try:
        coerce("", value, hint)
        return True
    except UserError:
        return False


def load_space(path: str | Path, base: dict) -> Space:
    """Read and validate a space file for the resolved ``base`` config of a variant."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search space file not found: {path}")
    return parse_space(load_yaml(path), base, str(path))


def parse_space(raw: dict, base: dict, path: str) -> Space:
    """Validate the content of a space file (also the copy a sweep keeps for --resume)."""
    raw = copy.deepcopy(raw)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with `space:` (and optionally `points:`, `objectives:`)")
    extra = sorted(set(raw) - {"space", "points", "objectives"})
    if extra:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(extra)} (expected space, points, objectives)")
    entries = raw.get("space")
    if not isinstance(entries, dict) or not entries:
        raise UserError(f"{path}: `space:` must be a non-empty mapping of dotted config keys")
    schemas = _schemas(base)
    params: dict[str, Param] = {}
    for key, spec in entries.items():
        key = str(key)
        if key in RESERVED:
            raise UserError(f"{path}: {key} is set by the sweep itself ({RESERVED[key]}), not searched")
        section, name = split_key(key)
        if name not in schemas[section]:
            raise UserError(f"{path}: unknown config key {key} for variant {base['variant']!r}; valid "
                            f"{section} keys: {', '.join(sorted(schemas[section]))}")
        params[key] = parse_param(key, spec, schemas[section][name][0], path)
    # each bound / choice through the whole config: cross-field checks see it too
    for p in params.values():
        for v in p.samples():
            try:
                apply(base, {p.key: v})
            except UserError as e:
                raise UserError(f"{path}: {p.key}={v!r} gives an invalid config: {e}") from None
    points = raw.get("points") or []
    if not isinstance(points, list) or any(not isinstance(pt, dict) for pt in points):
        raise UserError(f"{path}: `points:` must be a list of mappings {{key: value}}")
    for i, pt in enumerate(points):
        pt = {str(k): v for k, v in pt.items()}
        if set(pt) != set(params):
            missing, unknown = sorted(set(params) - set(pt)), sorted(set(pt) - set(params))
            raise UserError(f"{path}: points[{i}] must give every searched key"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; not in the space: {', '.join(unknown)}" if unknown else ""))
        for k, v in pt.items():
            p = params[k]
            if p.type in FLOAT_TYPES and isinstance(v, int) and not isinstance(v, bool):
                v = pt[k] = float(v)
            if not p.contains(v):
                raise UserError(f"{path}: points[{i}]: {k}={v!r} lies outside the space ({p.describe()})")
        try:
            apply(base, pt)
        except UserError as e:
            raise UserError(f"{path}: points[{i}] gives an invalid config: {e}") from None
        points[i] = pt
    specs = raw.get("objectives") or []
    if not isinstance(specs, list):
        raise UserError(f"{path}: `objectives:` must be a list such as [val_loss, model.latent_dim]")
    objectives = parse_all(specs, list(params), metrics_of(schemas["model"]), f"{path}: objectives:")
    return Space(params, points, path, raw, objectives)


def with_objectives(space: Space, specs: list[str], base: dict, where: str = "--objective") -> Space:
    """``space`` with the objectives ``specs`` (the flags) in place of the file's own."""
    if not specs:
        return space
    metrics = metrics_of(_schemas(base)["model"])
    return dataclasses.replace(space, objectives=parse_all(specs, list(space.params), metrics, where))


def capped(space: Space, key: str, most: int) -> tuple[dict, list, Any]:
    """The space file's content without ``key``'s values above ``most`` (choices dropped, a range's
    top lowered, points using one dropped), as ``(raw, dropped, fixed)``: ``dropped`` the choices left
    out (a range's ``[most + 1, high]``; empty when all fit), ``fixed`` the one value left when only
    one is (the key then leaves the space and its points: a searched key needs two values; the
    caller sets it in the base config), else None; ``raw`` holds no ``key`` when none fits."""
    p = space.params[key]
    raw = copy.deepcopy(space.raw)
    entries = raw["space"]
    if p.type == "choice":
        kept, dropped = [v for v in p.values if v <= most], [v for v in p.values if v > most]
        entries[key] = {"type": "choice", "values": kept}
    elif p.type in INT_TYPES:
        kept, dropped = list(range(p.low, min(p.high, most) + 1))[:2], [most + 1, p.high] if p.high > most else []
        entries[key] = {"type": p.type, "low": p.low, "high": min(p.high, most)}
    else:
        raise UserError(f"{space.source}: {key} is a {p.type} range; an integer key takes type int or logint")
    if not dropped:
        return space.raw, [], None
    fixed = kept[0] if len(kept) == 1 else None
    if len(kept) <= 1:
        del entries[key]
    points = [dict(pt) for pt in space.points if pt[key] <= most]
    for pt in points if fixed is not None else ():
        del pt[key]
    if "points" in raw:
        raw["points"] = points
    return raw, dropped, fixed
