"""`trdbot data download`: the candles a data directory is missing, fetched page by page from a source, merged in."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.domain.clock import ms_from_utc
from app.domain.values import Candle, Timeframe
from app.marketdata.file_writer import CandleFile, merge_exchange_info
from app.marketdata.gap_log import ExchangeGapLog
from app.marketdata.inventory import gap_of, gaps_text, time_text
from app.marketdata.spans import Span, align_up, holes, subtract

PAGE_CANDLES = 1000  # the most klines Binance answers in one request
FLUSH_EVERY_PAGES = 50  # a download killed outright loses at most this many pages of one series
SETTLE_MS = 60_000  # a candle missing this soon after it closed may be one the exchange has not published yet
DEFAULT_TIMEFRAMES = "5m,15m,1h"
_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")


class DownloadUsageError(ValueError):
    """A bad option: the message is the one line the user sees."""


class KlineSource(Protocol):
    """Where candles come from (Binance's public REST API: `BinancePublicData`)."""

    async def exchange_info(self, symbols: Sequence[str]) -> dict[str, Any]:
        """exchangeInfo for the symbols, in Binance's shape; raises ConfigurationError naming unknown ones."""
        ...

    async def klines(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int, limit: int) -> list[Candle]:
        """Closed candles opening in [start_ms, end_ms), oldest first, at most `limit`."""
        ...

    def server_now_ms(self) -> int:
        """The source's clock: candles closed before it are final."""
        ...


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, candles: int) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, candles: int) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """Candles covered so far, on stderr (tqdm)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="candle", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def advance(self, candles: int) -> None:
        self._bar.update(candles)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass(frozen=True, slots=True)
class DownloadRequest:
    symbols: tuple[str, ...]
    timeframes: tuple[Timeframe, ...]
    start_ms: int
    end_ms: int | None  # excluded; None: up to the last closed candle


def parse_request(symbols: str, start: str, end: str | None, timeframes: str = DEFAULT_TIMEFRAMES) -> DownloadRequest:
    """The command's options, checked; each problem is a DownloadUsageError naming the option."""
    request = DownloadRequest(_symbols(symbols), _timeframes(timeframes), _time_ms(start, "--start"),
                              _time_ms(end, "--end") if end else None)
    if request.end_ms is not None and request.start_ms >= request.end_ms:
        raise DownloadUsageError(f"--start {start} is not before --end {end}")
    return request


def _symbols(text: str) -> tuple[str, ...]:
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    bad = [name for name in names if not _SYMBOL.fullmatch(name)]
    if bad or not names:
        raise DownloadUsageError(f"bad symbol(s) {', '.join(bad) or repr(text)} in --symbols: Binance symbols are "
                                 "2-20 letters and digits, e.g. BTCUSDT,ETHUSDT")
    return tuple(dict.fromkeys(names))


def _timeframes(text: str) -> tuple[Timeframe, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {tf.value: tf for tf in Timeframe}
    bad = [name for name in names if name not in known]
    if bad or not names:
        raise DownloadUsageError(f"bad timeframe(s) {', '.join(bad) or repr(text)} in --timeframes: choose from "
                                 f"{', '.join(known)}")
    return tuple(dict.fromkeys(known[name] for name in names))


def _time_ms(text: str, option: str) -> int:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise DownloadUsageError(f"{option} {text!r} is not a date (YYYY-MM-DD or an ISO date-time, UTC)") from e
    return ms_from_utc(value.replace(tzinfo=UTC) if value.tzinfo is None else value)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """One symbol and timeframe: the closed candles wanted, and the spans of them to fetch."""

    symbol: str
    timeframe: Timeframe
    wanted: Span
    missing: list[Span]

    @property
    def candles(self) -> int:
        return sum(span.candles(self.timeframe.ms) for span in self.missing)


@dataclass
class _Pending:
    """What the pages fetched since the last write brought: candles, and spans the exchange has none for."""

    candles: list[Candle] = field(default_factory=list)
    empty: list[Span] = field(default_factory=list)
    pages: int = 0


@dataclass(frozen=True, slots=True)
class SeriesResult:
    plan: SeriesPlan
    requests: int
    added: int
    times: np.ndarray  # the file's open times after the download

    def line(self) -> str:
        head = f"{self.plan.symbol} {self.plan.timeframe.value:<3}  +{self.added:,} candles, {self.requests} request(s)"
        if not len(self.times):
            return f"{head}; no candles in the range"
        step = self.plan.timeframe.ms
        first, last = int(self.times[0]), int(self.times[-1])
        within = Span(max(first, self.plan.wanted.start_ms), min(last + step, self.plan.wanted.end_ms))
        gaps = [gap_of(hole, step) for hole in holes(self.times, within, step)]
        return (f"{head}; file {time_text(first)} .. {time_text(last)}, {len(self.times):,} rows; in the range "
                f"{gaps_text(gaps)}")


@dataclass(frozen=True, slots=True)
class DownloadReport:
    directory: Path
    rules: list[str]  # the symbols exchange_info.json holds
    series: list[SeriesResult]

    def lines(self) -> list[str]:
        requests = sum(s.requests for s in self.series)
        added = sum(s.added for s in self.series)
        return [*(s.line() for s in self.series),
                f"{self.directory}: +{added:,} candles in {requests} kline request(s); exchange_info.json holds the "
                f"rules of {', '.join(self.rules)}"]


class CandleDownloader:
    """Fills a data directory from a source: exchangeInfo merged into exchange_info.json, then, per symbol and
    timeframe, the closed candles in the range that the file lacks and the exchange was not already found
    without, written every few pages and when a series ends (or fails), so a rerun resumes."""

    def __init__(self, source: KlineSource, directory: Path, progress: Progress | None = None,
                 flush_every_pages: int = FLUSH_EVERY_PAGES) -> None:
        self._source = source
        self._directory = directory
        self._progress = progress or NoProgress()
        self._flush_every_pages = flush_every_pages

    async def run(self, request: DownloadRequest) -> DownloadReport:
        self._directory.mkdir(parents=True, exist_ok=True)
        rules = merge_exchange_info(self._directory, await self._source.exchange_info(request.symbols))
        log = ExchangeGapLog.load(self._directory)
        plans = [self.plan(request, symbol, tf, log) for symbol in request.symbols for tf in request.timeframes]
        self._progress.start(sum(plan.candles for plan in plans))
        try:
            results = [await self._fetch(plan, log) for plan in plans]
        finally:
            self._progress.close()
        return DownloadReport(self._directory, rules, results)

    def plan(self, request: DownloadRequest, symbol: str, timeframe: Timeframe, log: ExchangeGapLog) -> SeriesPlan:
        """The range's closed candles the file lacks, less the spans the exchange is known to have none for."""
        step = timeframe.ms
        closed_end = self._source.server_now_ms() // step * step
        end = closed_end if request.end_ms is None else min(align_up(request.end_ms, step), closed_end)
        wanted = Span(align_up(request.start_ms, step), end)
        have = CandleFile(self._directory, symbol, timeframe).open_times()
        return SeriesPlan(symbol, timeframe, wanted, subtract(holes(have, wanted, step), log.spans(symbol, timeframe)))

    async def _fetch(self, plan: SeriesPlan, log: ExchangeGapLog) -> SeriesResult:
        file = CandleFile(self._directory, plan.symbol, plan.timeframe)
        pending, requests, added = _Pending(), 0, 0
        try:
            for span in plan.missing:
                start = span.start_ms
                while start < span.end_ms:
                    start = await self._fetch_page(plan, Span(start, span.end_ms), pending)
                    requests += 1
                    if pending.pages >= self._flush_every_pages:
                        added += self._write(plan, file, log, pending)
        finally:
            added += self._write(plan, file, log, pending)
        return SeriesResult(plan, requests, added, file.open_times())

    async def _fetch_page(self, plan: SeriesPlan, span: Span, pending: _Pending) -> int:
        """One request from the start of `span`; returns where the next one starts."""
        step = plan.timeframe.ms
        answer = await self._source.klines(plan.symbol, plan.timeframe, span.start_ms, span.end_ms, PAGE_CANDLES)
        candles = [c for c in answer if span.start_ms <= c.open_time_ms < span.end_ms]
        # a short page means the exchange has nothing more in the span: what it did not send, it does not have
        covered = Span(span.start_ms, candles[-1].open_time_ms + step if len(answer) >= PAGE_CANDLES and candles
                       else span.end_ms)
        pending.candles += candles
        pending.empty += self._settled(holes([c.open_time_ms for c in candles], covered, step), step)
        pending.pages += 1
        self._progress.advance(covered.candles(step))
        return covered.end_ms

    def _settled(self, empty: list[Span], step: int) -> list[Span]:
        """The parts of `empty` that closed SETTLE_MS or more ago: only they are taken as the exchange's final word."""
        settled_end = (self._source.server_now_ms() - SETTLE_MS) // step * step
        return [part for part in (Span(s.start_ms, min(s.end_ms, settled_end)) for s in empty) if part]

    @staticmethod
    def _write(plan: SeriesPlan, file: CandleFile, log: ExchangeGapLog, pending: _Pending) -> int:
        """The pending candles into the file, then the spans found empty into the log (in this order: a crash in
        between only asks the exchange again); returns how many candles were new."""
        added = file.merge(pending.candles) if pending.candles else 0
        if pending.empty:
            log.add(plan.symbol, plan.timeframe, pending.empty)
            log.save()
        pending.candles, pending.empty, pending.pages = [], [], 0
        return added
