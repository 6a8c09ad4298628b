"""The `trdbot` command line: demo, serve, db upgrade, keygen (backtest and exchange-sim join with their issues)."""

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
