"""`trdbot data download` and `trdbot data list` as a user runs them, against `trdbot exchange-sim` over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from download_venue import SIM_NOW, bundled

from app.cli import main
from app.config import BUNDLED_DATA_DIR
from app.devtools.faults import FaultKind, FaultPlan, FaultRule
from app.devtools.simulator import ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.clock import SimulatedClock
from app.marketdata.candles import CandleStore
from app.venues.binance.protocol import Endpoint
from app.venues.paper.market import SimulatedMarket

REPOSITORY = Path(__file__).resolve().parents[2]
RANGE = ["--start", "2025-12-15", "--end", "2025-12-19"]
PAGES = {"5m": 2, "15m": 1, "1h": 1}  # per symbol over RANGE


def _simulator(faults: FaultPlan | None = None) -> ExchangeSimulator:
    return ExchangeSimulator(SimulatedMarket(bundled()), SimulatedClock(SIM_NOW), [], faults)


@pytest.fixture
def simulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ExchangeSimulator]:
    simulator = _simulator(FaultPlan())
    with SimulatorThread(create_simulator_app(simulator)) as server:
        monkeypatch.setenv("BINANCE_BASE_URL", server.base_url)
        yield simulator


def _klines(simulator: ExchangeSimulator) -> int:
    return sum(r.path == Endpoint.KLINES for r in list(simulator.requests))


def test_download_fills_a_directory_that_list_describes_and_a_backtest_runs_on(
        simulator: ExchangeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data", str(tmp_path / "data")]
    assert main(["data", "download", "--symbols", "BTCUSDT", "--start", "2025-12-08", "--end", "2025-12-19",
                 *data, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "BTCUSDT 5m   +3,168 candles, 4 request(s)" in out and "7 kline request(s)" in out
    assert main(["data", "list", *data]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1:] == [
        "BTCUSDT  rules in exchange_info.json",
        "  5m   2025-12-08T00:00Z .. 2025-12-18T23:55Z  3,168 rows  no gaps",
        "  15m  2025-12-08T00:00Z .. 2025-12-18T23:45Z  1,056 rows  no gaps",
        "  1h   2025-12-08T00:00Z .. 2025-12-18T23:00Z  264 rows  no gaps",
    ]
    assert main(["backtest", "--symbols", "BTCUSDT", "--start", "2025-12-17", "--end", "2025-12-18", *data,
                 "--quiet", "--workers", "0"]) == 0
    assert "Backtest BTCUSDT" in capsys.readouterr().out


def test_list_shows_gaps_resampled_timeframes_and_symbols_without_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [f"{1_735_689_600_000 + i * 300_000},100,101,99,100,1" for i in range(40)]  # from 2025-01-01T00:00Z
    del rows[23], rows[10:13]  # 00:50-01:00 and 01:55 missing
    (tmp_path / "binance_XRPUSDT_5m.csv").write_text("open_time_ms,open,high,low,close,volume\n" + "\n".join(rows))
    assert main(["data", "list", "--data", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "XRPUSDT  no rules in exchange_info.json"
    assert lines[2] == ("  5m   2025-01-01T00:00Z .. 2025-01-01T03:15Z  36 rows  2 gaps, 4 missing candles; largest: "
                        "2025-01-01T00:50Z..2025-01-01T01:00Z (3), 2025-01-01T01:55Z..2025-01-01T01:55Z (1)")
    assert lines[3].endswith("(resampled from 5m)") and lines[3].startswith("  15m")


@pytest.mark.parametrize(("options", "message"), [
    (["--symbols", "BTC-USDT", *RANGE], "bad symbol(s) BTC-USDT in --symbols"),
    (["--symbols", "BTCUSDT", "--start", "2025-12-19", "--end", "2025-12-15"], "--start 2025-12-19 is not before"),
    (["--symbols", "BTCUSDT", *RANGE, "--timeframes", "5m,4h"], "bad timeframe(s) 4h in --timeframes"),
    (["--symbols", "BTCUSDT", "--start", "someday"], "--start 'someday' is not a date"),
    (["--symbols", "BTCUSDT,DOGEUSDT", *RANGE], "unknown symbol DOGEUSDT"),
])
def test_bad_input_is_named_with_exit_code_2(simulator: ExchangeSimulator, tmp_path: Path, options: list[str],
                                             message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "download", *options, "--data", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert _klines(simulator) == 0


def test_a_killed_download_leaves_whole_files_and_the_rerun_fetches_only_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = FaultPlan([FaultRule(FaultKind.LATENCY, "GET klines", times=None, delay_s=0.3)])
    simulator = _simulator(slow)
    command = ["data", "download", "--symbols", "BTCUSDT,ETHUSDT", *RANGE, "--data", str(tmp_path), "--quiet"]
    with SimulatorThread(create_simulator_app(simulator)) as server:
        env = {**os.environ, "BINANCE_BASE_URL": server.base_url, "PYTHONPATH": str(REPOSITORY)}
        process = subprocess.Popen([sys.executable, "-m", "app.cli", *command], env=env, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(lambda: _klines(simulator) >= 3 or process.poll() is not None)
        finally:
            process.kill()
            process.wait()
        assert process.returncode != 0, "the download finished before it was killed"
        slow.clear()
        store = CandleStore.load(tmp_path)  # whatever is there is whole
        written = [(s, tf.value) for s in store.symbols() for tf in store.timeframes(s)
                   if (tmp_path / f"binance_{s}_{tf.value}.csv.gz").exists()]
        missing_pages = sum(PAGES[tf] for s in ("BTCUSDT", "ETHUSDT") for tf in PAGES if (s, tf) not in written)
        before = _klines(simulator)
        monkeypatch.setenv("BINANCE_BASE_URL", server.base_url)
        assert main(command) == 0
        assert _klines(simulator) - before == missing_pages < sum(PAGES.values()) * 2


def _wait_for(done: object, timeout_s: float = 60.0) -> None:
    pause = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if done():  # type: ignore[operator]
            return
        pause.wait(0.02)
    raise AssertionError("timed out waiting for the download's requests")


def test_the_bundled_sample_is_not_written_to_by_default(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MARKET_DATA_DIR", str(BUNDLED_DATA_DIR))
    assert main(["data", "download", "--symbols", "BTCUSDT", *RANGE, "--quiet"]) == 2
    assert "MARKET_DATA_DIR is the bundled sample" in capsys.readouterr().err
