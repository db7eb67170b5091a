"""What a sweep optimises: one objective or several, their Pareto front and its hypervolume.

    --objective val_loss                      # the default: one objective, minimised
    --objective val_loss --objective model.latent_dim         # two: the front of size against error
    --objective test_nrmse:min<=0.3 --objective model.latent_dim:min<=32   # thresholds given

NAME is a metric that every trial reports, or a searched config key:

    val_loss                      the trial's lowest val/loss (its best checkpoint; results.csv: best_val_loss)
    test_loss, test_mse, test_nrmse, test_rel_error   the best checkpoint's test metrics (metrics.json)
    test_nll                      the VAE's importance-sampled test NLL (variants with model.nll_samples)
    test_fid_cls                  the VAE's prior samples against the test set (ae_lightning.fid; model.fid_cls)
    a searched key                e.g. model.latent_dim: known before the trial trains

``:min`` (the default) or ``:max`` gives the direction; ``<=VALUE`` (for min) or ``>=VALUE`` (for
max) the threshold: a trial worse than it on that objective adds nothing to the front's
hypervolume, and Ax (which otherwise infers the thresholds from the data) aims above it.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Sequence

from ae_lightning.errors import UserError

TEST_METRICS = ("test_loss", "test_mse", "test_nrmse", "test_rel_error")
RESULT_KEY = {"val_loss": "best_val_loss"}  # user-facing name -> a trial's result / results.csv column
_SPEC = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::(?P<mode>[A-Za-z]+))?(?:(?P<op><=|>=)(?P<value>.+))?$")


@dataclasses.dataclass(frozen=True)
class Objective:
    name: str
    minimize: bool = True
    threshold: float | None = None

    @property
    def key(self) -> str:
        """Its column in results.csv, its key in a trial's last result, its Ax metric name."""
        return RESULT_KEY.get(self.name, self.name)

    @property
    def is_param(self) -> bool:
        return "." in self.name

    @property
    def per_epoch(self) -> bool:
        """Known after every epoch (what a scheduler such as ASHA can rank trials by)."""
        return self.name == "val_loss"

    def text(self) -> str:
        out = f"{self.name}:{'min' if self.minimize else 'max'}"
        if self.threshold is not None:
            out += f"{'<=' if self.minimize else '>='}{self.threshold:g}"
        return out

    def better(self, a: float, b: float) -> bool:
        return a < b if self.minimize else a > b


def parse(spec: Any, space_keys: Sequence[str], metrics: Sequence[str], where: str = "--objective") -> Objective:
    """One objective from its text form ``NAME[:min|max][<=|>=VALUE]``; a UserError names what is
    wrong: an unknown name (with the valid ones), a direction, a threshold on the wrong side."""
    text = str(spec).strip()
    m = _SPEC.match(text)
    if not m:
        raise UserError(f"{where} {text!r}: expected NAME[:min|max][<=VALUE or >=VALUE], e.g. val_loss or "
                        "model.latent_dim:min<=32")
    name, mode, op, value = m["name"], m["mode"], m["op"], m["value"]
    valid = ["val_loss", *metrics, *space_keys]
    if name not in valid:
        hint = (" (a config key must be searched: add it to the space)" if "." in name else "")
        raise UserError(f"{where} {text!r}: unknown objective {name!r}{hint}; choose from {', '.join(valid)}")
    if mode not in (None, "min", "max"):
        raise UserError(f"{where} {text!r}: the direction is min or max, got {mode!r}")
    minimize = mode != "max"
    threshold = None
    if op is not None:
        if (op == "<=") != minimize:
            raise UserError(f"{where} {text!r}: a {'minimised' if minimize else 'maximised'} objective takes "
                            f"a threshold {'<=' if minimize else '>='}VALUE (the worst value that still counts)")
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise UserError(f"{where} {text!r}: the threshold must be a finite number, got {value!r}")
    return Objective(name, minimize, threshold)


def parse_all(specs: Sequence[Any], space_keys: Sequence[str], metrics: Sequence[str],
              where: str = "--objective") -> list[Objective]:
    objectives = [parse(s, space_keys, metrics, where) for s in specs] or [Objective("val_loss")]
    names = [o.name for o in objectives]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{where}: {', '.join(dup)} given twice")
    if all(o.is_param for o in objectives):
        raise UserError(f"{where}: every objective is a searched key ({', '.join(names)}), known before any "
                        "trial trains: add a metric such as val_loss")
    return objectives



def loose(spec: Any) -> Objective:
    """An objective from its text form, its name unchecked (no space at hand: the folder name that
    ``--resume`` looks for); a malformed text is the same one line as :func:`parse`'s."""
    m = _SPEC.match(str(spec).strip())
    if not m:
        return parse(spec, [], [])
    try:
        threshold = float(m["value"]) if m["op"] else None
    except ValueError:
        return parse(spec, [m["name"]], [])
    return Objective(m["name"], m["mode"] != "max", threshold)


def tag(objectives: Sequence[Objective]) -> str:
    """The objectives as part of a folder name, ``val_loss+model.latent_dim``; "" for the default
    (val_loss alone): sweeps of other objectives must not share a default folder."""
    if list(objectives) in ([], [Objective("val_loss")]):
        return ""
    parts = []
    for o in objectives:
        part = o.name if o.minimize else f"{o.name}-max"
        if o.threshold is not None:
            part += f"-{'le' if o.minimize else 'ge'}{o.threshold:g}"
        parts.append(part)
    return re.sub(r"[^\w.+-]", "_", "+".join(parts))

def metrics_of(model_schema: dict) -> list[str]:
    """The test metrics a variant's trials report (metrics.json): every variant's, plus test_nll
    where the model estimates a likelihood and test_fid_cls where it samples (``model.fid_cls``)."""
    return [*TEST_METRICS, *(["test_nll"] if "nll_samples" in model_schema else []),
            *(["test_fid_cls"] if "fid_cls" in model_schema else [])]


# ----------------------------------------------------------------------------------------------
# Fronts. Points are tuples of objective values in the objectives' own units and directions.
def _as_max(points: Sequence[Sequence[float]], objectives: Sequence[Objective]):
    import torch

    sign = torch.tensor([-1.0 if o.minimize else 1.0 for o in objectives], dtype=torch.float64)
    return torch.as_tensor([list(p) for p in points], dtype=torch.float64).reshape(-1, len(objectives)) * sign, sign


def pareto_mask(points: Sequence[Sequence[float]], objectives: Sequence[Objective]) -> list[bool]:
    """True for each point that no other point dominates (BoTorch's ``is_non_dominated``; a
    duplicate of a front point is on the front once, its first copy)."""
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if not len(points):
        return []
    y, _ = _as_max(points, objectives)
    return [bool(b) for b in is_non_dominated(y, deduplicate=True)]


def hypervolume(points: Sequence[Sequence[float]], objectives: Sequence[Objective],
                reference: Sequence[float]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (exact: BoTorch's box
    decomposition). Points worse than the reference on any objective add nothing."""
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    if not len(points):
        return 0.0
    y, sign = _as_max(points, objectives)
    ref = torch.as_tensor(list(reference), dtype=torch.float64) * sign
    y = y[(y > ref).all(dim=-1)]
    if not len(y):
        return 0.0
    return float(Hypervolume(ref_point=ref).compute(y))


def hypervolume_by_trial(points: Sequence[Sequence[float] | None], objectives: Sequence[Objective],
                         reference: Sequence[float]) -> list[float]:
    """Hypervolume of the first n trials' front, for n = 1..N (None: a trial without values)."""
    out, seen = [], []
    for p in points:
        if p is not None:
            seen.append(p)
        out.append(hypervolume(seen, objectives, reference) if seen else 0.0)
    return out


def reference_point(points: Sequence[Sequence[float]], objectives: Sequence[Objective],
                    bounds: dict[str, tuple[float, float]] | None = None, margin: float = 0.1) -> list[float]:
    """Each objective's threshold where given; else the worst end of a searched key's range, or
    the worst value seen of a metric, moved out by ``margin`` of that range (so that the extreme
    points of the front count too)."""
    ref = []
    for j, o in enumerate(objectives):
        if o.threshold is not None:
            ref.append(o.threshold)
            continue
        if bounds and o.name in bounds:
            low, high = bounds[o.name]
            ref.append(float(high + margin * (high - low) if o.minimize else low - margin * (high - low)))
            continue
        vals = [p[j] for p in points if math.isfinite(p[j])]
        if not vals:
            ref.append(math.inf if o.minimize else -math.inf)
            continue
        lo, hi = min(vals), max(vals)
        span = (hi - lo) or abs(hi) or 1.0
        ref.append(hi + margin * span if o.minimize else lo - margin * span)
    return ref
