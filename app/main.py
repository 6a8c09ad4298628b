"""FastAPI application: routers, the authenticated WebSocket, health, metrics and the engine's lifespan."""

from __future__ import annotations

import time as _perf
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response, WebSocket, WebSocketDisconnect, status
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import account, auth, backtests, events, market, portfolio, trading
from app.api.errors import install_error_handlers
from app.api.http_guards import BodyLimit, SecurityHeaders, mount_docs
from app.api.schemas import Health
from app.config import Settings
from app.container import Container
from app.domain.errors import ConfigurationError
from app.engine.metrics import Metrics
from app.services.security import InvalidTokenError


class RequestMetrics:
    """Counts every HTTP answer by route template and status, and times it (plain ASGI, with each label set's
    child looked up once: this runs on every request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = _perf.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            self._observe(scope["method"], getattr(scope.get("route"), "path", "unmatched"), status,
                          _perf.perf_counter() - started)

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        count = self._counts.get((method, route, status))
        if count is None:
            count = self._counts[(method, route, status)] = self.metrics.requests.labels(method, route, str(status))
        latency = self._latencies.get((method, route))
        if latency is None:
            latency = self._latencies[(method, route)] = self.metrics.request_latency.labels(method, route)
        count.inc()
        latency.observe(seconds)


def _default_container() -> Container:
    """`uvicorn app.main:app`: what `trdbot serve` runs in one process, the API and the engine (the candle replay on
    the simulated exchange, else the configured venue), on the environment's settings, refused as serve refuses
    them. One process owns the loop: a second one on the same database stands by (the leader lock)."""
    from app.logging_setup import configure_logging
    from app.private_files import make_files_private
    from app.serving import serving_container

    settings = Settings()
    if problems := settings.serve_problems():
        raise ConfigurationError("; ".join(problems))
    make_files_private(settings.database_url)
    configure_logging(settings.log_dir, settings.log_level)
    return serving_container(settings, "", run_engine=True)


def _lifespan(container: Container, ready: Callable[[Container], None] | None
              ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await container.start()
        if ready is not None:
            ready(container)
        try:
            yield
        finally:
            await container.stop()

    return lifespan


def create_app(container: Container | None = None, ready: Callable[[Container], None] | None = None) -> FastAPI:
    """The API on `container`; `ready` runs once the container has started (a served process tunes itself there)."""
    container = container or _default_container()
    docs = container.settings.api_docs
    lifespan = _lifespan(container, ready)
    app = FastAPI(title="TRD Bot", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.container = container
    install_error_handlers(app)
    if docs:
        mount_docs(app)
    for router in (auth.router, trading.router, portfolio.router, account.router, market.router, events.router,
                   backtests.router):
        app.include_router(router)

    @app.get("/health", response_model=Health, tags=["service"],
             responses={503: {"model": Health, "description": "the database does not answer"}})
    async def health() -> Any:
        database = "ok" if await container.db.ping() else "down"
        exchange = await container.exchange_health()
        body = Health(status="ok" if database == "ok" else "degraded", database=database, exchange=exchange)
        code = status.HTTP_200_OK if database == "ok" else status.HTTP_503_SERVICE_UNAVAILABLE
        return JSONResponse(body.model_dump(), status_code=code)

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        return Response(container.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.websocket("/ws/{user_id}")
    async def websocket(socket: WebSocket, user_id: str) -> None:
        # accepted first, refused with 1008 after: a refusal at the handshake shows a browser only 1006
        await socket.accept()
        try:
            claims = container.tokens.verify(socket.query_params.get("token") or "", container.clock.now())
        except InvalidTokenError:
            claims = None
        if claims is None or str(claims.user_id) != user_id:
            await socket.close(code=status.WS_1008_POLICY_VIOLATION, reason="invalid or foreign token")
            return
        container.websockets.connect(claims.user_id, socket)
        try:
            while True:
                await socket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            container.websockets.disconnect(claims.user_id, socket)

    container.mount_dashboard(app)
    app.add_middleware(RequestMetrics, metrics=container.metrics)
    app.add_middleware(BodyLimit, max_bytes=container.settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    return app


def __getattr__(name: str) -> Any:
    """`uvicorn app.main:app` builds the app on first use, not at import."""
    if name == "app":
        from app.serving import tuned

        return create_app(ready=tuned)
    raise AttributeError(name)
