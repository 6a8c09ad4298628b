"""Backtests on data that covers less than asked: 15m/1h built from 5m where their files end, warnings, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.backtest.data import load_candles, plan_span
from app.cli import main
from app.domain.errors import DataError
from app.domain.values import Timeframe
from app.marketdata.candles import CandleStore
from tests.backtest.backtest_helpers import SAMPLE, fast_settings, run_span

# Real BTCUSDT candles: 5m and 1h from 2022-12-01, but the 15m file only from 2023-01-02 (data/README.md)
REAL_2022 = Path(__file__).resolve().parent / "data"


async def test_a_15m_file_that_starts_after_the_span_no_longer_blocks_its_decisions() -> None:
    """Two weeks of December 2022: every analysis is complete (its 15m candles resampled from 5m), and it trades.
    Before, every decision was "15m indicators incomplete" and the span ended with no trade."""
    start, end = datetime(2022, 12, 12, tzinfo=UTC), datetime(2022, 12, 26, tzinfo=UTC)
    engine, result = await run_span(fast_settings(), ("BTCUSDT",), start, end, data=REAL_2022, keep_log=True)
    analyses = engine.store.tables.analyses
    assert len(analyses) == result.cycles == 14 * 288 + 1
    assert [a.reasoning for a in analyses if "incomplete" in a.reasoning] == []
    assert len(result.trades) > 0
    window = engine.candles.closed_window("BTCUSDT", Timeframe.M15, start, 100)
    assert len(window) == 100  # full, although the 15m file starts three weeks later


def test_a_span_without_data_is_an_error_naming_symbol_timeframe_and_span(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--quiet", "--data", str(REAL_2022), "--symbols", "BTCUSDT",
                 "--start", "2019-01-01", "--end", "2019-02-01"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "no 5m candles for BTCUSDT between 2019-01-01 00:00 and 2019-02-01 00:00" in err


def test_too_little_history_before_the_end_names_the_symbol_and_the_timeframe_short_of_candles() -> None:
    start, end = datetime(2025, 8, 25, tzinfo=UTC), datetime(2025, 9, 3, tzinfo=UTC)  # the sample starts 09-01
    candles = load_candles(SAMPLE, ("ETHUSDT",), start, end)
    with pytest.raises(DataError, match=r"not enough history for ETHUSDT: 48 1h candles .* needs 168"):
        plan_span(candles, ("ETHUSDT",), start, end)


def test_a_start_before_the_data_is_a_warning_on_stderr_in_the_summary_and_in_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--quiet", "--symbols", "BTCUSDT", "--start", "2025-08-20", "--end", "2025-09-08T06:00",
                 "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0
    warning = ("BTCUSDT: its candles start too late (5m at 2025-09-01 00:00, 15m at 2025-09-01 00:00, "
               "1h at 2025-09-01 00:00) for full windows (288 x 5m, 100 x 15m, 168 x 1h) at 2025-08-20 00:00: "
               "its first complete analysis is at 2025-09-08 00:00")
    assert f"trdbot backtest: warning: {warning}\n" in captured.err
    assert f"  warning          {warning}\n" in captured.out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["warnings"] == [warning] and report["span"]["start"] == "2025-09-08T00:00:00+00:00"


def test_data_ending_before_the_end_is_a_warning() -> None:
    start, end = datetime(2025, 12, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    span = plan_span(load_candles(SAMPLE, ("SOLUSDT",), start, end), ("SOLUSDT",), start, end)
    assert span.start == start and span.warnings == (
        "SOLUSDT: its 5m candles end at 2026-01-01 00:00, before --end 2026-01-02 00:00: "
        "later decisions see no new candles for it",)


def test_the_default_span_waits_for_the_warm_up_without_a_warning_and_symbols_wait_for_the_last_ready() -> None:
    candles = CandleStore.load(SAMPLE, ["BTCUSDT", "ETHUSDT"])
    data_start, end = datetime(2025, 9, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    span = plan_span(candles, ("BTCUSDT",), data_start, end, start_requested=False)
    assert (span.start, span.warnings) == (datetime(2025, 9, 8, tzinfo=UTC), ())
    late = candles.between(datetime(2025, 9, 3, tzinfo=UTC), None)  # ETH's data starts two days later
    both = CandleStore({**{k: v for k, v in candles._series.items() if k[0] == "BTCUSDT"},
                        **{k: v for k, v in late._series.items() if k[0] == "ETHUSDT"}})
    span = plan_span(both, ("BTCUSDT", "ETHUSDT"), datetime(2025, 9, 9, tzinfo=UTC), end)
    assert span.start == datetime(2025, 9, 10, tzinfo=UTC)
    assert span.warnings[-1] == "decisions for every symbol start at 2025-09-10 00:00, when the last one is ready"
    assert span.warnings[0].startswith("ETHUSDT: its candles start too late (1h at 2025-09-03 00:00)")
