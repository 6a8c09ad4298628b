"""The books' account identity, for tests that check it against the exchange, and the active paper user they
trade for."""

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any


async def carried_cost(uow_factory: Callable[[], Any], user_id: int, symbols: Iterable[str]) -> Decimal:
    """What the books charged for the remainders they carry: USDT + this == start + realised - cost of open
    positions."""
    async with uow_factory() as uow:
        return sum([(await uow.dust.get(user_id, s)).cost for s in set(symbols)], Decimal(0))


async def add_paper_user(container: Any, now: datetime, name: str = "trader", **config: Any) -> int:
    """An active user with a funded paper account and the given trading-config fields."""
    async with container.uow() as uow:
        user = await uow.users.add(name, f"{name}@example.com", "hash", now)
        await uow.configs.create(dataclasses.replace(container.default_config(user.id), is_active=True, **config), now)
        await uow.portfolios.create(user.id, container.settings.paper_start_balance, now)
        await container.open_paper_account(uow, user.id)
        await uow.commit()
    return int(user.id)
