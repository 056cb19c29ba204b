"""Valid ranges of numeric config fields, declared next to their types.

A field's range is part of its annotation, so the dataclass says both what a value is and which
values make sense::

    @dataclass
    class MyConfig:
        steps: Count = 1000                                   # an integer >= 1
        beta: Annotated[Weight, "the weight of the KL term"] = 4.0
        clip: Positive | None = None                          # > 0, or null

A string in ``Annotated`` describes the field in error messages. :func:`disentkit.config.check_config`
applies every range when a config is loaded; every float field must also be finite (no nan or inf)
unless its range says ``allow_inf``. Fields without a range only get that finiteness check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

#: numpy's ``RandomState`` (the metrics' generator) takes seeds in [0, 2**32 - 1]
SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``ge``/``gt`` below, ``le``/``lt`` above (None: unbounded)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    #: what the field is (shown in messages); a string in ``Annotated`` overrides it
    what: str = ""
    #: accept +-inf (nan is never accepted)
    allow_inf: bool = False

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if isinstance(value, float) and math.isinf(value) and not self.allow_inf:
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def bounds(self) -> str:
        """The range in symbols: ``>= 0``, ``> 0``, ``in [0, 1)``."""
        low = (f"[{_num(self.ge)}" if self.ge is not None
               else f"({_num(self.gt)}" if self.gt is not None else None)
        high = (f"{_num(self.le)}]" if self.le is not None
                else f"{_num(self.lt)})" if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        if high:
            return f"{'<=' if self.le is not None else '<'} {high[:-1]}"
        return "any value"

    def advice(self, integer: bool) -> str:
        """The range in words, for "set KEY to ...": ``a non-negative number``."""
        kind = "integer" if integer else "number"
        if self.le is None and self.lt is None:
            if self.ge == 0:
                return f"a non-negative {kind}"
            if self.gt == 0 or (integer and self.ge == 1):
                return f"a positive {kind}"
        return f"{'an integer' if integer else 'a number'} {self.bounds()}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


#: how many of something: at least one
Count = Annotated[int, Range(ge=1)]
#: a count, a step number or a size where 0 means "off" or "the default"
NonNegInt = Annotated[int, Range(ge=0)]
#: the number of values of a ground-truth factor
Levels = Annotated[int, Range(ge=2, what="a factor needs at least two values to vary")]
#: a random seed
Seed = Annotated[int, Range(ge=0, le=SEED_MAX, what="a random seed")]
#: the weight of a loss term
Weight = Annotated[float, Range(ge=0, what="a loss weight")]
#: a number that must be > 0 (learning rates, scales, temperatures)
Positive = Annotated[float, Range(gt=0)]
#: a number that must be >= 0 (thresholds, capacities in nats)
NonNegative = Annotated[float, Range(ge=0)]
#: a probability or a fraction
Probability = Annotated[float, Range(ge=0, le=1, what="a fraction")]
#: an exponential decay rate (Adam's betas)
Decay = Annotated[float, Range(ge=0, lt=1, what="a decay rate")]
