"""The rule-based analyst's confidence: a setup's raw score as its rank among the setups of a calibration span."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

# A BUY's confidence is LOWEST + SPREAD x (the share of the calibration's setups of its kind that scored lower):
# 50 scores below all of them, 95 above all of them, the API's threshold range (50-95) covers the whole scale
LOWEST_CONFIDENCE = 50
CONFIDENCE_SPREAD = 45
SCORE_DECIMALS = 4  # breakpoints are stored rounded: a table people read, not a float dump


class SetupKind(StrEnum):
    TREND = "trend"  # a long in a confirmed 1h uptrend
    RANGE = "range"  # a long off a nearby support in a ranging market


@dataclass(frozen=True, slots=True)
class ConfidenceScale:
    """Quantile breakpoints of the raw scores per setup kind: `breakpoints[kind][i]` is the score that i / (n - 1)
    of the calibration's setups of that kind scored at or below (the first is the lowest score seen, the last the
    highest). `source` names the span, symbols and setup counts they came from."""

    source: str
    breakpoints: Mapping[SetupKind, tuple[float, ...]]

    def __post_init__(self) -> None:
        for kind, points in self.breakpoints.items():
            if len(points) < 2 or any(b < a for a, b in itertools.pairwise(points)):
                raise ValueError(f"{kind} breakpoints must be at least two ascending scores, got {points}")

    def share_below(self, kind: SetupKind, score: float) -> float:
        """The empirical CDF of the calibration's scores at `score`, linear between breakpoints, in [0, 1]."""
        points = self.breakpoints[kind]
        if not math.isfinite(score):
            raise ValueError(f"{kind} score {score} is not a number")
        if score <= points[0]:
            return 0.0
        if score >= points[-1]:
            return 1.0
        i = bisect.bisect_right(points, score) - 1  # points[i] <= score < points[i + 1], so they differ
        return (i + (score - points[i]) / (points[i + 1] - points[i])) / (len(points) - 1)

    def confidence(self, kind: SetupKind, score: float) -> int:
        """50-95: better than (confidence - 50) / 45 of the calibration's setups of this kind."""
        return round(LOWEST_CONFIDENCE + CONFIDENCE_SPREAD * self.share_below(kind, score))

    @classmethod
    def from_scores(cls, scores: Mapping[SetupKind, Sequence[float]], points: int, source: str) -> ConfidenceScale:
        """`points` evenly spaced quantiles (linear interpolation between order statistics, numpy's default) of
        each kind's scores."""
        return cls(source, {kind: quantiles(values, points) for kind, values in scores.items()})


def quantiles(values: Sequence[float], points: int) -> tuple[float, ...]:
    """The 0, 1 / (points - 1), ..., 1 quantiles of `values`, rounded to SCORE_DECIMALS."""
    ordered = sorted(values)
    if not ordered or points < 2:
        raise ValueError(f"need scores and at least two points, got {len(ordered)} scores and {points} points")
    found = []
    for i in range(points):
        position = (len(ordered) - 1) * i / (points - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        found.append(round(ordered[low] + (ordered[high] - ordered[low]) * (position - low), SCORE_DECIMALS))
    return tuple(found)
