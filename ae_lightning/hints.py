"""Type hints with numeric ranges, read by the config schema (a leaf module: it imports nothing of the
project). A class's typed ``__init__`` is its config section's schema: ``lr: PosFloat = 1e-3`` takes a
finite number > 0. (Named ``hints``, not ``types``, so it never shadows the standard library's.)"""
from __future__ import annotations

import dataclasses
import math
from typing import Annotated


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric bound for ``Annotated`` hints: ``Annotated[float, Range(gt=0)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def check(self, value: float) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        for op, bound, ok in (("> ", self.gt, lambda v, b: v > b), (">= ", self.ge, lambda v, b: v >= b),
                              ("< ", self.lt, lambda v, b: v < b), ("<= ", self.le, lambda v, b: v <= b)):
            if bound is not None and not ok(value, bound):
                return f"a number {op}{bound:g}"
        return None


Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]  # numpy's range: Lightning would replace another seed by 0
PosInt = Annotated[int, Range(gt=0)]
NonNegInt = Annotated[int, Range(ge=0)]
PosFloat = Annotated[float, Range(gt=0)]
NonNegFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
