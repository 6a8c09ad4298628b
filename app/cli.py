"""The `trdbot` command line: demo, serve, engine, worker, backtest, exchange-sim, data, decisions, db upgrade, keygen."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.domain.analysts import BACKTEST_ANALYSTS, AnalystKind
from app.domain.errors import TradingError
from app.private_files import private_files

if TYPE_CHECKING:
    from app.config import Settings
    from app.devtools.simulator import ExchangeSimulator
    from app.marketdata.candles import CandleStore

VAR_DIR = Path("./var")


def _uvicorn(app: Any, args: argparse.Namespace, log_level: str, forwarded_allow_ips: str | None,
             access_log: bool = True) -> None:
    import uvicorn

    from app.logging_setup import uvicorn_log_config

    uvicorn.run(app, host=args.host, port=args.port, log_level=log_level, log_config=uvicorn_log_config(),
                proxy_headers=forwarded_allow_ips is not None, forwarded_allow_ips=forwarded_allow_ips,
                access_log=access_log)


def _demo_secrets(var_dir: Path) -> dict[str, str]:
    """The demo's own JWT secret and credentials key, generated once and kept under ./var/."""
    from app.services.security import CredentialCipher

    path = var_dir / "demo-secrets.env"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"JWT_SECRET={secrets.token_urlsafe(48)}\nCREDENTIALS_KEY={CredentialCipher.generate_key()}\n"
        )
        path.chmod(0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def _serve_settings(args: argparse.Namespace, command: str) -> Settings | None:
    """The environment's settings with the command's overrides, or None after printing why they cannot be served."""
    from pydantic import ValidationError

    from app.config import Settings

    overrides = {"market_clock": args.market_clock, "market_source": args.market_source}
    try:
        settings = Settings(**{name: value for name, value in overrides.items() if value})
    except ValidationError as e:
        print(f"trdbot {command}: bad settings:\n{e}", file=sys.stderr)
        return None
    problems = settings.live_problems() if settings.is_live else settings.serve_problems()
    if settings.engine_decide_on == "workers" or command == "worker":
        problems = [*problems, *settings.decide_on_workers_problems()]
    if problems:
        for problem in problems:
            print(f"refusing to start ({_serve_mode(settings)}): {problem}", file=sys.stderr)
        return None
    return settings


def _serve(args: argparse.Namespace) -> int:
    from app.logging_setup import configure_logging
    from app.main import create_app
    from app.serving import Listen, port_problem, serving_container, supervise, tuned

    settings = _serve_settings(args, "serve")
    if settings is None:
        return 2
    workers = settings.api_workers if args.workers is None else args.workers
    mode = _serve_mode(settings)
    if problem := port_problem(args.host, args.port, "serve"):
        print(problem, file=sys.stderr)
        return 2
    if workers and (problems := settings.worker_problems()):
        print(f"refusing to start ({mode}): {problems[0]}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{args.port}/"
    with private_files(settings.database_url):
        configure_logging(settings.log_dir, settings.log_level)
        if workers:
            logging.getLogger("trdbot").info("serve: %s on %s:%s, %d API processes and an engine process", mode,
                                             args.host, args.port, workers)
            listen = Listen(args.host, args.port, settings.forwarded_allow_ips, settings.access_log)
            overrides = {"MARKET_CLOCK": args.market_clock, "MARKET_SOURCE": args.market_source}
            return supervise(settings, listen, workers, url, {k: v for k, v in overrides.items() if v})
        logging.getLogger("trdbot").info("serve: %s on %s:%s, API and engine in one process", mode, args.host,
                                         args.port)
        container = serving_container(settings, url, run_engine=True)
        _uvicorn(create_app(container, ready=tuned), args, "info", settings.forwarded_allow_ips, settings.access_log)
    return 0


def _engine(args: argparse.Namespace) -> int:
    import asyncio

    from app.logging_setup import configure_logging
    from app.serving import run_engine, serving_container

    settings = _serve_settings(args, "engine")
    if settings is None:
        return 2
    with private_files(settings.database_url):
        configure_logging(settings.log_dir, settings.log_level)
        logging.getLogger("trdbot").info("engine: %s, pid %d", _serve_mode(settings), os.getpid())
        container = serving_container(settings, args.url, run_engine=True, migrate=not args.no_migrate)
        asyncio.run(run_engine(container, args.parent_pid))
    return 0


def _worker(args: argparse.Namespace) -> int:
    import asyncio

    from app.logging_setup import configure_logging
    from app.serving import run_worker

    settings = _serve_settings(args, "worker")
    if settings is None:
        return 2
    configure_logging(settings.log_dir, settings.log_level)
    logging.getLogger("trdbot").info("worker: %s, pid %d", _serve_mode(settings), os.getpid())
    asyncio.run(run_worker(settings, args.concurrency))
    return 0


def _serve_mode(settings: Settings) -> str:
    if settings.is_live:
        return "live mode"
    return "paper mode on the live market" if settings.market_source == "live" else "paper mode"


def _demo(args: argparse.Namespace) -> int:
    from app.config import Settings
    from app.demo import build_demo_container
    from app.logging_setup import configure_logging
    from app.main import create_app
    from app.serving import port_problem

    if problem := port_problem(args.host, args.port, "demo"):
        print(problem, file=sys.stderr)
        return 2
    with private_files(os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{VAR_DIR}/demo.db")):
        for key, value in _demo_secrets(VAR_DIR).items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{VAR_DIR}/demo.db")
        os.environ["USE_MOCK_BINANCE"] = "true"
        os.environ["MARKET_SOURCE"] = "replay"  # the demo replays the bundled candles, whatever serve is set to
        settings = Settings()
        configure_logging(settings.log_dir, settings.log_level)
        container = build_demo_container(settings, speed=args.speed, port=args.port)
        _uvicorn(create_app(container), args, "warning", settings.forwarded_allow_ips)
    return 0


def _db_upgrade(_: argparse.Namespace) -> int:
    from app.config import Settings
    from app.db import upgrade

    settings = Settings()
    with private_files(settings.database_url):
        upgrade(settings.database_url)
    print("database is at the latest migration")
    return 0


REPLAY_STORE = VAR_DIR / "replay" / "gemini.jsonl"


def _decisions_export(args: argparse.Namespace) -> int:
    import asyncio

    from app.config import Settings
    from app.container import export_recorded_answers

    count = asyncio.run(export_recorded_answers(Settings(), Path(args.out), args.symbol))
    print(f"exported {count} recorded answers to {args.out}")
    return 0


def _decisions_import(args: argparse.Namespace) -> int:
    from app.analysts.replay import merge_recorded_answers
    from app.domain.errors import DataError

    try:
        added, total = merge_recorded_answers(Path(args.store), Path(args.file))
    except (DataError, OSError) as e:
        print(f"trdbot: {e}", file=sys.stderr)
        return 2
    print(f"imported {added} new recorded answers; the replay store {args.store} holds {total}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    import time

    from app.assembly import build_backtest_engine
    from app.backtest.command import ERRORS, BacktestOptions, parse_decimal, parse_symbols, parse_time, run_command

    try:
        options = BacktestOptions(
            symbols=parse_symbols(args.symbols) if args.symbols is not None else None,
            start=parse_time(args.start, "--start") if args.start else None,
            end=parse_time(args.end, "--end") if args.end else None,
            data=args.data, balance=parse_decimal(args.balance, "--balance"), analyzer=args.analyzer,
            seed=args.seed, config=args.config, out=args.out, quiet=args.quiet, decisions=args.decisions,
            live_misses=args.live_misses, workers=args.workers, allow_errors=args.allow_errors,
            edge_repetitions=args.edge_repetitions,
        )
        return run_command(options, build_backtest_engine, time.perf_counter)
    except ERRORS as e:
        print(f"trdbot backtest: {e}", file=sys.stderr)
        return 2


def _add_backtest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bt = commands.add_parser("backtest", help="run the engine over stored candles on a simulated clock")
    bt.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT (default: the config's symbols)")
    bt.add_argument("--start", help="first decision, UTC date or date-time (default: the data start, once every "
                    "symbol's candle windows are full: 7 days of 5m data)")
    bt.add_argument("--end", help="last decision, UTC (default: the end of the data)")
    bt.add_argument("--data", type=Path, help="candle directory (default: MARKET_DATA_DIR or the bundled sample)")
    bt.add_argument("--balance", default="10000", help="starting USDT (default 10000)")
    bt.add_argument("--analyzer", default=AnalystKind.RULES.value, choices=BACKTEST_ANALYSTS)
    bt.add_argument("--seed", type=int, default=42, help="seed of the risk manager's jitter (default 42)")
    bt.add_argument("--config", type=Path, help="JSON object: trading-config fields and/or settings to override")
    bt.add_argument("--out", type=Path, help="directory for report.json, trades.csv, PNG charts and report.html")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    bt.add_argument("--decisions", type=Path, default=REPLAY_STORE,
                    help=f"recorded LLM answers replayed by --analyzer gemini or openai (default {REPLAY_STORE})")
    bt.add_argument("--live-misses", action="store_true",
                    help="with --analyzer gemini or openai: ask the live model when no answer is recorded (costs money)")
    bt.add_argument("--workers", type=_workers, help="processes computing each cycle's market analysis ahead of the "
                    "engine (default: BACKTEST_WORKERS, else one per CPU core, none on one core; 0: none)")
    bt.add_argument("--allow-errors", action="store_true",
                    help="exit 0 even when errors happened during the run (they are listed either way)")
    bt.add_argument("--edge-repetitions", type=_positive, default=200, metavar="N",
                    help="sets of random entries the report's edge test compares the run's entries with (default 200)")
    bt.set_defaults(run=_backtest)


def _optimize(args: argparse.Namespace) -> int:
    from app.assembly import build_backtest_engine
    from app.backtest.ahead import default_workers
    from app.backtest.command import ERRORS, BacktestOptions, parse_decimal, parse_symbols, parse_time
    from app.optimize.command import OptimizeOptions, run_optimize
    from app.optimize.space import SpaceError
    from app.optimize.study import Objective, StudyOptions
    from app.optimize.windows import WindowError, parse_walk_forward

    try:
        backtest = BacktestOptions(
            symbols=parse_symbols(args.symbols) if args.symbols else None,
            start=parse_time(args.start, "--start") if args.start else None,
            end=parse_time(args.end, "--end") if args.end else None,
            data=args.data, balance=parse_decimal(args.balance, "--balance"), analyzer=AnalystKind.RULES.value,
            seed=args.seed, config=args.config, out=args.out, quiet=args.quiet,
            edge_repetitions=args.edge_repetitions,
        )
        jobs = args.jobs if args.jobs is not None else max(1, default_workers())
        study = StudyOptions(trials=args.trials, objective=Objective(args.objective), min_trades=args.min_trades,
                             seed=args.seed, jobs=jobs, storage=args.storage, name=args.study,
                             journal_dir=args.out, heartbeat=args.heartbeat)
        options = OptimizeOptions(backtest=backtest, space=args.space, study=study,
                                  walk_forward=parse_walk_forward(args.walk_forward) if args.walk_forward else None,
                                  anchored=args.anchored, cache=None if args.no_cache else args.cache)
        return run_optimize(options, build_backtest_engine)
    except (*ERRORS, SpaceError, WindowError) as e:
        print(f"trdbot optimize: {e}", file=sys.stderr)
        return 2


def _add_optimize(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    op = commands.add_parser("optimize", help="search settings with Optuna over backtests; walk-forward validation")
    op.add_argument("--symbols", required=True, help="comma-separated pairs, e.g. BTCUSDT,ETHUSDT")
    op.add_argument("--start", required=True, help="first decision, UTC date or date-time")
    op.add_argument("--end", required=True, help="last decision, UTC")
    op.add_argument("--data", type=Path, help="candle directory (default: MARKET_DATA_DIR or the bundled sample)")
    op.add_argument("--balance", default="10000", help="starting USDT of every trial (default 10000)")
    op.add_argument("--seed", type=int, default=42, help="seed of the sampler, the risk jitter and the edge test")
    op.add_argument("--config", type=Path, help="base settings (the backtest's --config format) the space varies")
    op.add_argument("--out", type=Path, help="directory for report.json, report.html, charts and the chosen config")
    op.add_argument("--quiet", action="store_true", help="no progress bar")
    op.add_argument("--space", type=Path, help="search space, JSON or TOML (default: app/optimize/default_space.toml)")
    op.add_argument("--trials", type=_positive, default=50, help="trials per study (per window; default 50)")
    op.add_argument("--objective", default="sharpe", choices=["sharpe", "sortino", "calmar", "profit_factor",
                                                             "expectancy", "net_return"])
    op.add_argument("--min-trades", type=int, default=10, help="a trial with fewer closed trades is discarded")
    op.add_argument("--jobs", type=_positive, help="trial processes (default: one per CPU core)")
    op.add_argument("--storage", help="Optuna storage URL (e.g. postgresql://user:password@host/db): workers "
                    "anywhere join one study")
    op.add_argument("--heartbeat", type=_positive, default=30, metavar="SECONDS",
                    help="with --storage: a running trial's heartbeat; one silent for twice this (its worker died) is "
                         "marked failed and run again by another worker (default 30)")
    op.add_argument("--study", default="trdbot", help="study name in the storage (windows add -w0, -w1, ...)")
    op.add_argument("--walk-forward", metavar="TRAIN/TEST", help="e.g. 6M/2M (units D, W, M, Y): optimise on each "
                    "train window, test the best settings on the next")
    op.add_argument("--anchored", action="store_true", help="train windows all start at --start (default rolling)")
    op.add_argument("--cache", type=Path, default=Path("var/analysis-cache"),
                    help="analysis cache directory (default var/analysis-cache)")
    op.add_argument("--no-cache", action="store_true", help="compute every trial's analyses afresh")
    op.add_argument("--edge-repetitions", type=_positive, default=200, metavar="N",
                    help="sets of random entries the edge test on the out-of-sample trades draws (default 200)")
    op.set_defaults(run=_optimize)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of processes (0 or more), got {text!r}")
    return int(text)


def _keygen(_: argparse.Namespace) -> int:
    from app.services.security import CredentialCipher

    print(f"JWT_SECRET={secrets.token_urlsafe(48)}")
    print(f"CREDENTIALS_KEY={CredentialCipher.generate_key()}")
    return 0


def _exchange_sim(args: argparse.Namespace) -> int:
    import uvicorn

    from app.devtools.simulator import create_simulator_app

    try:
        simulator, start = build_exchange_simulator(args)
    except (ValueError, OSError, TradingError) as e:
        print(f"exchange-sim: {e}", file=sys.stderr)
        return 2
    print(f"Binance spot simulator on http://{args.host}:{args.port}: market time {start.isoformat()} at "
          f"{args.speed:g}x, symbols {', '.join(simulator.market.candles.symbols())}, "
          f"API key(s) {', '.join(args.api_key or [SIM_API_KEY])}, {len(simulator.faults.rules)} fault rule(s)")
    uvicorn.run(create_simulator_app(simulator), host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.log_level == "debug")
    return 0


SIM_API_KEY = "sim-api-key"
SIM_API_SECRET = "sim-api-secret"


def build_exchange_simulator(args: argparse.Namespace) -> tuple[ExchangeSimulator, datetime]:
    """The simulator the `exchange-sim` options describe: candles, replay clock, funded accounts, faults."""
    from app.config import BUNDLED_DATA_DIR
    from app.devtools.faults import FaultPlan, FaultRule
    from app.devtools.simulator import ApiAccount, ExchangeSimulator
    from app.domain.clock import ReplayClock
    from app.marketdata.candles import CandleStore
    from app.venues.paper.market import SimulatedMarket

    candles = CandleStore.load(args.data or BUNDLED_DATA_DIR)
    if not candles.symbols():
        raise ValueError(f"no candle files (binance_<SYMBOL>_5m.csv[.gz]) in {args.data or BUNDLED_DATA_DIR}")
    start = _sim_start(candles, args.start)
    market = SimulatedMarket(candles, slippage_pct=Decimal(args.slippage_pct), fee_rate=Decimal(args.fee_rate))
    faults = FaultPlan.load(args.faults) if args.faults else FaultPlan()
    for spec in args.fault or []:
        faults.add(FaultRule.from_spec(spec))
    balances = dict(parse_balance(text) for text in (args.balance or ["USDT=10000"]))
    keys, secrets_ = args.api_key or [SIM_API_KEY], args.api_secret or [SIM_API_SECRET]
    if len(keys) != len(secrets_):
        raise ValueError("give one --api-secret per --api-key")
    accounts = [ApiAccount(key, secret, balances) for key, secret in zip(keys, secrets_, strict=True)]
    simulator = ExchangeSimulator(market, ReplayClock(start, args.speed), accounts, faults,
                                  check_timestamps=not args.no_timestamp_check)
    return simulator, start


def _sim_start(candles: CandleStore, requested: str | None) -> datetime:
    """The requested start, or a day past the warm-up after the data begins (the 168 hourly candles exist)."""
    from app.backtest.command import default_span
    from app.engine.bot import WARM_UP

    first, last = default_span(candles, tuple(candles.symbols()))
    if requested is None:
        return first + WARM_UP + timedelta(days=1)
    start = datetime.fromisoformat(requested)
    start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
    if not first < start < last:
        raise ValueError(f"--start {requested} is outside the candles ({first.isoformat()} to {last.isoformat()})")
    return start


def parse_balance(text: str) -> tuple[str, Decimal]:
    """`USDT=10000` -> ("USDT", Decimal("10000"))."""
    asset, _, amount = text.partition("=")
    try:
        value = Decimal(amount)
    except InvalidOperation as e:
        raise ValueError(f"bad --balance {text!r}: expected ASSET=AMOUNT, e.g. USDT=10000") from e
    if not asset.strip() or value < 0:
        raise ValueError(f"bad --balance {text!r}: expected ASSET=AMOUNT, e.g. USDT=10000")
    return asset.strip().upper(), value


def _add_exchange_sim(commands: Any) -> None:
    sim = commands.add_parser("exchange-sim", help="a Binance spot REST simulator on 127.0.0.1 replaying candles")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=9100)
    sim.add_argument("--data", type=Path, help="candle directory (default: the bundled sample)")
    sim.add_argument("--start", help="market start time, e.g. 2025-10-01 or 2025-10-01T12:00:00Z (UTC)")
    sim.add_argument("--speed", type=float, default=1.0, help="market seconds per wall second (default 1)")
    sim.add_argument("--api-key", action="append", help=f"an account's API key (repeatable; default {SIM_API_KEY})")
    sim.add_argument("--api-secret", action="append", help="its HMAC secret, in the same order as --api-key")
    sim.add_argument("--balance", action="append", help="starting balance of every account, ASSET=AMOUNT "
                                                        "(repeatable; default USDT=10000)")
    sim.add_argument("--faults", type=Path, help='JSON fault file: {"faults": [{"kind": "rate_limit", '
                                                  '"endpoint": "POST /api/v3/order", "times": 3}, ...]}')
    sim.add_argument("--fault", action="append", help="one fault, e.g. 'kind=server_error,endpoint=orderList/oco,"
                                                      "status=503,execute=true' (repeatable)")
    sim.add_argument("--slippage-pct", default="0.02", help="slippage of market orders and triggered stop-limits, in "
                                                           "percent (default 0.02)")
    sim.add_argument("--fee-rate", default="0.001", help="commission rate (default 0.001)")
    sim.add_argument("--no-timestamp-check", action="store_true",
                     help="accept any timestamp (for clients whose clock does not follow the replay)")
    sim.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sim.set_defaults(run=_exchange_sim)


# ---------------------------------------------------------------- data download / list

DEFAULT_DATA_DIR = Path("./data")


def _data_dir(data: Path | None, *, writing: bool) -> Path:
    """--data, else MARKET_DATA_DIR, else ./data; the bundled sample is written to only when named with --data."""
    from app.config import BUNDLED_DATA_DIR, Settings

    directory = data or Settings().market_data_dir or DEFAULT_DATA_DIR
    if writing and data is None and directory.resolve() == BUNDLED_DATA_DIR.resolve():
        raise ValueError("MARKET_DATA_DIR is the bundled sample: pass --data DIR to choose where candles go")
    return directory


async def _download(args: argparse.Namespace, directory: Path) -> list[str]:
    from app.config import Settings
    from app.domain.clock import WallClock
    from app.marketdata.download import CandleDownloader, ProgressBar, parse_request
    from app.venues.binance.protocol import PRODUCTION_BASE_URL
    from app.venues.binance.public_data import BinancePublicData

    request = parse_request(args.symbols, args.start, args.end, args.timeframes)
    source = BinancePublicData(Settings().binance_base_url or PRODUCTION_BASE_URL, WallClock())
    try:
        progress = None if args.quiet else ProgressBar()
        return (await CandleDownloader(source, directory, progress).run(request)).lines()
    finally:
        await source.aclose()


def _data_download(args: argparse.Namespace) -> int:
    import asyncio

    from app.domain.errors import ConfigurationError, DataError, ExchangeError

    try:
        lines = asyncio.run(_download(args, _data_dir(args.data, writing=True)))
    except (ValueError, ConfigurationError, DataError, OSError) as e:
        print(f"trdbot data download: {e}", file=sys.stderr)
        return 2
    except ExchangeError as e:
        print(f"trdbot data download: stopped: {e}. What was fetched is kept: run the same command again to "
              "resume.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trdbot data download: interrupted; what was fetched is kept: run it again to resume", file=sys.stderr)
        return 130
    print("\n".join(lines))
    return 0


def _data_list(args: argparse.Namespace) -> int:
    from app.domain.errors import DataError
    from app.marketdata.inventory import survey

    try:
        print("\n".join(survey(_data_dir(args.data, writing=False)).lines()))
    except (ValueError, DataError) as e:
        print(f"trdbot data list: {e}", file=sys.stderr)
        return 2
    return 0


def _add_data(commands: Any) -> None:
    data = commands.add_parser("data", help="download Binance candles and exchange rules; list what a directory has")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    download = data_commands.add_parser("download", help="fetch the closed klines a data directory lacks, and "
                                        "exchangeInfo, from BINANCE_BASE_URL (Binance's public API; no key)")
    download.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,XRPUSDT")
    download.add_argument("--start", required=True, help="first open time, UTC date or date-time")
    download.add_argument("--end", help="open times before this, UTC (default: up to the last closed candle)")
    download.add_argument("--timeframes", default="5m,15m,1h", help="comma-separated (default 5m,15m,1h)")
    download.add_argument("--data", type=Path, help=f"directory (default: MARKET_DATA_DIR, else {DEFAULT_DATA_DIR})")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=_data_download)
    listing = data_commands.add_parser("list", help="each symbol's span, rows and gaps per timeframe, and its rules")
    listing.add_argument("--data", type=Path, help=f"directory (default: MARKET_DATA_DIR, else {DEFAULT_DATA_DIR})")
    listing.set_defaults(run=_data_list)


def _add_market_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--market-clock", choices=("wall", "venue"),
                         help="live mode: market time from the wall clock, or from the venue's server time (e.g. "
                              "`trdbot exchange-sim --speed 60`); default MARKET_CLOCK, else wall")
    command.add_argument("--market-source", choices=("replay", "live"),
                         help="paper mode: replay the candle files at REPLAY_SPEED, or trade on the live market's "
                              "public data from BINANCE_BASE_URL (no key); default MARKET_SOURCE, else replay")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trdbot", description="TRD Bot: day-trading Binance spot pairs.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="embedded demo: SQLite, simulated exchange, rule-based analyst")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--speed", type=float, default=300.0, help="market seconds per wall second (default 300)")
    demo.set_defaults(run=_demo)

    serve = commands.add_parser("serve", help="API, dashboard and engine as configured by the environment")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _add_market_options(serve)
    serve.add_argument("--workers", type=_workers, help="API processes beside one engine process (default "
                       "API_WORKERS, else 0: the API and the engine in one process); the engine trades only in "
                       "the process that holds the database's leader lock")
    serve.set_defaults(run=_serve)

    engine = commands.add_parser("engine", help="the engine alone, without the API: it trades while it holds the "
                                 "database's leader lock and stands by otherwise")
    _add_market_options(engine)
    engine.add_argument("--no-migrate", action="store_true", help="do not apply the migrations at start")
    engine.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # serve --workers: stop when it is gone
    engine.add_argument("--url", default="", help=argparse.SUPPRESS)  # serve --workers: the API's address
    engine.set_defaults(run=_engine)

    worker = commands.add_parser("worker", help="decide the batches of users the leading engine queues "
                                 "(ENGINE_DECIDE_ON=workers, PostgreSQL); any number, on any machine")
    _add_market_options(worker)
    worker.add_argument("--concurrency", type=_positive, default=1, help="batches decided at once (default 1)")
    worker.set_defaults(run=_worker)

    _add_backtest(commands)
    _add_optimize(commands)

    db = commands.add_parser("db", help="database commands")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply the migrations").set_defaults(run=_db_upgrade)

    decisions = commands.add_parser("decisions", help="recorded LLM answers for replays")
    decision_commands = decisions.add_subparsers(dest="decisions_command", required=True)
    export = decision_commands.add_parser("export", help="write the decision log's recorded answers as JSON lines")
    export.add_argument("--out", required=True)
    export.add_argument("--symbol", default=None)
    export.set_defaults(run=_decisions_export)
    load = decision_commands.add_parser("import", help="merge a file of recorded answers into the replay store")
    load.add_argument("file")
    load.add_argument("--store", default=str(REPLAY_STORE))
    load.set_defaults(run=_decisions_import)

    commands.add_parser("keygen", help="print a fresh JWT_SECRET and CREDENTIALS_KEY").set_defaults(run=_keygen)
    _add_exchange_sim(commands)
    _add_data(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
