"""What every HTTP answer gets: a request body limit (413), JSON numbers checked before validation, security
headers, `no-store` on token answers, and the API docs served from the installed package (no CDN)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import UnrepresentableNumber

# The one inline style allowed is the <style> element lightweight-charts (app/web/vendor) adds for its
# attribution logo; its hash changes only with a new vendored version (the browser tests would then fail).
CHART_LOGO_STYLE = "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"
CONTENT_SECURITY_POLICY = (
    f"default-src 'self'; script-src 'self'; style-src 'self' {CHART_LOGO_STYLE}; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
TOKEN_PATHS = ("/auth/",)


class SecurityHeaders:
    """Adds the security headers to every HTTP answer, and `Cache-Control: no-store` to those that carry tokens
    or account data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = SECURITY_HEADERS + (NO_STORE if scope["path"].startswith(TOKEN_PATHS) else [])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)


class BodyLimit:
    """Answers 413 to a request body over `max_bytes`, by its Content-Length or, without one, as it streams in;
    the body is never buffered beyond the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = JSONResponse({"detail": f"request body too large: the limit is {self.max_bytes} bytes"},
                              status_code=413, headers={"Connection": "close"})
        await answer(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the disconnect, when it comes

    return replay


def _number(text: str, convert: Callable[[str], Any]) -> Any:
    try:
        value = convert(text)
    except ValueError:  # an integer beyond Python's 4300-digit conversion limit
        return UnrepresentableNumber(text)
    return value if not isinstance(value, float) or math.isfinite(value) else UnrepresentableNumber(text)


def load_json(body: bytes) -> Any:
    """json.loads without NaN, Infinity, numbers that overflow a float or exceed the integer digit limit: each is
    left as a marker that fails validation on its field."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:  # a 422 like any other malformed JSON, not FastAPI's 400
        raise json.JSONDecodeError("the body is not UTF-8", "", e.start) from e
    return json.loads(
        text, parse_constant=UnrepresentableNumber, parse_float=lambda s: _number(s, float),
        parse_int=lambda s: _number(s, int),
    )


class CheckedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body())
        return self._json


class CheckedJsonRoute(APIRoute):
    """Routes whose JSON body is parsed by `load_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            return await handler(CheckedJsonRequest(request.scope, request.receive))

        return checked


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TRD Bot API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
DOCS_INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'


def mount_docs(app: FastAPI) -> bool:
    """Swagger UI at /docs from the swagger-ui-bundle package (its own files, so the CSP holds); False when the
    package is missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return False

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    @app.get("/docs/init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(DOCS_INIT, media_type="text/javascript")

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    return True
