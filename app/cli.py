"""The `trdbot` command line: demo, serve, backtest, db upgrade, keygen (exchange-sim joins with its issue)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from app.services.security import CredentialCipher

VAR_DIR = Path("./var")


def _demo_secrets(var_dir: Path) -> dict[str, str]:
    """The demo's own JWT secret and credentials key, generated once and kept under ./var/."""
    path = var_dir / "demo-secrets.env"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"JWT_SECRET={secrets.token_urlsafe(48)}\nCREDENTIALS_KEY={CredentialCipher.generate_key()}\n"
        )
        path.chmod(0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.config import Settings
    from app.container import Container
    from app.demo import ReplayContainer
    from app.logging_setup import configure_logging
    from app.main import create_app

    settings = Settings()
    if settings.is_live and (problems := settings.live_problems()):
        for problem in problems:
            print(f"refusing to start in live mode: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_dir, settings.log_level)
    if settings.use_mock_binance:
        url = f"http://{args.host}:{args.port}/"
        container: Container = ReplayContainer(settings, settings.replay_speed, url)
    else:
        container = Container(settings, run_engine=True)
    uvicorn.run(create_app(container), host=args.host, port=args.port, log_level="info")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import uvicorn

    from app.config import Settings
    from app.demo import build_demo_container
    from app.logging_setup import configure_logging
    from app.main import create_app

    for key, value in _demo_secrets(VAR_DIR).items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("DATABASE_URL", f"sqlite+aiosqlite:///{VAR_DIR}/demo.db")
    os.environ["USE_MOCK_BINANCE"] = "true"
    settings = Settings()
    configure_logging(settings.log_dir, settings.log_level)
    container = build_demo_container(settings, speed=args.speed, port=args.port)
    uvicorn.run(create_app(container), host=args.host, port=args.port, log_level="warning")
    return 0


def _db_upgrade(_: argparse.Namespace) -> int:
    from app.config import Settings
    from app.db import upgrade

    settings = Settings()
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
    from app.domain.errors import DataError
    from app.services.replay_analyzer import merge_recorded_answers

    try:
        added, total = merge_recorded_answers(Path(args.store), Path(args.file))
    except (DataError, OSError) as e:
        print(f"trdbot: {e}", file=sys.stderr)
        return 2
    print(f"imported {added} new recorded answers; the replay store {args.store} holds {total}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    import time

    from app.backtest.command import ERRORS, BacktestOptions, parse_decimal, parse_time, run_command
    from app.container import build_backtest_engine

    try:
        options = BacktestOptions(
            symbols=tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip()) if args.symbols else None,
            start=parse_time(args.start, "--start") if args.start else None,
            end=parse_time(args.end, "--end") if args.end else None,
            data=args.data, balance=parse_decimal(args.balance, "--balance"), analyzer=args.analyzer,
            seed=args.seed, config=args.config, out=args.out, quiet=args.quiet, decisions=args.decisions,
        )
        return run_command(options, build_backtest_engine, time.perf_counter)
    except ERRORS as e:
        print(f"trdbot backtest: {e}", file=sys.stderr)
        return 2


def _add_backtest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bt = commands.add_parser("backtest", help="run the engine over stored candles on a simulated clock")
    bt.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT (default: the config's symbols)")
    bt.add_argument("--start", help="first decision, UTC date or date-time (default: data start + 7 days warm-up)")
    bt.add_argument("--end", help="last decision, UTC (default: the end of the data)")
    bt.add_argument("--data", type=Path, help="candle directory (default: MARKET_DATA_DIR or the bundled sample)")
    bt.add_argument("--balance", default="10000", help="starting USDT (default 10000)")
    bt.add_argument("--analyzer", default="rules", choices=("rules", "gemini"))
    bt.add_argument("--seed", type=int, default=42, help="seed of the risk manager's jitter (default 42)")
    bt.add_argument("--config", type=Path, help="JSON object: trading-config fields and/or settings to override")
    bt.add_argument("--out", type=Path, help="directory for report.json, trades.csv, PNG charts and report.html")
    bt.add_argument("--quiet", action="store_true", help="no progress bar")
    bt.add_argument("--decisions", type=Path, default=REPLAY_STORE,
                    help=f"recorded LLM answers replayed by --analyzer gemini (default {REPLAY_STORE})")
    bt.set_defaults(run=_backtest)


def _keygen(_: argparse.Namespace) -> int:
    print(f"JWT_SECRET={secrets.token_urlsafe(48)}")
    print(f"CREDENTIALS_KEY={CredentialCipher.generate_key()}")
    return 0


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
    serve.set_defaults(run=_serve)

    _add_backtest(commands)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
