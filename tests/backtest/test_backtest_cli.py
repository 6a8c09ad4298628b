"""`trdbot backtest` errors: one line naming the problem on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import gzip
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
