"""What one process leaves another in the database when the API and the engine run apart: the engine's events for
the WebSockets an API process holds, and a manual close asked of an API process for the engine that leads."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import timedelta

from app.background import cancel_and_wait
from app.domain.clock import Clock
from app.domain.errors import RuleViolation
from app.domain.events import ExchangeKeysChanged
from app.domain.records import EventRecord, TradeRecord
from app.domain.values import ExitReason, TradeStatus
from app.notify.websocket import WebSocketManager
from app.repositories import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("trdbot.handoffs")

# ids are taken when a row is written but become visible when its transaction commits, which may be in another
# order: every read looks this many ids back and skips what it already delivered
LOOKBACK_IDS = 200
REMEMBERED_IDS = 5000


class Poller:
    """Runs `step` every `poll_s` seconds of the clock until stopped; a failed step is logged and retried."""

    def __init__(self, name: str, step: Callable[[], Awaitable[None]], clock: Clock, poll_s: float) -> None:
        self.name, self._step, self.clock, self.poll_s = name, step, clock, poll_s
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except Exception:
                log.exception("%s: round failed", self.name)
            await self.clock.sleep(self.poll_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


class EventFeed:
    """What other processes stored in the events table, read every `poll_s` seconds: the events of the users with
    a WebSocket here are pushed to it (what this process published itself is not sent twice, and what was stored
    before the feed started, or before the user connected, is history, not news), and a change of a user's
    exchange keys made elsewhere is handed to `keys_changed` (the adapters built with the old keys must go)."""

    def __init__(self, uow: UnitOfWorkFactory, sockets: WebSocketManager, clock: Clock, poll_s: float,
                 keys_changed: Callable[[int], None] | None = None) -> None:
        self.uow, self.sockets, self.keys_changed = uow, sockets, keys_changed
        self.seen_up_to: int | None = None
        self._known: OrderedDict[int, None] = OrderedDict()  # ids already read (delivered or not news)
        self.poller = Poller("event-feed", self.step, clock, poll_s)

    def note(self, event: EventRecord) -> None:
        """An event this process stored and delivered itself."""
        if event.id is not None:
            self._remember(event.id)

    async def step(self) -> None:
        first = self.seen_up_to is None
        async with self.uow() as uow:
            if self.seen_up_to is None:
                self.seen_up_to = await uow.events.latest_id()
            stored = await uow.events.ids_after(max(0, self.seen_up_to - LOOKBACK_IDS))
            fresh = [] if first else [(i, user, type_) for i, user, type_ in stored if i not in self._known]
            users = self.sockets.connected_users()
            wanted = {event_id for event_id, user_id, _ in fresh if user_id in users}
            news = await uow.events.after(min(wanted) - 1, users) if wanted else []
        for event_id, *_ in stored:
            self._remember(event_id)
        self.seen_up_to = max([self.seen_up_to, *(event_id for event_id, *_ in stored)])
        for _, user_id, type_ in fresh:
            if type_ == ExchangeKeysChanged.type and self.keys_changed is not None:
                self.keys_changed(user_id)
        for event in news:
            if event.id in wanted:
                await self.sockets.deliver(event)

    def _remember(self, event_id: int) -> None:
        self._known[event_id] = None
        while len(self._known) > REMEMBERED_IDS:
            self._known.popitem(last=False)


class CloseRequests:
    """An API process whose engine runs elsewhere asks for a manual close by marking the position (the engine's own
    first step of every exit, which its next cycle finishes whatever happens), then waits a while for the close."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, wait_s: float, poll_s: float = 0.2) -> None:
        self.uow, self.clock, self.wait_s, self.poll_s = uow, clock, wait_s, poll_s

    async def close(self, uow: UnitOfWork, user_id: int, trade_id: int) -> TradeRecord:
        await uow.positions.mark_closing(trade_id, ExitReason.MANUAL)
        await uow.commit()
        deadline = self.clock.now() + timedelta(seconds=self.wait_s)
        while True:
            async with self.uow() as own:
                trade = await own.trades.get(user_id, trade_id)
            if trade is not None and trade.status == TradeStatus.CLOSED:
                return trade
            if self.clock.now() >= deadline:
                raise RuleViolation(f"trade {trade_id} is being closed by the engine but not yet done (at the latest "
                                    "its next cycle finishes it); see the event log")
            await self.clock.sleep(self.poll_s)


class CloseDesk:
    """In the leading engine: closes the positions API processes marked for a manual close as soon as it sees them,
    through the engine's own close (one user's exits run one at a time, with the cycle's); each once, the cycle
    finishes whatever a first attempt left."""

    def __init__(self, uow: UnitOfWorkFactory, close: Callable[[int, int, ExitReason], Awaitable[TradeRecord]],
                 clock: Clock, poll_s: float) -> None:
        self.uow, self._close = uow, close
        self._tried: set[int] = set()
        self.poller = Poller("close-desk", self.step, clock, poll_s)

    async def step(self) -> None:
        async with self.uow() as uow:
            marked = await uow.positions.closing(ExitReason.MANUAL)
        self._tried &= {p.trade_id for p in marked}
        for position in marked:
            if position.trade_id in self._tried:
                continue
            self._tried.add(position.trade_id)
            try:
                await self._close(position.user_id, position.trade_id, ExitReason.MANUAL)
            except RuleViolation as e:
                log.info("manual close of trade %s: %s", position.trade_id, e)
            except Exception:  # the exchange or a bug: the cycle's exit check finishes it
                log.exception("manual close of trade %s failed; the next cycle finishes it", position.trade_id)
