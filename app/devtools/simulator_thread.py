"""A thread serving an ASGI app (the exchange simulator) with uvicorn on a free local port, for tests and embedding."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class SimulatorThread:
    """Serves an ASGI app with uvicorn on 127.0.0.1:<free port> in a background thread (tests, embedding)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 10.0) -> None:
        import uvicorn

        # proto must be TCP explicitly: asyncio sets TCP_NODELAY only then (else Nagle adds 40 ms per answer)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self._socket.listen(128)  # connections made before uvicorn accepts wait in the backlog
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=f"exchange-sim-{self.port}", daemon=True)
        self._startup_timeout_s = startup_timeout_s

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._socket]))

    def start(self) -> SimulatorThread:
        self._thread.start()
        waited = threading.Event()
        for _ in range(int(self._startup_timeout_s / 0.01)):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            waited.wait(0.01)
        raise RuntimeError(f"exchange simulator did not start on {self.base_url}")

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        """Run a coroutine on the server's loop (to inspect accounts without racing the requests)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
