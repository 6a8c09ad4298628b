"""`trdbot backtest` errors: one line naming the problem on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from app.cli import main
from tests.backtest.backtest_helpers import SAMPLE


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["backtest", "--quiet", *args])
    err = capsys.readouterr().err
    return code, err


def test_start_after_end(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--symbols", "BTCUSDT", "--start", "2025-10-05", "--end", "2025-10-01")
    assert code != 0 and err.count("\n") == 1 and "--start" in err and "--end" in err


def test_symbol_without_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--symbols", "BTCUSDT,DOGEUSDT", "--start", "2025-10-01", "--end", "2025-10-02")
    assert code != 0 and err.count("\n") == 1 and "DOGEUSDT" in err


def test_span_outside_the_data(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "--symbols", "BTCUSDT", "--start", "2020-01-01", "--end", "2020-02-01")
    assert code != 0 and err.count("\n") == 1 and "BTCUSDT" in err


def test_malformed_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(SAMPLE / "binance_BTCUSDT_5m.csv.gz", tmp_path)
    rows = gzip.decompress((SAMPLE / "binance_ETHUSDT_5m.csv.gz").read_bytes()).decode().splitlines()
    rows[100] = rows[100].replace(",", ",x", 1)
    (tmp_path / "binance_ETHUSDT_5m.csv").write_text("\n".join(rows) + "\n")
    code, err = _run(capsys, "--data", str(tmp_path), "--symbols", "BTCUSDT,ETHUSDT",
                     "--start", "2025-10-01", "--end", "2025-10-02")
    assert code != 0 and err.count("\n") == 1
    assert "binance_ETHUSDT_5m.csv" in err and "line 101" in err


def test_unknown_config_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cfg.json"
    config.write_text('{"max_open_positions": 2, "risk_per_trade": 1}')
    code, err = _run(capsys, "--config", str(config), "--start", "2025-10-01", "--end", "2025-10-02")
    assert code != 0 and err.count("\n") == 1 and "risk_per_trade" in err


def test_a_short_run_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cfg.json"
    config.write_text('{"max_open_positions": 2, "sim_slippage_pct": "0.05"}')
    code = main(["backtest", "--quiet", "--symbols", "BTCUSDT", "--start", "2025-10-01", "--end", "2025-10-03",
                 "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0 and "total return" in out and "max drawdown" in out and "cycles/s" in out


@pytest.mark.parametrize(("symbols", "expected"), [
    ("BTCUSDT,btcusdt", "--symbols names BTCUSDT more than once"),
    ("", "--symbols is empty"),
    ("BTCUSDT,,ETHUSDT", "has an empty item"),
])
def test_repeated_or_empty_symbols_are_refused(capsys: pytest.CaptureFixture[str], symbols: str,
                                               expected: str) -> None:
    code, err = _run(capsys, "--symbols", symbols, "--start", "2025-10-01", "--end", "2025-10-02")
    assert code == 2 and err.count("\n") == 1 and expected in err


def test_config_is_held_to_the_apis_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cfg.json"
    config.write_text('{"risk_per_trade_pct": 5, "daily_trade_limit": 0}')
    code, err = _run(capsys, "--config", str(config), "--start", "2025-10-01", "--end", "2025-10-02")
    assert code == 2 and err.count("\n") == 1
    assert "risk_per_trade_pct: Input should be less than or equal to 2" in err
    assert "daily_trade_limit: Input should be greater than or equal to 1" in err


def test_an_end_past_the_data_is_said_and_the_header_shows_the_span_covered(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["backtest", "--quiet", "--symbols", "BTCUSDT", "--start", "2025-12-27", "--end", "2026-01-07"])
    captured = capsys.readouterr()
    assert code == 0
    assert "--end 2026-01-07 00:00 is past the data, whose last candle closes at 2026-01-01 00:00" in captured.err
    assert "2025-12-27T00:00 -> 2026-01-01T00:00  (5 days" in captured.out


def test_errors_during_the_run_fail_it_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A venue whose percent-price band refuses every take-profit: each protection fails and the position is sold
    at once; the run says so and exits 1, or 0 with --allow-errors."""
    shutil.copy(SAMPLE / "binance_BTCUSDT_5m.csv.gz", tmp_path)
    info = json.loads((SAMPLE / "exchange_info.json").read_text())
    info["symbols"] = [s for s in info["symbols"] if s["symbol"] == "BTCUSDT"]
    band = next(f for f in info["symbols"][0]["filters"] if f["filterType"] == "PERCENT_PRICE_BY_SIDE")
    band["askMultiplierUp"] = "1.001"
    (tmp_path / "exchange_info.json").write_text(json.dumps(info))
    args = ["backtest", "--quiet", "--data", str(tmp_path), "--symbols", "BTCUSDT", "--start", "2025-10-01",
            "--end", "2025-10-04"]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1 and "error(s) during the run" in captured.err and "--allow-errors" in captured.err
    assert "ERRORS" in captured.out and "PERCENT_PRICE_BY_SIDE" in captured.out
    assert main([*args, "--allow-errors"]) == 0


def test_the_report_shows_entries_by_hour_of_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--quiet", "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-10-01", "--end",
                 "2025-10-08", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    hours = report["entries_by_hour_utc"]
    rows = (tmp_path / "trades.csv").read_text().splitlines()[1:]
    expected = [0] * 24
    for row in rows:
        expected[int(row.split(",")[2][11:13])] += 1  # entry_time, ISO UTC
    assert code == 0 and len(hours) == 24 and hours == expected and sum(hours) == report["trades"] > 0
    assert "entries by hour" in out and (tmp_path / "entries_by_hour.png").stat().st_size > 0
