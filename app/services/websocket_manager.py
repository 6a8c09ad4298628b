"""The seed's path for `app.notify.websocket` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.notify.websocket import (
    EventStore,
    Socket,
    WebSocketManager,
    event_message,
    log,
)

__all__ = [
    "EventStore",
    "Socket",
    "WebSocketManager",
    "event_message",
    "log",
]
