"""`trdbot backtest`: settings and config from the options, the run with its progress bar, and the report files."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from app.analysts.replay import RecordedAnswer, read_recorded_answers
from app.backtest.ahead import WorkerFailed
from app.backtest.data import cut_candles, load_candles, plan_span
from app.backtest.edge import EDGE_REPETITIONS, edge_report
from app.backtest.exit_simulation import ExitModel
from app.backtest.report import build_report, summary_text, write_files
from app.backtest.runner import BacktestEngine, BacktestResult, BacktestSpec, run_backtest
from app.backtest.strategy import SECTIONS, StrategyError, StrategyOverrides
from app.config import Settings
from app.domain.analysts import BACKTEST_ANALYSTS, AnalystKind
from app.domain.clock import SimulatedClock, ms_from_utc
from app.domain.errors import ConfigurationError, DataError
from app.domain.risk import TradingConfig
from app.domain.symbols import Selection, normalised, selection_problems, tradable_problem
from app.domain.values import RulesSource, SymbolRules, Timeframe
from app.marketdata.candles import CandleStore
from app.marketdata.exchange_info import rules_for_candles
from app.user_config import ConfigUpdate


class EngineBuilder(Protocol):
    """The composition root's `build_backtest_engine`."""

    def __call__(self, settings: Settings, candles: CandleStore, clock: SimulatedClock,
                 recorded: Mapping[str, RecordedAnswer] | None = None,
                 strategy: StrategyOverrides | None = None) -> BacktestEngine: ...

CONFIG_FIELDS = {f.name for f in dataclasses.fields(TradingConfig)} - {"user_id", "is_active", "mode", "extra"}


class BacktestUsageError(ValueError):
    """A bad option or input file: the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class BacktestOptions:
    symbols: tuple[str, ...] | None
    start: datetime | None
    end: datetime | None
    data: Path | None
    balance: Decimal
    analyzer: str
    seed: int
    config: Path | None
    out: Path | None
    quiet: bool
    decisions: Path | None = None
    live_misses: bool = False
    workers: int | None = None  # processes analysing cycles ahead (None: BACKTEST_WORKERS, else one per core)
    allow_errors: bool = False  # errors during the run (refused orders, failed analyses) still exit 0
    edge_repetitions: int = EDGE_REPETITIONS  # sets of random entries the edge test compares the run's entries with


def parse_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise BacktestUsageError(f"{option} {text!r} is not a date (YYYY-MM-DD or ISO date-time)") from e
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_decimal(text: str, option: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as e:
        raise BacktestUsageError(f"{option} {text!r} is not a number") from e
    if not value.is_finite() or value <= 0:
        raise BacktestUsageError(f"{option} must be a positive number, got {text}")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BacktestUsageError(f"--config {path}: {e}") from e
    if not isinstance(data, dict):
        raise BacktestUsageError(f"--config {path}: expected a JSON object")
    unknown = sorted(set(data) - CONFIG_FIELDS - set(Settings.model_fields) - set(SECTIONS))
    if unknown:
        raise BacktestUsageError(f"--config {path}: unknown field(s) {', '.join(unknown)}")
    try:
        StrategyOverrides.of(data)
    except StrategyError as e:
        raise BacktestUsageError(f"--config {path}: {e}") from e
    trading = {key: value for key, value in data.items() if key in CONFIG_FIELDS}
    try:  # the limits PUT /trading/config enforces: a backtest never runs on settings the service would refuse
        ConfigUpdate.model_validate(trading)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise BacktestUsageError(f"--config {path}: {problems}") from e
    return data


def parse_symbols(text: str) -> tuple[str, ...]:
    """`--symbols`: comma-separated pairs (and at most one top:N); an empty or repeated one is an error."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise BacktestUsageError("--symbols is empty: name at least one pair (e.g. BTCUSDT) or a rule (top:5)")
    if not all(items):
        raise BacktestUsageError(f"--symbols {text!r} has an empty item")
    upper = [item.upper() for item in items]
    repeated = sorted({item for item in upper if upper.count(item) > 1})
    if repeated:
        raise BacktestUsageError(f"--symbols names {', '.join(repeated)} more than once")
    return normalised(items)


def build_settings(options: BacktestOptions, overrides: Mapping[str, Any]) -> Settings:
    values = {k: v for k, v in overrides.items() if k in Settings.model_fields and k not in CONFIG_FIELDS}
    values.update(random_seed=options.seed, paper_start_balance=options.balance)
    if options.live_misses:
        values["replay_live_misses"] = True
    if options.workers is not None:
        values["backtest_workers"] = options.workers
    try:
        return Settings(_env_file=None, **values)
    except ValueError as e:
        raise BacktestUsageError(f"--config: {str(e).splitlines()[0]}: {_first_error(e)}") from e


def _first_error(error: Exception) -> str:
    lines = str(error).splitlines()
    return " ".join(line.strip() for line in lines[1:3])


def build_config(options: BacktestOptions, settings: Settings, overrides: Mapping[str, Any]) -> TradingConfig:
    """The virtual user's config: the service defaults, then the --config file, then the options."""
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in CONFIG_FIELDS:
            values[key] = _config_value(key, value)
    if options.symbols:
        values["symbols"] = normalised(options.symbols)
    values["analyzer"] = options.analyzer
    return dataclasses.replace(settings.trading_config(1), is_active=True, **values)


def _config_value(key: str, value: Any) -> Any:
    if key in ("symbols", "exclude_symbols"):
        items = value.split(",") if isinstance(value, str) else value
        return normalised(str(s) for s in items)
    if key in ("risk_per_trade_pct", "max_balance_trade_ratio"):
        return parse_decimal(str(value), key)
    if key in ("trading_hours_start", "trading_hours_end"):
        return None if value is None else time.fromisoformat(str(value))
    return value


def default_span(candles: CandleStore, symbols: tuple[str, ...]) -> tuple[datetime, datetime]:
    spans = [candles.span(s, Timeframe.M5) for s in symbols]
    return max(s for s, _ in spans), min(e for _, e in spans)


def load(options: BacktestOptions, settings: Settings, selection: Selection) -> tuple[CandleStore, datetime, datetime]:
    """The named symbols' candles (with a `top:N` rule, every symbol's in the directory) over the span."""
    directory = options.data or settings.data_dir
    wanted = selection.named if selection.top is None else None
    if options.start is not None and options.end is not None:
        return load_candles(directory, wanted, options.start, options.end), options.start, options.end
    everything = CandleStore.load(directory, symbols=wanted)  # the span comes from the data: read it once
    if selection.named:
        first, last = default_span(everything, selection.named)
    else:  # top:N alone: from the first symbol's data to the last one's
        spans = [everything.span(s, Timeframe.M5) for s in everything.symbols() if Timeframe.M5 in everything.timeframes(s)]
        if not spans:
            raise DataError(f"no 5m candles in {directory}")
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
    start, end = options.start or first, options.end or last
    return cut_candles(everything, start, end), start, end


def check_symbols(config: TradingConfig, rules: Mapping[str, SymbolRules]) -> None:
    """A named symbol that cannot be traded (no rules, not quoted in USDT), or a bad rule, is a usage error naming
    it."""
    problems = selection_problems(config.symbols, rules) + selection_problems(config.exclude_symbols, rules)
    if problems:
        raise BacktestUsageError(f"--symbols: {'; '.join(problems)}")


def load_recorded(options: BacktestOptions) -> dict[str, RecordedAnswer]:
    """`--analyzer gemini` or `openai` replays recorded answers; it never asks a model about the past."""
    if options.analyzer == AnalystKind.RULES:
        return {}
    if options.analyzer not in BACKTEST_ANALYSTS:
        raise BacktestUsageError(f"--analyzer {options.analyzer}: choose one of {', '.join(BACKTEST_ANALYSTS)}")
    path = options.decisions
    if path is None or not path.exists():
        raise BacktestUsageError(
            f"--analyzer {options.analyzer} replays recorded answers, but {path} does not exist: "
            "export them with `trdbot decisions export` and `trdbot decisions import`"
        )
    return read_recorded_answers(path)


def run_command(options: BacktestOptions, build_engine: EngineBuilder, timer: Callable[[], float]) -> int:
    """The whole command; raises BacktestUsageError / DataError / ConfigurationError for one-line errors."""
    recorded = load_recorded(options)
    overrides = read_config_file(options.config) if options.config else {}
    settings = build_settings(options, overrides)
    config = build_config(options, settings, overrides)
    selection = Selection.of(config.symbols)
    candles, start, end = load(options, settings, selection)
    rules = rules_for_candles(candles, candles.directory)
    universe = _universe(selection, rules, candles, start, end)
    end, past_the_data = _within_data(candles, universe, end)
    span = plan_span(candles, selection.named, start, end, start_requested=options.start is not None,
                     candidates=universe if selection.top is not None else ())
    check_symbols(config, rules)
    warnings = [*past_the_data, *span.warnings, *_inferred(rules, universe)]
    for warning in warnings:  # now, not only in the summary: a long run should not hide them until it ends
        print(f"trdbot backtest: warning: {warning}", file=sys.stderr)
    engine = build_engine(settings, candles, SimulatedClock(span.start), recorded, StrategyOverrides.of(overrides))
    spec = BacktestSpec(config=config, start=span.start, end=span.end, balance=options.balance, universe=universe)
    began = timer()
    result = _run_with_progress(engine, spec, options.quiet)
    elapsed = timer() - began
    extra = {"requested_start": span.requested_start.isoformat(), "seed": options.seed, "analyzer": options.analyzer,
             "rules": {s: rules[s].source.value for s in universe}, "warnings": warnings}
    extra["edge"] = edge_report(result, candles, exit_model(settings, config), options.seed, options.edge_repetitions)
    report = build_report(result, candles, extra)
    print(summary_text(report))
    print(f"  speed            {result.cycles / max(elapsed, 1e-9):,.0f} cycles/s ({elapsed:.2f} s)")
    if options.out is not None:
        write_outputs(options.out, report, result, candles)
        print(f"  report           {options.out}/report.html")
    errors = report["errors"]["count"]
    if errors and not options.allow_errors:
        print(f"trdbot backtest: {errors} error(s) during the run (listed above and in report.json's \"errors\"); "
              "fix their cause, or accept them with --allow-errors", file=sys.stderr)
        return 1
    return 0


def exit_model(settings: Settings, config: TradingConfig) -> ExitModel:
    """The simulated exchange's costs and the run's exit rules, for the edge test."""
    return ExitModel.of(settings.sim_fee_rate, settings.sim_slippage_pct, settings.stop_limit_gap_pct,
                        config.position_timeout_minutes)


def _universe(selection: Selection, rules: Mapping[str, SymbolRules], candles: CandleStore, start: datetime,
              end: datetime) -> tuple[str, ...]:
    """The named symbols, and with a `top:N` rule every tradable symbol with 5m candles in the span."""
    if selection.top is None:
        return selection.named
    in_span = [s for s in sorted(rules) if tradable_problem(rules[s]) is None
               and len(candles.arrays_between(s, Timeframe.M5, ms_from_utc(start), ms_from_utc(end)))]
    return tuple(dict.fromkeys((*selection.named, *in_span)))


def _within_data(candles: CandleStore, symbols: Sequence[str], end: datetime) -> tuple[datetime, list[str]]:
    """The run's end: --end, or where the data ends when --end lies past it (said, not hidden in the header)."""
    ends = []
    for symbol in symbols:
        with contextlib.suppress(DataError):  # a symbol without candles in the span: plan_span names it
            ends.append(candles.span(symbol, Timeframe.M5)[1])
    data_end = max(ends, default=end)
    if end <= data_end:
        return end, []
    return data_end, [f"--end {end:%Y-%m-%d %H:%M} is past the data, whose last candle closes at "
                      f"{data_end:%Y-%m-%d %H:%M}: the run ends there"]


def _inferred(rules: Mapping[str, SymbolRules], symbols: tuple[str, ...]) -> list[str]:
    guessed = [s for s in symbols if rules[s].source is RulesSource.INFERRED]
    if not guessed:
        return []
    return [f"no stored exchange rules for {', '.join(guessed)}: tick, step and minimum notional inferred from "
            f"the candles (conservative); put Binance's exchange_info.json beside them (`trdbot data download`)"]


def write_outputs(out: Path, report: Mapping[str, Any], result: BacktestResult, candles: CandleStore) -> None:
    from app.backtest.charts import write_charts, write_html  # matplotlib loads only when files are wanted

    write_files(out, report, result)
    charts = write_charts(result, candles, out, report.get("edge"))
    write_html(report, charts, out / "report.html")


def _run_with_progress(engine: BacktestEngine, spec: BacktestSpec, quiet: bool) -> BacktestResult:
    if quiet:
        return asyncio.run(run_backtest(engine, spec))
    from tqdm import tqdm

    total = int((spec.end - spec.start).total_seconds() // spec.interval_s) + 1
    with tqdm(total=total, unit="cycle", file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        def advance(now: datetime, _summary: Any, trades: int) -> None:
            bar.update(1)
            if bar.n % 288 == 0:
                bar.set_postfix_str(f"{now:%Y-%m-%d %H:%M}  trades {trades}", refresh=False)

        return asyncio.run(run_backtest(engine, spec, on_cycle=advance))


ERRORS = (BacktestUsageError, DataError, ConfigurationError, WorkerFailed)
