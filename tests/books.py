"""The books' account identity, for tests that check it against the exchange."""

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any


async def carried_cost(uow_factory: Callable[[], Any], user_id: int, symbols: Iterable[str]) -> Decimal:
    """What the books charged for the remainders they carry: USDT + this == start + realised - cost of open
    positions."""
    async with uow_factory() as uow:
        return sum([(await uow.dust.get(user_id, s)).cost for s in set(symbols)], Decimal(0))
