"""Each cycle's market analysis computed ahead of the engine by forked worker processes (a backtest's other cores).

A cycle's analysis of a symbol (klines, features, the analyst's answer) depends on the candles and the time only,
never on the books, so it can be computed before its cycle. Worker processes forked from the backtest run the
bot's own `TradingBot.analyse_symbol` (the live path's code, on their copy of the market) over blocks of cycles,
and the engine takes the answers in cycle order while the workers compute the next blocks. Holds (nearly every
cycle) travel as a few plain values; any other answer travels with its features, which sizing an entry needs.

Only the rule-based analyst is computed ahead: it is local and deterministic. A replayed LLM analyst may ask the
live model (`--live-misses`), which must happen once, in the engine's order.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ctypes
import dataclasses
import functools
import gc
import multiprocessing
import operator
import os
import pickle
import signal
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from app.domain.analysts import AnalystKind
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.risk import TradingConfig
from app.domain.values import AnalystReport, MarketFeatures, Signal, SignalType
from app.engine.bot import SymbolAnalysis, TradingBot
from app.features.builder import MarketFeatureBuilder
from app.indicators.batch import warm_up as warm_up_indicators

if TYPE_CHECKING:
    from app.backtest.runner import BacktestEngine

# Cycles per task: the first block small so the engine starts soon, then doubling to the largest, and halving again
# near the end so the engine is not left alone with a large last block. Larger blocks only cost memory: each one
# in flight holds its answers (and a worker batches indicators per block).
BLOCKS = (1024, 2048)
AHEAD_ANALYZERS = frozenset({AnalystKind.RULES.value})

# a hold as plain values: (last price as text, regime, confluence, reasoning, analyzer)
PackedHold = tuple[str, str, float, str, str]
# any other answer: a hold's values, then the signal's other fields (prices as text), the report when it holds more
# than its signal and analyzer (else None), and the features but for symbol, time and price, pickled (unpickled only
# if an entry needs them)
PackedSignal = tuple[str, int, str | None, str | None, str | None]
PackedAnswer = tuple[str, str, float, str, str, PackedSignal, AnalystReport | None, bytes | None]
Packed = PackedHold | PackedAnswer | None


class WorkerFailed(RuntimeError):
    """A worker process died (killed, out of memory): the backtest cannot go on without its cycles."""


# every field but the ones a packed hold carries, read at once, and their values in a plain hold
_SIGNAL_REST = operator.attrgetter(*(f.name for f in dataclasses.fields(Signal) if f.name != "reasoning"))
_REPORT_REST = operator.attrgetter(*(f.name for f in dataclasses.fields(AnalystReport)
                                     if f.name not in ("signal", "analyzer")))
_PLAIN = AnalystReport(Signal.hold(""), "")
# the features' fields after the three an analysis repeats (SymbolAnalysis.of): symbol, time and last price
_FEATURE_NAMES = [f.name for f in dataclasses.fields(MarketFeatures)]
assert _FEATURE_NAMES[:3] == ["symbol", "time", "last_price"], _FEATURE_NAMES
_FEATURES_REST = operator.attrgetter(*_FEATURE_NAMES[3:])
_PLAIN_SIGNAL_REST, _PLAIN_REPORT_REST = _SIGNAL_REST(_PLAIN.signal), _REPORT_REST(_PLAIN)


def pack(analysis: SymbolAnalysis | None, features: bytes | None = None) -> Packed:
    """What a worker sends: a plain hold as its values (the engine reads nothing else of a hold), any other answer
    as values too, with its features pickled apart (`features`: already pickled by `features_bytes`). Symbol and
    time are the engine's (it asks for them).
    A Decimal's text gives it back exactly (digits and exponent), and pickles at a fraction of its cost; so do
    plain values against the dataclasses, their datetime and enum."""
    if analysis is None:
        return None
    report = analysis.report
    signal = report.signal
    hold = (str(analysis.last_price), analysis.regime, analysis.confluence, signal.reasoning, report.analyzer)
    signal_rest, report_rest = _SIGNAL_REST(signal), _REPORT_REST(report)
    if signal_rest == _PLAIN_SIGNAL_REST and report_rest == _PLAIN_REPORT_REST:
        return hold  # report == AnalystReport(Signal.hold(reasoning), analyzer), without building one
    return (*hold, (signal.signal.value, signal.confidence, _text(signal.entry_price), _text(signal.stop_loss),
                    _text(signal.take_profit)),
            None if report_rest == _PLAIN_REPORT_REST else report,
            features if features is not None else _packed_features(analysis))


def unpack(packed: Packed, symbol: str, now: datetime) -> SymbolAnalysis | None:
    if packed is None:
        return None
    if len(packed) == 5:
        price, regime, confluence, reasoning, analyzer = packed
        report = AnalystReport(Signal(SignalType.HOLD, 0, None, None, None, reasoning), analyzer)  # Signal.hold
        return SymbolAnalysis(symbol, now, Decimal(price), regime, confluence, report, None)
    price, regime, confluence, reasoning, analyzer, (kind, confidence, entry, stop, target), whole, features = packed
    if whole is None:
        whole = AnalystReport(Signal(SignalType(kind), confidence, _decimal(entry), _decimal(stop), _decimal(target),
                                     reasoning), analyzer)
    last_price = Decimal(price)
    return SymbolAnalysis(symbol, now, last_price, regime, confluence, whole, None, load_features=None if features is None
                          else functools.partial(_load_features, symbol, now, last_price, features))


def _packed_features(analysis: SymbolAnalysis) -> bytes | None:
    """The features but for what the analysis repeats (SymbolAnalysis.of: the same symbol, time and price object);
    features of an analysis built otherwise travel whole."""
    features = analysis.features
    if features is None:
        return None
    if (features.symbol == analysis.symbol and features.time == analysis.time
            and features.last_price is analysis.last_price):
        return features_bytes(features)
    return pickle.dumps(features, pickle.HIGHEST_PROTOCOL)


def features_bytes(features: MarketFeatures) -> bytes:
    """The features but for the symbol, time and last price (which the answer they travel with repeats), pickled."""
    return pickle.dumps(_FEATURES_REST(features), pickle.HIGHEST_PROTOCOL)


def _load_features(symbol: str, now: datetime, last_price: Decimal, packed: bytes) -> MarketFeatures:
    loaded = pickle.loads(packed)
    return loaded if isinstance(loaded, MarketFeatures) else MarketFeatures(symbol, now, last_price, *loaded)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


class PackedColumn:
    """One symbol's packed answers over a block of cycles. The plain holds' values go column by column: five lists
    of strings and floats pickle and load several times faster than a small tuple per cycle (and leave the
    engine's garbage collector fewer objects); any other answer, or none, is kept by its offset."""

    __slots__ = ("_holds", "_others")

    def __init__(self, holds: tuple[list[Any], ...], others: dict[int, PackedAnswer | None]) -> None:
        self._holds, self._others = holds, others

    @classmethod
    def of(cls, answers: Sequence[Packed]) -> PackedColumn:
        others: dict[int, PackedAnswer | None] = {}
        plain = [_NO_HOLD] * len(answers)
        for i, packed in enumerate(answers):
            if packed is None or len(packed) != 5:  # not a PackedHold
                others[i] = packed  # None or a PackedAnswer
            else:
                plain[i] = packed
        return cls(tuple(map(list, zip(*plain, strict=True))) if plain else (), others)

    @classmethod
    def joined(cls, parts: Sequence[PackedColumn]) -> PackedColumn:
        """The parts one after another, as one column."""
        if len(parts) == 1:
            return parts[0]
        holds: list[list[Any]] = [[] for _ in _NO_HOLD]
        others: dict[int, PackedAnswer | None] = {}
        offset = 0
        for part in parts:
            for column, values in zip(holds, part._holds, strict=False):
                column.extend(values)
            others.update((offset + i, answer) for i, answer in part._others.items())
            offset += len(part)
        return cls(tuple(holds), others)

    def __len__(self) -> int:
        return len(self._holds[0]) if self._holds else 0

    def __getitem__(self, offset: int) -> Packed:
        if offset in self._others:
            return self._others[offset]
        price, regime, confluence, reasoning, analyzer = self._holds
        return price[offset], regime[offset], confluence[offset], reasoning[offset], analyzer[offset]

    def __reduce__(self) -> tuple[type[PackedColumn], tuple[Any, ...]]:
        return PackedColumn, (self._holds, self._others)


_NO_HOLD: PackedHold = ("", "", 0.0, "", "")  # the hold columns' filler where another answer stands


def _return_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc), so that what loading the candles left behind is
    neither copied nor counted in the workers (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def block_bounds(count: int, first: int, largest: int) -> list[tuple[int, int]]:
    """[start, stop) of each block of `count` cycles."""
    bounds: list[tuple[int, int]] = []
    start, size = 0, first
    while start < count:
        left = count - start
        take = left if left <= first else min(size, max(first, left // 2))
        bounds.append((start, start + take))
        start, size = start + take, min(size * 2, largest)
    return bounds


@dataclass(slots=True)
class _Plan:
    """What each worker inherits when it is forked: its copy of the engine and the cycles to analyse."""

    bot: TradingBot
    features: MarketFeatureBuilder
    clock: SimulatedClock
    config: TradingConfig
    times: list[datetime]
    bounds: list[tuple[int, int]]


_plan: _Plan | None = None  # set in each worker process by _start_worker
_loop: asyncio.AbstractEventLoop | None = None


def _start_worker(plan: _Plan) -> None:
    global _plan, _loop
    _plan, _loop = plan, asyncio.new_event_loop()
    # Ctrl-C is the engine's to handle (it shuts the pool down); the handler inherited from the engine's asyncio
    # runner would act on the engine's loop from here
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _analyse_block(block: int) -> list[PackedColumn]:
    """In a worker: every planned cycle of one block, one column per symbol and one entry per cycle."""
    assert _plan is not None and _loop is not None, "not a worker process"
    plan = _plan
    start, stop = plan.bounds[block]
    times = plan.times[start:stop]
    plan.features.plan_until(times[-1])
    return _loop.run_until_complete(_columns(plan, times))


async def _columns(plan: _Plan, times: list[datetime]) -> list[PackedColumn]:
    config = plan.config
    answers: list[list[Packed]] = [[] for _ in config.symbols]
    for now in times:
        plan.clock.set(now)
        wanted = config.in_trading_hours(now.time())
        for symbol, column in zip(config.symbols, answers, strict=True):
            column.append(pack(await plan.bot.analyse_symbol(symbol, config.analyzer, now)) if wanted else None)
    return [PackedColumn.of(column) for column in answers]


class WorkerAnalyses:
    """The engine's side (TradingBot.ahead): blocks submitted a few ahead and strictly in order (a worker's clock
    only moves forward), rows taken in cycle order."""

    def __init__(self, engine: BacktestEngine, config: TradingConfig, times: list[datetime], workers: int,
                 blocks: tuple[int, int] = BLOCKS) -> None:
        self._config = config
        self._column = {symbol: i for i, symbol in enumerate(config.symbols)}
        self._times = times
        self._first_ms = ms_from_utc(times[0])
        self._step_ms = ms_from_utc(times[1]) - self._first_ms if len(times) > 1 else 1
        self._bounds = block_bounds(len(times), *blocks)
        workers = min(workers, len(self._bounds))
        self._lookahead = workers + 1
        plan = _Plan(engine.bot, engine.features, engine.clock, config, times, self._bounds)
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker, initargs=(plan,),
        )
        self._pending: dict[int, Future[list[PackedColumn]]] = {}
        self._submitted = -1  # the last block handed to the pool
        self._answers: list[PackedColumn] = []
        self._block, self._start, self._stop = -1, 0, 0
        # an answer's candle windows (features.recent) cross as references to the candles both processes hold
        self._sharing = contextlib.ExitStack()
        self._sharing.enter_context(engine.candles.share_with_forks())
        # The workers fork at the first submit. Objects the garbage collector would visit (writing to each, so
        # copying its page) are set aside first, in the workers and here, until the run ends: the loaded candles,
        # the modules and the engine stay shared instead of being copied into every process.
        # (No gc.collect() first: it took 0.15 s of a one-symbol run to find a few dozen objects.)
        warm_up_indicators()  # compiled once here, shared by the workers (each would otherwise load its own)
        _return_free_memory()
        gc.freeze()
        try:
            self._submit_through(min(self._lookahead, len(self._bounds)) - 1)
        except BaseException:
            self.close()
            raise

    def covers(self, symbol: str, analyzer: str) -> bool:
        return analyzer == self._config.analyzer and symbol in self._column

    def take(self, symbol: str, now: datetime) -> SymbolAnalysis | None:
        index = (ms_from_utc(now) - self._first_ms) // self._step_ms
        if not 0 <= index < len(self._times) or self._times[index] != now:
            raise RuntimeError(f"no analysis was planned for {now.isoformat()}")
        if not self._start <= index < self._stop:
            self._load(bisect.bisect_right(self._bounds, (index, len(self._times))) - 1)
        return unpack(self._answers[self._column[symbol]][index - self._start], symbol, now)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._sharing.close()
        gc.unfreeze()

    def _load(self, block: int) -> None:
        if block < self._block:
            raise RuntimeError(f"cycles are taken in order: block {block} came after block {self._block}")
        for skipped in [b for b in self._pending if b < block]:  # cycles the engine did not analyse
            self._pending.pop(skipped).cancel()
        if block > self._submitted:
            self._submitted = block - 1  # the blocks in between are not needed any more
            self._submit_through(block)
        try:
            self._answers = self._pending.pop(block).result()
        except BrokenProcessPool as e:
            raise _failed(e) from e
        self._block = block
        self._start, self._stop = self._bounds[block]
        self._submit_through(min(block + self._lookahead, len(self._bounds) - 1))

    def _submit_through(self, last: int) -> None:
        """Hand blocks up to `last` to the pool, in order."""
        try:
            while self._submitted < last:
                self._submitted += 1
                self._pending[self._submitted] = self._pool.submit(_analyse_block, self._submitted)
        except BrokenProcessPool as e:
            raise _failed(e) from e


def _failed(error: BrokenProcessPool) -> WorkerFailed:
    return WorkerFailed(
        f"an analysis worker process stopped unexpectedly ({error}); --workers 0 runs the backtest in one process"
    )


def default_workers() -> int:
    """One worker per core this process may run on; none on a single core, where they could only add work."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores if cores > 1 else 0


def start_analyses_ahead(engine: BacktestEngine, config: TradingConfig, times: list[datetime]) -> WorkerAnalyses | None:
    """Workers for a backtest worth them (two blocks of cycles or more, a local analyst, fork available), else None:
    the engine then analyses in its own process, as it always does live."""
    workers = engine.workers if engine.workers is not None else default_workers()
    if (workers < 1 or config.analyzer not in AHEAD_ANALYZERS or len(times) < 2 * engine.ahead_blocks[0]
            or "fork" not in multiprocessing.get_all_start_methods()):
        return None
    return WorkerAnalyses(engine, config, times, workers, engine.ahead_blocks)
