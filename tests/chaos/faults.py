"""Seeded fault schedules on every endpoint the bot uses, and a fault plan the harness can switch off."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.devtools.faults import FaultKind, FaultPlan, FaultRule, FaultStage
from tests.chaos.traffic import CURRENT_REQUEST


@dataclass
class ChaosRule(FaultRule):
    """A fault rule that may also name the order's side (a partial fill aimed at exits) and knows its life."""

    side: str | None = None
    life: int = 0

    def describe(self) -> str:
        parts = [f"{self.kind.value}@{self.endpoint}" + (f" {self.side}" if self.side else "")]
        parts.append(f"skip={self.skip} times={self.times} hits={self.hits}")
        extra = {
            FaultKind.LATENCY: f"delay={self.delay_s:.2f}s",
            FaultKind.RATE_LIMIT: f"retry_after={self.retry_after_s}s",
            FaultKind.BAN: f"retry_after={self.retry_after_s}s",
            FaultKind.SERVER_ERROR: f"status={self.status}" + (" executed" if self.execute else ""),
            FaultKind.LOST_RESPONSE: "dropped" if self.drop else f"held {self.delay_s:.1f}s",
            FaultKind.REJECT: f"code={self.code}",
            FaultKind.PARTIAL_FILL: f"ratio={self.fill_ratio}",
        }[self.kind]
        return " ".join([*parts, extra])


class ChaosFaultPlan(FaultPlan):
    """A FaultPlan that can be suspended (while a still picture is taken) and that matches a rule's side."""

    def __init__(self) -> None:
        super().__init__()
        self.suspended = False
        self._take_lock = threading.Lock()

    def take(self, method: str, path: str, stage: FaultStage) -> list[FaultRule]:
        facts = CURRENT_REQUEST.get()
        if self.suspended or (facts is not None and facts.checker):
            return []
        side = facts.side if facts is not None else None
        with self._take_lock:
            candidates = [r for r in self.rules if r.stage is stage and r.matches(method, path)
                          and getattr(r, "side", None) in (None, side)]
            return [rule for rule in candidates if rule.fire()]


@dataclass(frozen=True, slots=True)
class Endpoint:
    spec: str
    weight: int  # how often a rule lands here
    skip_max: int  # matching requests a rule may let pass first (frequent endpoints get larger offsets)
    mutating: bool = False
    reject_codes: tuple[int, ...] = ()


# Every endpoint the engine calls (the ticker only serves the API; a rule there documents that it is unused).
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("POST /api/v3/order", 14, 2, mutating=True, reject_codes=(-2010, -1013)),
    Endpoint("GET /api/v3/order", 6, 12, reject_codes=(-2013,)),
    Endpoint("DELETE /api/v3/order", 1, 1, mutating=True, reject_codes=(-2011,)),
    Endpoint("POST /api/v3/orderList/oco", 12, 2, mutating=True, reject_codes=(-2010, -1013)),
    Endpoint("GET /api/v3/orderList", 6, 8, reject_codes=(-2013,)),
    Endpoint("DELETE /api/v3/orderList", 6, 1, mutating=True, reject_codes=(-2011,)),
    Endpoint("GET /api/v3/openOrderList", 3, 6),
    Endpoint("GET /api/v3/account", 8, 6),
    Endpoint("GET /api/v3/myTrades", 4, 6),
    Endpoint("GET /api/v3/klines", 3, 20),
    Endpoint("GET /api/v3/ticker/price", 1, 2),
    Endpoint("GET /api/v3/exchangeInfo", 2, 2),
    Endpoint("GET /api/v3/time", 2, 8),
)
ORDER = ENDPOINTS[0]
KIND_WEIGHTS = {
    FaultKind.LATENCY: 3, FaultKind.RATE_LIMIT: 2, FaultKind.BAN: 1, FaultKind.SERVER_ERROR: 4,
    FaultKind.LOST_RESPONSE: 4, FaultKind.REJECT: 3, FaultKind.PARTIAL_FILL: 3,
}
SERVER_ERROR_STATUSES = (500, 502, 503, 504)
FILL_RATIOS = ("0.1", "0.25", "0.5", "0.6", "0.75", "0.9")


@dataclass(frozen=True, slots=True)
class FaultProfile:
    """How hard a life is hit: rules per life, frozen venues, and whether faults may outlast the client's timeout."""

    rules_per_life: tuple[int, int] = (4, 9)
    frozen_venue_pct: int = 12
    frozen_delay_s: tuple[float, float] = (0.3, 0.9)
    frozen_requests: tuple[int, int] = (6, 16)
    latency_s: tuple[float, float] = (0.05, 0.4)
    retry_after_s: tuple[int, int] = (1, 30)  # market seconds; the harness jumps past any of them before a picture
    slow_pct: int = 0  # share of latency/lost-response faults held past the bot's 10 s HTTP timeout


@dataclass
class FaultSchedule:
    """Draws each life's fault rules from the run's seeded generator and keeps every rule for the report."""

    plan: ChaosFaultPlan
    rng: random.Random
    profile: FaultProfile = field(default_factory=FaultProfile)
    rules: list[ChaosRule] = field(default_factory=list)

    def new_life(self, life: int) -> list[ChaosRule]:
        """Drop the last life's rules that never fired and add this life's."""
        self.plan.clear()
        low, high = self.profile.rules_per_life
        drawn = [self._rule(life) for _ in range(self.rng.randint(low, high))]
        if self.rng.randrange(100) < self.profile.frozen_venue_pct:
            drawn.append(self._frozen_venue(life))
        for rule in drawn:
            self.plan.add(rule)
        self.rules.extend(drawn)
        return drawn

    def cover(self, life: int) -> list[ChaosRule]:
        """Rules for what the run has not hit yet (a CI run must hit every kind, partial fills on both sides and a
        frozen venue): early, on busy endpoints."""
        hits = self.hits_by_kind()
        extra = [self._rule(life, kind=FaultKind(kind), skip=0) for kind, n in sorted(hits.items())
                 if n == 0 and kind != FaultKind.PARTIAL_FILL]
        extra += [self._partial_fill(life, ORDER, skip=0, side=side) for side in ("BUY", "SELL")
                  if self.partial_fill_hits(side) == 0]
        if self.frozen_venues() == 0:
            extra.append(self._frozen_venue(life))
        for rule in extra:
            self.plan.add(rule)
        self.rules.extend(extra)
        return extra

    def frozen_venues(self) -> int:
        return sum(1 for r in self.rules if r.endpoint == "*" and r.hits)

    def hits_by_kind(self) -> Counter[str]:
        counts: Counter[str] = Counter({kind.value: 0 for kind in FaultKind})
        for rule in self.rules:
            counts[rule.kind.value] += rule.hits
        return counts

    def partial_fill_hits(self, side: str) -> int:
        return sum(r.hits for r in self.rules if r.kind is FaultKind.PARTIAL_FILL and r.side == side)

    def hits_by_endpoint(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for rule in self.rules:
            counts[rule.endpoint] += rule.hits
        return counts

    @property
    def injected(self) -> int:
        return sum(r.hits for r in self.rules)

    def of_life(self, life: int) -> list[ChaosRule]:
        return [r for r in self.rules if r.life == life]

    # ----- drawing ---------------------------------------------------------------------------------------------
    def _rule(self, life: int, kind: FaultKind | None = None, skip: int | None = None) -> ChaosRule:
        kind = kind or self._kind()
        endpoint = self._endpoint(kind)
        skip = self.rng.randint(0, endpoint.skip_max) if skip is None else skip
        if kind is FaultKind.PARTIAL_FILL:
            return self._partial_fill(life, endpoint, skip, self.rng.choice(("BUY", "SELL")))
        times = self.rng.choice((1, 1, 1, 2, 3))
        return ChaosRule(kind, endpoint=endpoint.spec, times=times, skip=skip, life=life,
                         **self._shape(kind, endpoint))

    def _kind(self) -> FaultKind:
        kinds = list(KIND_WEIGHTS)
        return self.rng.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]

    def _endpoint(self, kind: FaultKind) -> Endpoint:
        if kind is FaultKind.PARTIAL_FILL:
            return ORDER
        pool = [e for e in ENDPOINTS if kind is not FaultKind.REJECT or e.reject_codes]
        return self.rng.choices(pool, weights=[e.weight for e in pool])[0]

    def _shape(self, kind: FaultKind, endpoint: Endpoint) -> dict[str, Any]:
        p, rng = self.profile, self.rng
        slow = rng.randrange(100) < p.slow_pct
        if kind is FaultKind.LATENCY:
            return {"delay_s": rng.uniform(10.5, 12.0) if slow else rng.uniform(*p.latency_s)}
        if kind in (FaultKind.RATE_LIMIT, FaultKind.BAN):
            return {"retry_after_s": rng.randint(*p.retry_after_s)}
        if kind is FaultKind.SERVER_ERROR:
            return {"status": rng.choice(SERVER_ERROR_STATUSES), "execute": endpoint.mutating and rng.random() < 0.6}
        if kind is FaultKind.LOST_RESPONSE:
            return {"drop": not slow, "delay_s": rng.uniform(10.5, 12.0) if slow else 0.0}
        if kind is FaultKind.REJECT:
            return {"code": rng.choice(endpoint.reject_codes)}
        return {}

    def _partial_fill(self, life: int, endpoint: Endpoint, skip: int, side: str) -> ChaosRule:
        ratio = Decimal(self.rng.choice(FILL_RATIOS))
        return ChaosRule(FaultKind.PARTIAL_FILL, endpoint=endpoint.spec, times=1, skip=skip, fill_ratio=ratio,
                         side=side, life=life)

    def _frozen_venue(self, life: int) -> ChaosRule:
        p = self.profile
        return ChaosRule(FaultKind.LATENCY, endpoint="*", times=self.rng.randint(*p.frozen_requests),
                         skip=self.rng.randint(0, 40), delay_s=self.rng.uniform(*p.frozen_delay_s), life=life,
                         side=None)
