"""Walk-forward windows: train on one span, test the chosen settings on the next, rolling or anchored."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_LENGTH = re.compile(r"^(\d+)([DWMY])$", re.IGNORECASE)


class WindowError(ValueError):
    """A bad --walk-forward value, or a span too short for one window."""


@dataclass(frozen=True, slots=True)
class Length:
    count: int
    unit: str  # D, W, M or Y

    def after(self, when: datetime) -> datetime:
        if self.unit == "D":
            return when + timedelta(days=self.count)
        if self.unit == "W":
            return when + timedelta(weeks=self.count)
        months = self.count * (12 if self.unit == "Y" else 1)
        return _add_months(when, months)

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True, slots=True)
class Window:
    index: int
    train_start: datetime
    train_end: datetime  # = test_start
    test_end: datetime

    @property
    def test_start(self) -> datetime:
        return self.train_end


def parse_walk_forward(text: str) -> tuple[Length, Length]:
    """`TRAIN/TEST`, e.g. 6M/2M, 90D/30D, 1Y/3M."""
    parts = text.split("/")
    if len(parts) != 2:
        raise WindowError(f"--walk-forward {text!r}: expected TRAIN/TEST, e.g. 6M/2M (units D, W, M, Y)")
    return _length(parts[0], text), _length(parts[1], text)


def _length(part: str, text: str) -> Length:
    found = _LENGTH.match(part.strip())
    if not found or int(found.group(1)) < 1:
        raise WindowError(f"--walk-forward {text!r}: {part!r} is not a length such as 6M, 8W, 90D or 1Y")
    return Length(int(found.group(1)), found.group(2).upper())


def walk_forward_windows(start: datetime, end: datetime, train: Length, test: Length,
                         anchored: bool = False) -> list[Window]:
    """Test windows follow each other from start + train to end, each one test length (the last one cut at end);
    rolling: each train window is the train length just before its test window; anchored: it starts at `start`.
    Every boundary is counted from `start` (a month later than Jan 31 is Feb 28, and the next one Mar 31)."""
    windows: list[Window] = []
    while True:
        i = len(windows)
        test_start = _shifted(start, (train, 1), (test, i))
        if test_start >= end:
            break
        train_start = start if anchored else _shifted(start, (test, i))
        windows.append(Window(i, train_start, test_start, min(_shifted(start, (train, 1), (test, i + 1)), end)))
    if not windows:
        raise WindowError(f"{start:%Y-%m-%d} to {end:%Y-%m-%d} is too short for one {train} training window "
                          "followed by a test window")
    return windows


def _shifted(start: datetime, *lengths: tuple[Length, int]) -> datetime:
    """start moved by the sum of count x length (months and days apart, months first)."""
    months = sum(n * length.count * {"M": 1, "Y": 12}.get(length.unit, 0) for length, n in lengths)
    days = sum(n * length.count * {"D": 1, "W": 7}.get(length.unit, 0) for length, n in lengths)
    return _add_months(start, months) + timedelta(days=days)


def _add_months(when: datetime, months: int) -> datetime:
    month = when.month - 1 + months
    year, month = when.year + month // 12, month % 12 + 1
    day = min(when.day, _days_in(year, month))
    return when.replace(year=year, month=month, day=day)


def _days_in(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]
