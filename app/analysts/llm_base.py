"""What every LLM analyst shares: prompt, bounded retries, circuit breaker, fallback, validation and the report."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from app.analysts.prompt import PROMPT_VERSION, build_mtf_prompt, prompt_hash
from app.analysts.validation import parse_answer, validate_signal
from app.domain.clock import Clock
from app.domain.errors import SignalError
from app.domain.ports import SignalProvider
from app.domain.values import ZERO, AnalystReport, MarketFeatures, Signal

logger = logging.getLogger(__name__)

TOKENS_PER_PRICE_UNIT = Decimal("1000000")  # prices are quoted per million tokens


class AnalystCallFailed(SignalError):
    """The model could not be asked (HTTP error, timeout, connection): `retryable` says whether to try again."""

    def __init__(self, message: str, retryable: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LLMAnswer:
    """What one successful HTTP exchange returned; `problem` is set when the answer holds no usable text."""

    text: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    problem: str | None = None


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a failing model for `reset_after_s` after `failure_threshold` failed calls in a row.

    After the cool-down one trial call goes through (half-open): success closes the breaker, failure reopens it.
    """

    def __init__(self, clock: Clock, failure_threshold: int = 5, reset_after_s: float = 300.0) -> None:
        if failure_threshold < 1 or reset_after_s < 0:
            raise ValueError("failure_threshold must be >= 1 and reset_after_s >= 0")
        self._clock = clock
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.consecutive_failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at: datetime | None = None

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def open_until(self) -> datetime | None:
        if self._opened_at is None or self._state == BreakerState.CLOSED:
            return None
        return self._opened_at + timedelta(seconds=self.reset_after_s)

    def allow(self) -> bool:
        """May a call go out now? Moves open to half-open once the cool-down is over (one trial at a time)."""
        if self._state == BreakerState.CLOSED:
            return True
        if self._state == BreakerState.OPEN and self._clock.now() >= self.open_until:  # type: ignore[operator]
            self._state = BreakerState.HALF_OPEN
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = None

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self._state == BreakerState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self._state = BreakerState.OPEN
            self._opened_at = self._clock.now()

    def describe(self) -> str:
        until = self.open_until
        suffix = f" until {until.isoformat()}" if until and self._state == BreakerState.OPEN else ""
        return f"circuit breaker {self._state.value}{suffix} after {self.consecutive_failures} failed calls"


def is_retryable_status(status: int | None) -> bool:
    """429 and 5xx are worth another try after a pause; other errors will fail the same way again."""
    return status is not None and (status == 429 or 500 <= status <= 599)


def translate_transport_error(error: BaseException) -> AnalystCallFailed:
    """Timeouts and connection errors of httpx or httpx2 (google-genai 3.x) as our error, matched by class name
    so the same code serves both libraries."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if isinstance(error, TimeoutError) or "TimeoutException" in names:
        return AnalystCallFailed(f"timeout ({type(error).__name__})", retryable=False)
    if "TransportError" in names:
        return AnalystCallFailed(f"connection failed ({type(error).__name__}: {error})", retryable=True)
    return AnalystCallFailed(f"unexpected {type(error).__name__}: {str(error)[:200]}", retryable=False)


class LLMAnalyzerBase:
    """A SignalProvider on top of one LLM endpoint; subclasses implement `_request` and `configured`."""

    name = "llm"

    def __init__(
        self,
        *,
        model: str,
        clock: Clock,
        timeout_s: float = 20.0,
        max_retries: int = 2,
        breaker: CircuitBreaker | None = None,
        fallback: SignalProvider | None = None,
        max_entry_deviation_pct: Decimal = Decimal("1"),
        retry_base_delay_s: float = 1.0,
        retry_max_delay_s: float = 30.0,
    ) -> None:
        self.model = model
        self.clock = clock
        self.timeout_s = timeout_s
        self.max_retries = max(0, max_retries)
        self.breaker = breaker or CircuitBreaker(clock)
        self.fallback = fallback
        self.max_entry_deviation_pct = max_entry_deviation_pct
        self.retry_base_delay_s = retry_base_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self.input_price_per_m = ZERO
        self.output_price_per_m = ZERO

    @property
    def configured(self) -> bool:
        raise NotImplementedError

    async def _request(self, prompt: str) -> LLMAnswer:
        """One HTTP exchange; raises AnalystCallFailed for anything that is not an answer."""
        raise NotImplementedError

    async def analyze(self, features: MarketFeatures) -> Signal:
        return (await self.analyze_detailed(features)).signal

    async def analyze_detailed(self, features: MarketFeatures) -> AnalystReport:
        return await self.analyze_market_data_mtf(features.symbol, features)

    async def analyze_market_data_mtf(self, symbol: str, features: MarketFeatures) -> AnalystReport:
        """The seed's entry point: one model call for one symbol's multi-timeframe features. Never raises."""
        try:
            return await self._analyze(symbol, features)
        except Exception as e:  # the last guard: an analyst bug must degrade to hold, not stop the loop
            logger.exception("analyst %s failed on %s", self.name, symbol)
            reason = f"internal error {type(e).__name__}: {e}"
            return AnalystReport(Signal.hold(reason), self.name, model=self.model, error=reason)

    def status(self) -> dict[str, object]:
        """What the status endpoint shows: which analyst, whether it can be called, and what applies if not."""
        return {
            "analyzer": self.name,
            "model": self.model,
            "configured": self.configured,
            "breaker": self.breaker.state.value,
            "breaker_open_until": self.breaker.open_until,
            "consecutive_failures": self.breaker.consecutive_failures,
            "fallback": self.fallback.name if self.fallback is not None else "hold",
        }

    def _generate_mtf_prompt(self, features: MarketFeatures) -> str:
        return build_mtf_prompt(features)

    def calculate_technical_indicators(self, features: MarketFeatures) -> dict[str, dict[str, float]]:
        """The seed's indicator step. The features builder computes indicators once per symbol and cycle, shared
        by all users and analysts, so this only returns what the features already hold."""
        return features.indicators

    def _calculate_mtf_confluence(self, features: MarketFeatures) -> float:
        """The seed's confluence step; like the indicators it is computed once by the features builder."""
        return features.confluence

    async def _analyze(self, symbol: str, features: MarketFeatures) -> AnalystReport:
        prompt = self._generate_mtf_prompt(features)
        report = AnalystReport(
            Signal.hold("no answer yet"), self.name, model=self.model, prompt=prompt,
            prompt_version=PROMPT_VERSION, prompt_hash=prompt_hash(prompt),
        )
        if symbol != features.symbol:
            mismatch = f"asked {symbol}, features of {features.symbol}"
            return replace(report, signal=Signal.hold(f"symbol mismatch: {mismatch}"), error=mismatch)
        unavailable = self._unavailable_reason()
        if unavailable:
            return await self._fallback_report(report, features, unavailable)
        started = self.clock.now()
        try:
            answer = await self._call_with_retries(prompt)
        except AnalystCallFailed as e:
            self.breaker.record_failure()
            return replace(report, signal=Signal.hold(f"analyst call failed: {e}"), error=str(e),
                           latency_ms=self._elapsed_ms(started))
        self.breaker.record_success()  # the endpoint answered; a bad answer is the model's fault, not an outage
        return self._answer_report(report, answer, features, self._elapsed_ms(started))

    def _unavailable_reason(self) -> str | None:
        if not self.configured:
            return f"{self.name} not configured"
        if not self.breaker.allow():
            return f"{self.name} unavailable: {self.breaker.describe()}"
        return None

    async def _fallback_report(self, report: AnalystReport, features: MarketFeatures, reason: str) -> AnalystReport:
        if self.fallback is None:
            signal = Signal.hold(f"{reason}; fallback: hold")
        else:
            try:
                signal = await self.fallback.analyze(features)
            except Exception as e:  # a fallback must not be worse than holding
                logger.exception("fallback analyst %s failed", self.fallback.name)
                signal = Signal.hold(f"{reason}; fallback {self.fallback.name} failed: {type(e).__name__}")
        fallback_name = self.fallback.name if self.fallback is not None else "hold"
        return replace(report, signal=signal, fallback_used=True, error=f"{reason}; fallback: {fallback_name}")

    def _answer_report(
        self, report: AnalystReport, answer: LLMAnswer, features: MarketFeatures, latency_ms: int
    ) -> AnalystReport:
        parsed = answer.problem or parse_answer(answer.text)
        signal, reason = validate_signal(parsed, features.last_price, self.max_entry_deviation_pct)
        return replace(
            report, signal=signal, raw_response=answer.text, latency_ms=latency_ms, error=reason,
            input_tokens=answer.input_tokens, output_tokens=answer.output_tokens,
            cost_usd=self.estimate_cost_usd(answer.input_tokens, answer.output_tokens),
        )

    def estimate_cost_usd(self, input_tokens: int, output_tokens: int) -> Decimal:
        cost = Decimal(input_tokens) * self.input_price_per_m + Decimal(output_tokens) * self.output_price_per_m
        return cost / TOKENS_PER_PRICE_UNIT

    async def _call_with_retries(self, prompt: str) -> LLMAnswer:
        """At most 1 + max_retries attempts; waits (on the injected clock) only between retryable failures."""
        attempt = 0
        while True:
            try:
                return await self._request_with_timeout(prompt)
            except AnalystCallFailed as e:
                if not e.retryable or attempt >= self.max_retries:
                    raise AnalystCallFailed(f"{e} (attempt {attempt + 1} of {self.max_retries + 1})") from e
                delay_s = self._backoff_s(attempt, e.retry_after_s)
                logger.info("%s: %s; retrying in %.1fs", self.name, e, delay_s)
                await self.clock.sleep(delay_s)
                attempt += 1

    async def _request_with_timeout(self, prompt: str) -> LLMAnswer:
        try:
            return await asyncio.wait_for(self._request(prompt), self.timeout_s)
        except TimeoutError as e:
            raise AnalystCallFailed(f"timeout after {self.timeout_s:g}s", retryable=False) from e

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential backoff; a server's retry hint can lengthen it, but never past the cap."""
        delay = self.retry_base_delay_s * (2**attempt)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.retry_max_delay_s)

    def _elapsed_ms(self, started: datetime) -> int:
        return max(0, int((self.clock.now() - started).total_seconds() * 1000))
