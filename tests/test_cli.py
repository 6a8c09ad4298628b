"""The command line: live mode refuses unsafe settings, the demo keeps its own secrets, migrations run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.cli import _demo_secrets, main
from app.logging_setup import configure_logging


def test_serve_refuses_live_mode_with_default_secrets(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_MOCK_BINANCE", "false")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("CREDENTIALS_KEY", raising=False)
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "JWT_SECRET" in err and "CREDENTIALS_KEY" in err


def test_serve_refuses_a_venue_clock_without_a_venue(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_MOCK_BINANCE", "true")
    assert main(["serve", "--port", "1", "--market-clock", "venue"]) == 2
    err = capsys.readouterr().err
    assert "MARKET_CLOCK=venue" in err and "USE_MOCK_BINANCE=false" in err


def test_serve_on_the_live_market_takes_the_venue_clock_and_names_its_mode(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_MOCK_BINANCE", "true")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    assert main(["serve", "--port", "1", "--market-source", "live", "--market-clock", "venue"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start (paper mode on the live market): JWT_SECRET" in err


def test_serve_refuses_workers_on_an_in_memory_database(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An in-memory SQLite database belongs to one process: API processes beside an engine could not share it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_MOCK_BINANCE", "true")
    monkeypatch.setenv("JWT_SECRET", "cli-test-secret-0123456789-0123456789-abcdef")
    monkeypatch.setenv("DATABASE_URL", "sqlite+aiosqlite:///:memory:")
    assert main(["serve", "--port", "1", "--workers", "2"]) == 2
    assert "in-memory SQLite database belongs to one process" in capsys.readouterr().err
    monkeypatch.setenv("API_WORKERS", "3")
    assert main(["serve", "--port", "1"]) == 2, "API_WORKERS asks for workers as --workers does"


def test_workers_refuse_sqlite(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    """The batches' queue lives in PostgreSQL: `trdbot worker` and ENGINE_DECIDE_ON=workers refuse SQLite."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USE_MOCK_BINANCE", "true")
    monkeypatch.setenv("JWT_SECRET", "cli-test-secret-0123456789-0123456789-abcdef")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'trdbot.db'}")
    assert main(["worker"]) == 2
    assert "need PostgreSQL" in capsys.readouterr().err
    monkeypatch.setenv("ENGINE_DECIDE_ON", "workers")
    assert main(["engine"]) == 2
    assert "need PostgreSQL" in capsys.readouterr().err


def test_demo_generates_secrets_once(tmp_path: Path) -> None:
    first = _demo_secrets(tmp_path)
    second = _demo_secrets(tmp_path)
    assert first == second
    assert len(first["JWT_SECRET"]) >= 32 and first["CREDENTIALS_KEY"]
    assert (tmp_path / "demo-secrets.env").stat().st_mode & 0o077 == 0


def test_db_upgrade_creates_the_schema(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "cli.db").exists()
    assert "latest migration" in capsys.readouterr().out


def test_daily_log_files_are_named_as_the_seed_says(tmp_path: Path) -> None:
    configure_logging(tmp_path, "INFO")
    logging.getLogger("trdbot.bot").info("cycle done")
    logging.getLogger("trdbot.trades").info("ENTRY")
    logging.getLogger("trdbot.metrics").info("cycle_seconds=0.1")
    names = sorted(p.name.rsplit("_", 1)[0] for p in tmp_path.glob("*.log"))
    assert names == ["metrics", "trades", "trading_bot"]
    trades_file = next(tmp_path.glob("trades_*.log"))
    assert "ENTRY" in trades_file.read_text()
    for handler in logging.getLogger("trdbot").handlers:
        handler.close()


async def _record_one_call(container) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime
    from decimal import Decimal

    from app.domain.records import AnalysisRecord

    async with container.uow() as uow:
        await uow.analyses.add(AnalysisRecord(
            symbol="BTCUSDT", created_at=datetime(2025, 9, 1, tzinfo=UTC), analyzer="gemini", signal="hold",
            confidence=40, reasoning="flat", regime="ranging", confluence_score=Decimal("41.5"),
            last_price=Decimal("65000"), model="gemini-2.5-flash", prompt="p", prompt_hash="c" * 64,
            raw_response='{"signal": "hold"}',
        ))
        await uow.commit()


async def test_decisions_export_then_import_into_the_replay_store(
    container, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    import asyncio

    from app.analysts.replay import read_recorded_answers

    await _record_one_call(container)
    monkeypatch.setenv("DATABASE_URL", container.settings.database_url)
    out, store = tmp_path / "answers.jsonl", tmp_path / "store.jsonl"
    assert await asyncio.to_thread(main, ["decisions", "export", "--out", str(out)]) == 0
    assert "exported 1" in capsys.readouterr().out
    assert main(["decisions", "import", str(out), "--store", str(store)]) == 0
    (recorded,) = read_recorded_answers(store).values()
    assert recorded.prompt_hash == "c" * 64 and recorded.raw_response == '{"signal": "hold"}'
    (tmp_path / "broken.jsonl").write_text("nonsense\n")
    assert main(["decisions", "import", str(tmp_path / "broken.jsonl"), "--store", str(store)]) == 2
    assert "line 1" in capsys.readouterr().err
