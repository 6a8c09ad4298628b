"""A scripted local HTTP server speaking Gemini's generateContent and OpenAI's chat completions, plus test helpers."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.domain.clock import WallClock
from app.domain.values import Candle, MarketFeatures, RegimeAnalysis, Signal, SignalType, SupportResistance


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON, str -> sent as is
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ScriptedServer:
    """Answers each POST with the next scripted Reply (or `default` once the script is empty) and records it."""

    default: Reply = field(default_factory=lambda: Reply(500, {"error": {"code": 500, "message": "no script"}}))
    replies: deque[Reply] = field(default_factory=deque)
    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def add(self, *replies: Reply) -> ScriptedServer:
        self.replies.extend(replies)
        return self

    def next_reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            return self.replies.popleft() if self.replies else self.default

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping for a timeout test must not hold up the test


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw or b"null"))
            reply = server.next_reply(seen)
            time.sleep(reply.delay_s)
            payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- Gemini wire format (reference/gemini-api.md section 3) ---


def gemini_ok(text: str | None, prompt_tokens: int = 1200, output_tokens: int = 80, thoughts: int = 0,
              finish: str = "STOP") -> Reply:
    parts = [] if text is None else [{"text": text}]
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
    usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": output_tokens,
             "thoughtsTokenCount": thoughts, "totalTokenCount": prompt_tokens + output_tokens + thoughts}
    return Reply(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash",
                       "responseId": "fake-1"})


def gemini_error(code: int, status: str, message: str = "fake error", retry_delay: str | None = None) -> Reply:
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}] if retry_delay else []
    return Reply(code, {"error": {"code": code, "message": message, "status": status, "details": details}})


# --- OpenAI chat completions wire format ---


def chat_ok(content: str | None, prompt_tokens: int = 900, completion_tokens: int = 60) -> Reply:
    message = {"role": "assistant", "content": content}
    return Reply(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": "qwen2.5:7b",
                       "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}})


def chat_error(status: int, message: str = "fake error", retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Reply(status, {"error": {"message": message, "type": "server_error", "code": status}}, headers=headers)


def answer(signal: str = "buy", confidence: Any = 82, entry: Any = 65000.0, stop: Any = 64350.0,
           target: Any = 66100.5, reasoning: str = "1h uptrend, ADX 31, 15m pullback to EMA21") -> str:
    return json.dumps({"signal": signal, "confidence": confidence, "entry_price": entry, "stop_loss": stop,
                       "take_profit": target, "reasoning": reasoning})


# --- time and features ---


class FastClock:
    """Wall time plus whatever was 'slept': backoff waits are recorded and skipped, latency stays real."""

    def __init__(self) -> None:
        self._wall = WallClock()
        self._offset = timedelta(0)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._wall.now() + self._offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._offset += timedelta(seconds=seconds)


class FixedAnalyst:
    """A fallback analyst that always proposes the same signal and counts its calls."""

    name = "rules"

    def __init__(self, signal: Signal | None = None) -> None:
        levels = (Decimal("65000"), Decimal("64000"), Decimal("67000"))
        self.signal = signal or Signal(SignalType.BUY, 77, *levels, reasoning="rules")
        self.calls = 0

    async def analyze(self, features: MarketFeatures) -> Signal:
        self.calls += 1
        return self.signal


def make_features(symbol: str = "BTCUSDT", last_price: str = "65000", confluence: float = 78.5) -> MarketFeatures:
    start_ms = 1_735_689_600_000  # 2025-01-01T00:00Z
    recent = {tf: _candles(start_ms, step_ms, 65000) for tf, step_ms in (("5m", 300_000), ("15m", 900_000),
                                                                         ("1h", 3_600_000))}
    indicators = {
        tf: {"rsi": 55.0 + i, "macd": 12.5, "macd_signal": 10.25, "macd_hist": 2.25, "adx": 28.0 + i,
             "plus_di": 27.1, "minus_di": 14.9, "atr": 310.0 * (i + 1), "bb_upper": 65900.0, "bb_middle": 64950.0,
             "bb_lower": 64000.0, "bb_pct_b": 0.55, "bb_width": 0.029, "stoch_k": 62.0, "stoch_d": 58.5,
             "obv": 123456789.0, "ema_9": 64980.0, "ema_21": 64870.0, "ema_50": 64500.0}
        for i, tf in enumerate(("5m", "15m", "1h"))
    }
    regime = RegimeAnalysis("trending_up", True, "ADX 30 > 25 with +DI above -DI", 30.2, 0.85)
    levels = (SupportResistance(64200.0, "support", 3, 0.8), SupportResistance(66500.0, "resistance", 2, 0.6))
    return MarketFeatures(symbol, datetime(2025, 1, 2, 12, 0, tzinfo=UTC), Decimal(last_price), indicators, regime,
                          levels, confluence, recent)


def _candles(start_ms: int, step_ms: int, base: int) -> tuple[Candle, ...]:
    return tuple(
        Candle(start_ms + i * step_ms, Decimal(base + i), Decimal(base + i + 50), Decimal(base + i - 40),
               Decimal(base + i + 10), Decimal("12.5"))
        for i in range(20)
    )
