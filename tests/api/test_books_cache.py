"""A page of trades and a paper account's balances are read once and served again until the books change (trades
added or closed, the account saved) or their time runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text

from app.config import Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.domain.records import TradeRecord
from app.domain.values import ExitReason, TradeStatus
from app.main import create_app
from tests.conftest import register

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


async def _add(container: Container, user_id: int, n: int) -> int:
    async with container.uow() as uow:
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user_id, symbol="BTCUSDT", side="BUY", status=TradeStatus.FILLED, amount=Decimal("1"),
            price=Decimal(100 + n), stop_loss=Decimal("90"), take_profit=Decimal("120"), ai_signal_confidence=70,
            entry_client_order_id=f"cache-{n}", entry_fee=Decimal("0"), executed_at=T0 + timedelta(minutes=n),
            fees=Decimal("0"),
        ))
        await uow.commit()
        return trade.id


async def test_a_page_is_served_again_until_the_trades_change_or_its_time_is_up(settings: Settings) -> None:
    clock = SimulatedClock(T0)
    container = Container(settings.model_copy(update={"books_cache_seconds": 60}), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)),
                                 base_url="http://test") as client:
        headers, user_id = await register(client)

        async def listed() -> list[tuple[str, str, str]]:
            body = (await client.get("/trading/trades", headers=headers)).json()
            assert body["total"] == len(body["items"])
            return [(t["price"], t["status"], t["symbol"]) for t in body["items"]]

        first = await _add(container, user_id, 0)
        assert await listed() == [("100", "filled", "BTCUSDT")]
        async with container.uow() as uow:  # a change no engine makes (trades are only added and closed)
            await uow.session.execute(text("UPDATE trades SET symbol = 'ETHUSDT'"))
            await uow.commit()
        assert await listed() == [("100", "filled", "BTCUSDT")], "the page was made again without a reason"

        await _add(container, user_id, 1)
        assert await listed() == [("101", "filled", "BTCUSDT"), ("100", "filled", "ETHUSDT")]
        async with container.uow() as uow:
            await uow.trades.close(first, Decimal("110"), ExitReason.TAKE_PROFIT, Decimal("0"), Decimal("10"),
                                   Decimal("10"), T0 + timedelta(minutes=5))
            await uow.session.execute(text("UPDATE trades SET symbol = 'SOLUSDT' WHERE price = 101"))
            await uow.commit()
        assert await listed() == [("101", "filled", "SOLUSDT"), ("100", "closed", "ETHUSDT")]

        async with container.uow() as uow:
            await uow.session.execute(text("UPDATE trades SET symbol = 'BNBUSDT'"))
            await uow.commit()
        clock.advance(timedelta(seconds=59))
        assert [s for *_, s in await listed()] == ["SOLUSDT", "ETHUSDT"]
        clock.advance(timedelta(seconds=1))
        assert [s for *_, s in await listed()] == ["BNBUSDT", "BNBUSDT"], "kept past BOOKS_CACHE_SECONDS"
        other = (await client.get("/trading/trades?status=closed", headers=headers)).json()
        assert [t["price"] for t in other["items"]] == ["100"] and other["total"] == 1
    await container.db.dispose()


async def test_paper_balances_are_read_again_once_the_account_is_saved(settings: Settings) -> None:
    clock = SimulatedClock(T0)
    container = Container(settings.model_copy(update={"books_cache_seconds": 60}), clock=clock)

    async def store(user_id: int, usdt: str) -> None:
        async with container.uow() as uow:
            state = await uow.sim_accounts.load(f"paper-{user_id}")
            assert state is not None
            state["balances"]["USDT"] = [usdt, "0"]
            await uow.sim_accounts.save(f"paper-{user_id}", state, clock.now())
            await uow.commit()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)),
                                 base_url="http://test") as client:
        headers, user_id = await register(client)

        async def usdt() -> str:
            return str((await client.get("/portfolio", headers=headers)).json()["total_value_usdt"])

        assert await usdt() == "10000"
        clock.advance(timedelta(seconds=1))
        await store(user_id, "9000")
        assert await usdt() == "9000", "a saved account is read again"
        async with container.uow() as uow:  # a change that is no save (the engine's every change is one)
            await uow.session.execute(text("UPDATE sim_accounts SET state = replace(state, '9000', '8000')"))
            await uow.commit()
        assert await usdt() == "9000", "read again without a save"
        clock.advance(timedelta(seconds=60))
        assert await usdt() == "8000", "kept past BOOKS_CACHE_SECONDS"
    await container.db.dispose()
