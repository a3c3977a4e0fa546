"""The typed numbers of every results file: ``Record``, the frozen base of a file's parts,
``Rate``, a share with its 95 % Wilson interval, and ``MeanOf``, a mean with its 95 %
Student-t interval (``measures.intervals`` computes them). They keep the JSON shapes the
files have always had, {"rate", "low", "high", "n"} and {"mean", "low", "high", "n"}, and
refuse a key missing or misspelt.

    Rate.count(87, 100).low, str(Rate.count(87, 100))   # 0.79..., "87.0 % [79.0, 92.2]"
    MeanOf.of([0.1, 0.2, 0.3]).text(3)                  # "0.200 [-0.048, 0.448]"
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import BaseModel, ConfigDict, model_serializer

from perceptreg.measures.intervals import format_rate, mean_of, rate, rate_of

# Frozen, no unknown key; a field may have its file's key as an alias ("accuracy_on_P(x)"),
# read and written by it.
CONFIG = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)


class Record(BaseModel):
    """A frozen part of a results file. A field whose default is None is a part measured only
    when asked (adaptive rows, thresholds, ...): it is left out of the file when not measured,
    as the files have always done."""
    model_config = CONFIG

    @model_serializer(mode="wrap")
    def _leave_out_unmeasured(self, handler):
        values = handler(self)
        for name, field in type(self).model_fields.items():
            if field.default is None and getattr(self, name) is None:
                values.pop(field.alias or name, None)
        return values


class Rate(Record):
    """A share with its 95 % Wilson interval (``measures.rate``); ``n``: what it is a share of."""
    rate: float
    low: float
    high: float
    n: int

    @classmethod
    def count(cls, successes: int, n: int) -> "Rate":
        return cls(**rate(successes, n))

    @classmethod
    def of(cls, hits: torch.Tensor) -> "Rate":
        return cls(**rate_of(hits))

    def __str__(self) -> str:  # "87.0 % [84.8, 89.0]"
        return format_rate(self.model_dump())


class MeanOf(Record):
    """A mean over images (or seeds) with its 95 % Student-t interval (``measures.mean_of``);
    low = high = mean for one value."""
    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "MeanOf":
        return cls(**mean_of(values))

    def text(self, digits: int = 3) -> str:
        """"0.200 [0.150, 0.250]": the mean and its interval, to ``digits`` decimals."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"
