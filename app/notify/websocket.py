"""Fans events out to every open WebSocket of a user and stores each one in the events table."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from app.domain.records import EventRecord

log = logging.getLogger("trdbot.websocket")


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


EventStore = Callable[[EventRecord], Awaitable[EventRecord]]
EventStoreMany = Callable[[Sequence[EventRecord]], Awaitable[list[EventRecord]]]  # in one transaction


def event_message(event: EventRecord) -> str:
    time = event.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"type": event.type, "time": time, "data": event.data}, default=str)


class WebSocketManager:
    def __init__(self, store: EventStore, store_many: EventStoreMany | None = None) -> None:
        self._store = store
        self._store_many = store_many
        self.active_connections: dict[int, set[Socket]] = defaultdict(set)

    def connect(self, user_id: int, socket: Socket) -> None:
        self.active_connections[user_id].add(socket)

    def disconnect(self, user_id: int, socket: Socket) -> None:
        sockets = self.active_connections.get(user_id)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.active_connections[user_id]

    def connected_users(self) -> set[int]:
        return set(self.active_connections)

    async def publish(self, user_id: int, type_: str, time: datetime, data: dict[str, Any]) -> EventRecord:
        """Store the event, then send it to every socket the user has open here."""
        stored = await self._store(EventRecord(user_id, type_, time, data))
        await self.deliver(stored)
        return stored

    async def deliver(self, event: EventRecord) -> None:
        """Send a stored event to every socket its user has open here; a dead socket is dropped."""
        message = event_message(event)
        for socket in list(self.active_connections.get(event.user_id, ())):
            try:
                await socket.send_text(message)
            except Exception:
                log.info("dropping a closed socket of user %s", event.user_id)
                self.disconnect(event.user_id, socket)

    async def publish_many(self, events: Sequence[EventRecord]) -> list[EventRecord]:
        """Store the events together (one transaction when the store can), then send each, in order."""
        if self._store_many is not None:
            stored = await self._store_many(events)
        else:
            stored = [await self._store(event) for event in events]
        for event in stored:
            await self.deliver(event)
        return stored
