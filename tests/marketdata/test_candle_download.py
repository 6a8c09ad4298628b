"""`trdbot data download` against the exchange simulator: files the store reads, resumes, pacing, gaps, rules."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest
from download_venue import SIM_NOW, bundled, venue

from app.config import BUNDLED_DATA_DIR
from app.devtools.faults import FaultKind, FaultPlan, FaultRule
from app.domain.clock import ms_from_utc
from app.domain.errors import ConfigurationError, TemporaryExchangeError
from app.domain.values import Timeframe, format_decimal
from app.marketdata.candle_files import HEADER
from app.marketdata.candles import CandleStore
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE, read_exchange_info
from app.marketdata.gap_log import GAP_LOG_FILE
from tests.bundled import bundled_rules

START, END = "2025-12-15", "2025-12-19"  # 1,152 5m candles (2 pages), 384 15m and 96 1h (1 page each)
PAGES_PER_SYMBOL = 4


def _rows(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


async def test_an_empty_directory_fills_with_the_files_the_store_reads(tmp_path: Path) -> None:
    async with venue() as sim:
        report = await sim.download(tmp_path, "btcusdt,ETHUSDT", START, END)
    assert sim.kline_requests() == 2 * PAGES_PER_SYMBOL
    store = CandleStore.load(tmp_path)
    start_ms, end_ms = ms_from_utc(SIM_NOW.replace(day=15)), ms_from_utc(SIM_NOW.replace(day=19))
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for timeframe in Timeframe:
            got = store.candles_between(symbol, timeframe, start_ms, end_ms)
            assert got == bundled().candles_between(symbol, timeframe, start_ms, end_ms)
            assert len(got) == 4 * 86_400_000 // timeframe.ms
    header, *rows = _rows(tmp_path / "binance_BTCUSDT_5m.csv.gz")
    assert header == HEADER
    assert all(field == format_decimal(Decimal(field)) for row in rows for field in row.split(","))
    info = json.loads((tmp_path / EXCHANGE_INFO_FILE).read_text())
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
    stored, exchange = read_exchange_info(tmp_path / EXCHANGE_INFO_FILE), bundled_rules()
    assert stored == {s: exchange[s] for s in ("BTCUSDT", "ETHUSDT")}  # the venues read back the simulator's rules
    assert "+1,152 candles, 2 request(s)" in report.lines()[0] and "no gaps" in report.lines()[0]


async def test_an_interrupted_download_resumes_with_only_the_missing_candles(tmp_path: Path) -> None:
    broken = FaultPlan([FaultRule(FaultKind.SERVER_ERROR, "GET klines", times=None, skip=1)])
    async with venue(faults=broken) as sim:
        with pytest.raises(TemporaryExchangeError):
            await sim.download(tmp_path / "resumed", "BTCUSDT,ETHUSDT", START, END)
        assert sim.kline_statuses() == [200, 503, 503, 503, 503]  # the second page, tried four times
        assert len(CandleStore.load(tmp_path / "resumed").candles_between("BTCUSDT", Timeframe.M5, 0, 2**62)) == 1000
        broken.clear()
        before = sim.kline_requests()
        await sim.download(tmp_path / "resumed", "BTCUSDT,ETHUSDT", START, END)
        assert sim.kline_requests() - before == 2 * PAGES_PER_SYMBOL - 1
        before = sim.kline_requests()
        await sim.download(tmp_path / "resumed", "BTCUSDT,ETHUSDT", START, END)
        assert sim.kline_requests() == before  # nothing missing: nothing asked
        await sim.download(tmp_path / "fresh", "BTCUSDT,ETHUSDT", START, END)
    for name in ("binance_BTCUSDT_5m.csv.gz", "binance_ETHUSDT_1h.csv.gz", EXCHANGE_INFO_FILE):
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


async def test_a_wider_range_fetches_only_before_the_first_and_after_the_last_candle(tmp_path: Path) -> None:
    async with venue() as sim:
        await sim.download(tmp_path, "BTCUSDT", START, END, "5m")
        sent_from = len(sim.simulator.requests)
        await sim.download(tmp_path, "BTCUSDT", "2025-12-14T23:00", "2025-12-19T01:00", "5m")
    asked = [r for r in list(sim.simulator.requests)[sent_from:] if r.path == "/api/v3/klines"]
    assert len(asked) == 2  # 12 candles before, 12 after
    rows = _rows(tmp_path / "binance_BTCUSDT_5m.csv.gz")[1:]
    assert len(rows) == 1152 + 24
    assert rows[0].startswith(str(ms_from_utc(SIM_NOW.replace(day=14, hour=23))))


def _write_5m(directory: Path, first_ms: int, count: int, missing: range) -> CandleStore:
    directory.mkdir()
    rows = [f"{first_ms + i * 300_000},100,101,99,100.5,2" for i in range(count) if i not in missing]
    (directory / "binance_BTCUSDT_5m.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return CandleStore.load(directory)


async def test_a_gap_the_exchange_has_is_reported_once_fetched_and_never_asked_again(tmp_path: Path) -> None:
    first_ms = ms_from_utc(SIM_NOW.replace(day=18))
    exchange = _write_5m(tmp_path / "exchange", first_ms, 576, missing=range(100, 116))  # to SIM_NOW, with a halt
    async with venue(exchange) as sim:
        report = await sim.download(tmp_path / "data", "BTCUSDT", "2025-12-17", timeframes="5m")
        assert sim.kline_requests() == 1  # 864 candles' span: the day before the listing and the two listed days
        assert "1 gap, 16 missing candles; largest: 2025-12-18T08:20Z..2025-12-18T09:35Z (16)" in report.lines()[0]
        again = await sim.download(tmp_path / "data", "BTCUSDT", "2025-12-17", timeframes="5m")
        assert sim.kline_requests() == 1
        assert "+0 candles, 0 request(s)" in again.lines()[0]
    known = json.loads((tmp_path / "data" / GAP_LOG_FILE).read_text())["BTCUSDT"]["5m"]
    day_ms = 86_400_000
    assert known == [[first_ms - day_ms, first_ms], [first_ms + 100 * 300_000, first_ms + 116 * 300_000]]


async def test_a_candle_missing_just_after_it_closed_is_asked_for_again(tmp_path: Path) -> None:
    first_ms = ms_from_utc(SIM_NOW.replace(day=19))
    exchange = _write_5m(tmp_path / "exchange", first_ms, 287, missing=range(0))  # the 23:55 candle is not out yet
    async with venue(exchange) as sim:
        await sim.download(tmp_path / "data", "BTCUSDT", "2025-12-19", timeframes="5m")
        await sim.download(tmp_path / "data", "BTCUSDT", "2025-12-19", timeframes="5m")
        assert sim.kline_requests() == 2
    assert not (tmp_path / "data" / GAP_LOG_FILE).exists()


async def test_requests_slow_down_before_the_weight_limit_the_exchange_states(tmp_path: Path) -> None:
    # limit 40: the pacing keeps to 80 % (32); exchangeInfo (20), time (1) and 13 pages of klines (2 each) need more
    async with venue(weight_limit=40) as sim:
        await sim.download(tmp_path, "BTCUSDT", "2025-11-01", "2025-12-13", "5m")
    assert sim.kline_requests() == 13 and set(sim.kline_statuses()) == {200}
    assert max(sim.weights) <= 32
    assert sim.clock.sleeps and all(0 < s <= 60 for s in sim.clock.sleeps)
    assert len(_rows(tmp_path / "binance_BTCUSDT_5m.csv.gz")) - 1 == 42 * 288


async def test_a_429_is_waited_out_for_its_retry_after(tmp_path: Path) -> None:
    limited = FaultPlan([FaultRule(FaultKind.RATE_LIMIT, "GET klines", skip=1, retry_after_s=30)])
    async with venue(faults=limited) as sim:
        await sim.download(tmp_path, "BTCUSDT", START, END, "5m")
    assert sim.kline_statuses() == [200, 429, 200]  # no 418: nothing was sent inside the 30 s
    assert sim.clock.sleeps == [30.0]
    assert len(_rows(tmp_path / "binance_BTCUSDT_5m.csv.gz")) - 1 == 1152


async def test_exchange_info_json_keeps_the_symbols_of_earlier_downloads(tmp_path: Path) -> None:
    bundled_btc = json.loads((BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE).read_text())["symbols"][0]
    xrp = {**bundled_btc, "symbol": "XRPUSDT", "baseAsset": "XRP"}
    (tmp_path / EXCHANGE_INFO_FILE).write_text(json.dumps({"timezone": "UTC", "symbols": [xrp]}))
    async with venue() as sim:
        await sim.download(tmp_path, "ETHUSDT", START, END, "1h")
        report = await sim.download(tmp_path, "BTCUSDT", START, END, "1h")
    info = json.loads((tmp_path / EXCHANGE_INFO_FILE).read_text())
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
    assert info["symbols"][2] == xrp
    assert info["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    assert report.lines()[-1].endswith("rules of BTCUSDT, ETHUSDT, XRPUSDT")


async def test_an_unknown_symbol_is_named(tmp_path: Path) -> None:
    async with venue() as sim:
        with pytest.raises(ConfigurationError, match=r"unknown symbol DOGEUSDT: .* \(Binance error -1121"):
            await sim.download(tmp_path, "BTCUSDT,DOGEUSDT", START, END)
    assert sim.kline_requests() == 0 and not (tmp_path / EXCHANGE_INFO_FILE).exists()
