"""`trdbot data list`: what a data directory holds per symbol and timeframe, its gaps, and which symbols have rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.domain.clock import ms_from_utc, utc_from_ms
from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.marketdata.candle_files import discover_files, load_symbol
from app.marketdata.candles import CandleStore, Gap
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE, read_exchange_info
from app.marketdata.gap_log import ExchangeGapLog
from app.marketdata.spans import Span

LARGEST_GAPS_SHOWN = 3
_ALL_MS = 2**62  # an open time after every candle


def time_text(time_ms: int) -> str:
    return utc_from_ms(time_ms).strftime("%Y-%m-%dT%H:%MZ")


def gaps_text(gaps: Sequence[Gap]) -> str:
    """`no gaps`, or how many, the candles missing and the largest few."""
    if not gaps:
        return "no gaps"
    largest = sorted(gaps, key=lambda g: (-g.missing, g.first_missing_ms))[:LARGEST_GAPS_SHOWN]
    shown = ", ".join(f"{time_text(g.first_missing_ms)}..{time_text(g.last_missing_ms)} ({g.missing})"
                      for g in largest)
    count = f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''}"
    return f"{count}, {sum(g.missing for g in gaps):,} missing candles; largest: {shown}"


def gap_of(span: Span, step_ms: int) -> Gap:
    return Gap(span.start_ms, span.end_ms - step_ms, span.candles(step_ms))


@dataclass(frozen=True, slots=True)
class SeriesCoverage:
    """One symbol and timeframe as the store reads it: from its own file or resampled from 5m."""

    symbol: str
    timeframe: Timeframe
    from_file: bool
    rows: int
    first_ms: int
    last_ms: int
    gaps: list[Gap]
    confirmed_gaps: int  # of them, gaps the exchange was asked about and has no candles for

    def line(self) -> str:
        source = "" if self.from_file else "  (resampled from 5m)"
        if not self.rows:
            return f"  {self.timeframe.value:<4} empty{source}"
        confirmed = f" ({self.confirmed_gaps} known to be missing at the exchange)" if self.confirmed_gaps else ""
        return (f"  {self.timeframe.value:<4} {time_text(self.first_ms)} .. {time_text(self.last_ms)}  "
                f"{self.rows:,} rows  {gaps_text(self.gaps)}{confirmed}{source}")


@dataclass(frozen=True, slots=True)
class Inventory:
    directory: Path
    series: list[SeriesCoverage]
    rules: frozenset[str]  # symbols with rules in exchange_info.json
    problems: list[str]  # files the store would refuse

    def lines(self) -> list[str]:
        symbols = sorted({s.symbol for s in self.series})
        lines = [f"{self.directory}: {len(symbols)} symbol(s) with candles; {EXCHANGE_INFO_FILE} has rules for "
                 f"{len(self.rules)}"]
        for symbol in symbols:
            rules = f"rules in {EXCHANGE_INFO_FILE}" if symbol in self.rules else f"no rules in {EXCHANGE_INFO_FILE}"
            lines.append(f"{symbol}  {rules}")
            lines += [s.line() for s in self.series if s.symbol == symbol]
        lines += [f"unreadable: {problem}" for problem in self.problems]
        return lines


def survey(directory: Path) -> Inventory:
    """Every symbol's series in `directory`; a file the store would refuse is listed as a problem, not raised."""
    files = discover_files(directory, None)
    log = ExchangeGapLog.load(directory)
    series: list[SeriesCoverage] = []
    problems: list[str] = []
    for symbol in sorted({symbol for symbol, _ in files}):
        try:
            store = CandleStore(load_symbol(symbol, files))
        except DataError as e:
            problems.append(str(e))
            continue
        series += [_coverage(store, log, symbol, tf, (symbol, tf) in files) for tf in store.timeframes(symbol)]
    rules_file = directory / EXCHANGE_INFO_FILE
    try:
        rules = frozenset(read_exchange_info(rules_file)) if rules_file.exists() else frozenset()
    except DataError as e:
        rules, problems = frozenset(), [*problems, str(e)]
    return Inventory(directory, series, rules, problems)


def _coverage(store: CandleStore, log: ExchangeGapLog, symbol: str, timeframe: Timeframe,
              from_file: bool) -> SeriesCoverage:
    rows = len(store.arrays_between(symbol, timeframe, 0, _ALL_MS))
    if not rows:
        return SeriesCoverage(symbol, timeframe, from_file, 0, 0, 0, [], 0)
    first, end = store.span(symbol, timeframe)
    gaps = store.gaps(symbol, timeframe)
    step = timeframe.ms
    confirmed = sum(log.covers(symbol, timeframe, Span(g.first_missing_ms, g.last_missing_ms + step)) for g in gaps)
    return SeriesCoverage(symbol, timeframe, from_file, rows, ms_from_utc(first),
                          ms_from_utc(end) - step, gaps, confirmed)
