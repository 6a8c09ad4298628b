"""Spans of candle open times: where a file has no candles, and span arithmetic to plan what to fetch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """The open times from `start_ms` up to, not including, `end_ms` (both on the timeframe's grid)."""

    start_ms: int
    end_ms: int

    def __bool__(self) -> bool:
        return self.end_ms > self.start_ms

    def candles(self, step_ms: int) -> int:
        return max(0, self.end_ms - self.start_ms) // step_ms


def align_up(time_ms: int, step_ms: int) -> int:
    """The first open time on the grid at or after `time_ms`."""
    return -(-time_ms // step_ms) * step_ms


def holes(times: np.ndarray | Sequence[int], within: Span, step_ms: int) -> list[Span]:
    """The parts of `within` where the ascending open times `times` have no candle."""
    if not within:
        return []
    times = np.asarray(times, dtype=np.int64)
    inside = times[(times >= within.start_ms) & (times < within.end_ms)]
    edges = np.r_[within.start_ms - step_ms, inside, within.end_ms]
    return [Span(int(edges[i]) + step_ms, int(edges[i + 1])) for i in np.flatnonzero(np.diff(edges) > step_ms)]


def subtract(spans: Iterable[Span], removed: Sequence[Span]) -> list[Span]:
    """`spans` without the open times in `removed`."""
    pieces = list(spans)
    for cut in removed:
        pieces = [part for piece in pieces for part in _without(piece, cut)]
    return pieces


def _without(span: Span, cut: Span) -> list[Span]:
    if cut.end_ms <= span.start_ms or cut.start_ms >= span.end_ms:
        return [span]
    return [part for part in (Span(span.start_ms, cut.start_ms), Span(cut.end_ms, span.end_ms)) if part]


def merged(spans: Iterable[Span]) -> list[Span]:
    """Sorted, with overlapping and touching spans joined into one."""
    joined: list[Span] = []
    for span in sorted(s for s in spans if s):
        if joined and span.start_ms <= joined[-1].end_ms:
            joined[-1] = Span(joined[-1].start_ms, max(joined[-1].end_ms, span.end_ms))
        else:
            joined.append(span)
    return joined
