"""The seed's path for `app.venues.paper` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.venues.paper.accounts import (
    KEEP_FINISHED_ORDERS,
    InMemorySimAccountStore,
    SimAccountState,
    SimAccountStore,
    SimOrder,
    SimOrderList,
)
from app.venues.paper.exchange import MockBinanceService, T
from app.venues.paper.market import COMMISSION_QUANTUM, FIVE_MIN_MS, SimulatedMarket
from app.venues.paper.orders import (
    CANCEL_REJECTED,
    FILTER_FAILURE,
    INSUFFICIENT_BALANCE,
    NEW_ORDER_REJECTED,
    NO_SUCH_ORDER,
)

__all__ = [
    "CANCEL_REJECTED",
    "COMMISSION_QUANTUM",
    "FILTER_FAILURE",
    "FIVE_MIN_MS",
    "INSUFFICIENT_BALANCE",
    "KEEP_FINISHED_ORDERS",
    "NEW_ORDER_REJECTED",
    "NO_SUCH_ORDER",
    "InMemorySimAccountStore",
    "MockBinanceService",
    "SimAccountState",
    "SimAccountStore",
    "SimOrder",
    "SimOrderList",
    "SimulatedMarket",
    "T",
]
