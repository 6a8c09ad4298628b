"""An ASGI gate in front of the simulator: what each request is, how many are in flight, and kill -9 on a cue."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# The harness's own reads carry this header: no fault and no kill ever hits them.
CHECKER_HEADER = "x-chaos-checker"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    method: str
    path: str
    side: str | None  # BUY/SELL on a new order
    checker: bool
    client_id: str | None = None  # of a new order or order list

    def __str__(self) -> str:
        side = f" {self.side}" if self.side else ""
        client = f" {self.client_id}" if self.client_id else ""
        return f"{self.method} {self.path}{side}{client}"


# The request being served, for the fault plan (a partial fill aimed at exits needs the order's side).
CURRENT_REQUEST: ContextVar[RequestFacts | None] = ContextVar("chaos_request", default=None)


@dataclass(slots=True)
class KillCue:
    """Kill the bot at the `nth` request that matches, before the simulator runs it or after (its answer lost)."""

    label: str  # what the bot was doing: entry, protect, exit, reprotect, ...
    method: str
    path: str
    side: str | None = None
    nth: int = 1
    after: bool = False
    seen: int = 0

    def matches(self, facts: RequestFacts) -> bool:
        return (facts.method, facts.path) == (self.method, self.path) and self.side in (None, facts.side)

    def __str__(self) -> str:
        side = f" {self.side}" if self.side else ""
        phase = "after it executed (answer lost)" if self.after else "before it ran"
        return f"{self.label}: #{self.nth} {self.method} {self.path}{side}, {phase}"


@dataclass(frozen=True, slots=True)
class Kill:
    """One kill -9 of the bot: why, at which request (if any), at which wall instant."""

    cue: str
    request: str | None
    wall: float


def _facts(scope: Scope) -> RequestFacts:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = dict(scope.get("headers") or [])
    creates = scope["method"] == "POST"
    side = query.get("side", [None])[0] if creates and scope["path"] == "/api/v3/order" else None
    client_id = (query.get("newClientOrderId") or query.get("listClientOrderId") or [None])[0] if creates else None
    return RequestFacts(scope["method"], scope["path"], side, CHECKER_HEADER.encode() in headers, client_id)


def wait_until_dead(pid: int, timeout_s: float = 5.0) -> None:
    """After SIGKILL: until the process is a zombie or gone (its parent reaps it; its sockets are closed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.002)
    raise RuntimeError(f"process {pid} did not die within {timeout_s} s of SIGKILL")


class TrafficGate:
    """Wraps the simulator's ASGI app. Thread-safe: the simulator serves in its own thread, the harness aims."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._in_flight: Counter[int] = Counter()
        self.epoch = 0
        self._pid: int | None = None
        self._cue: KillCue | None = None
        self.kills: list[Kill] = []
        self.requests = 0

    # ----- aiming (harness side) ------------------------------------------------------------------------------
    def aim(self, pid: int | None, cue: KillCue | None) -> None:
        with self._lock:
            self._pid, self._cue = pid, cue

    def disarm(self) -> None:
        with self._lock:
            self._cue = None

    def kill_now(self, cue: str, request: str | None = None) -> Kill | None:
        """SIGKILL the aimed process once; None if it was killed already (by a cue or by the harness)."""
        with self._lock:
            pid, self._pid, self._cue = self._pid, None, None
            if pid is None:
                return None
            kill = Kill(cue, request, time.time())
            self.kills.append(kill)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return kill
        wait_until_dead(pid)
        return kill

    def new_epoch(self) -> int:
        with self._lock:
            self.epoch += 1
            return self.epoch

    def in_flight_before(self, epoch: int) -> int:
        with self._lock:
            return sum(n for e, n in self._in_flight.items() if e < epoch)

    # ----- serving (simulator side) ----------------------------------------------------------------------------
    def _enter(self) -> int:
        with self._lock:
            self.requests += 1
            self._in_flight[self.epoch] += 1
            return self.epoch

    def _leave(self, epoch: int) -> None:
        with self._lock:
            self._in_flight[epoch] -= 1
            if not self._in_flight[epoch]:
                del self._in_flight[epoch]

    def _cue_for(self, facts: RequestFacts) -> KillCue | None:
        with self._lock:
            cue = self._cue
            if cue is None or facts.checker or not cue.matches(facts):
                return None
            cue.seen += 1
            return cue if cue.seen >= cue.nth else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        facts = _facts(scope)
        token = CURRENT_REQUEST.set(facts)
        epoch = self._enter()
        try:
            cue = self._cue_for(facts)
            if cue is not None and not cue.after:
                self.kill_now(str(cue), str(facts))
                await _answer_the_dead(send)
                return
            await self.app(scope, receive, self._killing_send(send, cue, facts) if cue is not None else send)
        except ClientDisconnect:
            pass  # the bot died while its request was read: the request never ran
        finally:
            self._leave(epoch)
            CURRENT_REQUEST.reset(token)

    def _killing_send(self, send: Send, cue: KillCue, facts: RequestFacts) -> Send:
        async def killing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.kill_now(str(cue), f"{facts} -> {message.get('status')}")
            await send(message)  # to a dead process: nobody reads it

        return killing_send


async def _answer_the_dead(send: Send) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"killed"})
