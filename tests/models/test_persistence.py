"""Money survives the database exactly on both engines, and migrations build the schema from nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.container import Container
from app.db import upgrade
from app.domain.records import TradeRecord
from app.domain.values import TradeStatus
from app.models import Base
from tests.conftest import _drop_everything


@pytest.mark.parametrize("value", ["0.00000001", "123456789.12345678", "0", "-42.5", "99999999999999999999.999999999999999999"])
async def test_money_round_trips_exactly(container: Container, value: str) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    async with container.uow() as uow:
        user = await uow.users.add("money", "money@example.com", "hash", now)
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user.id, symbol="BTCUSDT", side="BUY", status=TradeStatus.FILLED, amount=Decimal(value),
            price=Decimal(value), stop_loss=Decimal("1"), take_profit=Decimal("2"), ai_signal_confidence=70,
            entry_client_order_id="rt", entry_fee=Decimal(value), executed_at=now,
        ))
        await uow.commit()
    async with container.uow() as uow:
        loaded = await uow.trades.get(user.id, trade.id)
    assert loaded is not None
    assert loaded.amount == Decimal(value) and loaded.price == Decimal(value)
    assert format(loaded.amount, "f") == format(Decimal(value), "f")
    assert loaded.executed_at == now and loaded.executed_at.tzinfo is not None


async def test_float_is_refused_for_money(container: Container) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    async with container.uow() as uow:
        await uow.portfolios.session.execute(text("SELECT 1"))
        user = await uow.users.add("flt", "flt@example.com", "hash", now)
        with pytest.raises(Exception, match="Decimal"):
            await uow.portfolios.create(user.id, 10000.0, now)  # type: ignore[arg-type]


def test_migrations_build_every_table_from_an_empty_database(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path}/empty.db"
    else:
        asyncio.run(_drop_everything(url))
    upgrade(url)

    async def tables() -> set[str]:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return names

    assert set(Base.metadata.tables) | {"alembic_version"} == asyncio.run(tables())


async def test_sqlite_runs_in_wal_mode(container: Container) -> None:
    if not container.db.is_sqlite:
        pytest.skip("journal modes are SQLite's")
    async with container.db.engine.connect() as connection:
        mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
    assert mode == "wal"
