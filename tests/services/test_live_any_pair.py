"""Live mode trades whatever pair the venue lists, with no candle file of its own; a pair the venue halts takes no
new entries while its open positions are still watched and closed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from app.config import BUNDLED_DATA_DIR, Settings
from app.domain.values import Decision, RulesSource
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE
from tests.services.live_harness import live_engine, run_hours

pytestmark = pytest.mark.one_engine

XRP = "XRPUSDT"


def venue_data(directory: Path) -> Path:
    """The venue's market: real candles (BNB's, renamed) for XRPUSDT and Binance's BNBUSDT rules under its name."""
    directory.mkdir()
    shutil.copy(BUNDLED_DATA_DIR / "binance_BNBUSDT_5m.csv.gz", directory / f"binance_{XRP}_5m.csv.gz")
    info = json.loads((BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE).read_text())
    bnb = next(s for s in info["symbols"] if s["symbol"] == "BNBUSDT")
    info["symbols"] = [{**bnb, "symbol": XRP, "baseAsset": "XRP"}]
    (directory / EXCHANGE_INFO_FILE).write_text(json.dumps(info))
    return directory


async def test_a_pair_outside_the_sample_trades_live_without_a_candle_file(settings: Settings, tmp_path: Path) -> None:
    async with live_engine(settings, tmp_path, venue_data=venue_data(tmp_path / "venue"), symbols=(XRP,)) as live:
        assert not live.container.candles.symbols()  # the bot reads no candle file at all in live mode
        listed = await live.container.listed_symbols()
        assert listed[XRP].source is RulesSource.EXCHANGE and listed[XRP].step_size == Decimal("0.001")
        await run_hours(live.container, live.clock, 36)
        trades = await live.trades()
        assert trades and {t.symbol for t in trades} == {XRP}
        await live.assert_books_match_the_exchange()


async def test_a_halted_pair_takes_no_entries_but_its_position_is_closed(settings: Settings, tmp_path: Path) -> None:
    async with live_engine(settings, tmp_path, venue_data=venue_data(tmp_path / "venue"), symbols=(XRP,)) as live:
        for _ in range(72):  # until the first position is open
            await run_hours(live.container, live.clock, 1)
            if any(t.exit_reason is None for t in await live.trades()):
                break
        [open_trade] = [t for t in await live.trades() if t.exit_reason is None]
        market = live.simulator.market
        market.update_rules(dataclasses.replace(market.rules(XRP), status="BREAK"))
        halted_at = live.clock.now()
        await run_hours(live.container, live.clock, 24)
        trades = await live.trades()
        closed = next(t for t in trades if t.id == open_trade.id)
        assert closed.exit_reason is not None and closed.closed_at is not None  # watched and closed
        later = [t for t in trades if t.executed_at > halted_at + timedelta(hours=1)]  # rules are re-read hourly
        assert not later, "a halted pair took a new entry"
        async with live.container.uow() as uow:
            log = await uow.analyses.for_user(live.user_id, symbol=XRP, limit=1000)
        reasons = [r for a in log if a.created_at > halted_at + timedelta(hours=1) and a.decision == Decision.REJECTED
                   for r in a.reasons]
        assert any(r.startswith(f"no new entries: {XRP} is BREAK on the exchange") for r in reasons), reasons
        await live.assert_books_match_the_exchange()
