"""Fault injection for the exchange simulator: which request gets which failure, switchable while it runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any

API_PREFIX = "/api/v3/"


class FaultKind(StrEnum):
    LATENCY = "latency"  # wait `delay_s` (wall time), then answer normally
    RATE_LIMIT = "rate_limit"  # 429 -1003 + Retry-After; requests inside that window then get 418
    BAN = "ban"  # 418 -1003 + Retry-After
    SERVER_ERROR = "server_error"  # a 5xx; with `execute` the request is carried out first
    LOST_RESPONSE = "lost_response"  # carried out, answer lost: connection dropped, or held `delay_s`
    REJECT = "reject"  # a Binance error answer (`code`, `msg`) instead of executing, e.g. -1013 / -2010
    PARTIAL_FILL = "partial_fill"  # a MARKET order fills `fill_ratio` of its quantity and ends EXPIRED


class FaultStage(StrEnum):
    BEFORE = "before"  # decided before the request is executed: it never runs
    DURING = "during"  # changes how it executes
    AFTER = "after"  # the request ran; its answer is replaced


def normalize_endpoint(spec: str) -> tuple[str | None, str]:
    """`"POST /api/v3/order"`, `"/api/v3/order"`, `"order"` or `"*"` -> (method or None, path or "*")."""
    method, _, path = spec.strip().rpartition(" ")
    path = path.strip()
    if path != "*" and not path.startswith("/"):
        path = API_PREFIX + path
    return (method.strip().upper() or None), path


@dataclass
class FaultRule:
    """One fault on the requests that match `endpoint`: the first `skip` pass, then `times` are hit (None: all)."""

    kind: FaultKind
    endpoint: str = "*"
    times: int | None = 1
    skip: int = 0
    delay_s: float = 0.0
    retry_after_s: int = 2
    status: int = 503
    code: int | None = None
    msg: str | None = None
    execute: bool = False
    drop: bool = True
    fill_ratio: Decimal = Decimal("0.5")
    seen: int = field(default=0, compare=False)
    hits: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        self.fill_ratio = Decimal(str(self.fill_ratio))
        if not Decimal(0) <= self.fill_ratio < 1:
            raise ValueError(f"fill_ratio must be in [0, 1), got {self.fill_ratio}")
        if self.kind is FaultKind.REJECT and self.code is None:
            raise ValueError("a reject fault needs a Binance error code, e.g. code=-2010")
        if self.kind is FaultKind.SERVER_ERROR and not 500 <= self.status <= 599:
            raise ValueError(f"server_error status must be 5xx, got {self.status}")

    @property
    def stage(self) -> FaultStage:
        if self.kind is FaultKind.PARTIAL_FILL:
            return FaultStage.DURING
        if self.kind is FaultKind.LOST_RESPONSE or (self.kind is FaultKind.SERVER_ERROR and self.execute):
            return FaultStage.AFTER
        return FaultStage.BEFORE

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str) -> bool:
        want_method, want_path = normalize_endpoint(self.endpoint)
        return (want_method in (None, method.upper())) and want_path in ("*", path)

    def fire(self) -> bool:
        """Count one matching request; True when this one is hit."""
        self.seen += 1
        if self.seen <= self.skip or self.exhausted:
            return False
        self.hits += 1
        return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)} - {"seen", "hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, InvalidOperation) as e:
            raise ValueError(f"bad fault {dict(data)}: {e}") from e

    @classmethod
    def from_spec(cls, spec: str) -> FaultRule:
        """`kind=rate_limit,endpoint=POST /api/v3/order,times=3,retry_after_s=2` (the CLI's --fault)."""
        pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"bad fault spec {spec!r}: expected name=value pairs separated by commas")
        return cls.from_dict({name.strip(): _spec_value(name.strip(), value.strip()) for name, value in pairs})


_INT_FIELDS = frozenset({"times", "skip", "retry_after_s", "status", "code"})
_BOOL_FIELDS = frozenset({"execute", "drop"})


def _spec_value(name: str, text: str) -> Any:
    if name in _INT_FIELDS:
        return None if text.lower() in ("none", "all", "") else int(text)
    if name in _BOOL_FIELDS:
        return text.lower() in ("1", "true", "yes", "on")
    if name == "delay_s":
        return float(text)
    return text


class FaultPlan:
    """The faults of one simulator run. Thread-safe: a test may switch faults while the server thread serves."""

    def __init__(self, rules: Iterable[FaultRule] = ()) -> None:
        self._rules = list(rules)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str, stage: FaultStage) -> list[FaultRule]:
        """The rules of `stage` that hit this request (each matching rule counts it)."""
        with self._lock:
            candidates = [r for r in self._rules if r.stage is stage and r.matches(method, path)]
            return [rule for rule in candidates if rule.fire()]

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        """`{"faults": [{"kind": "rate_limit", "endpoint": "POST /api/v3/order", "times": 3}, ...]}` or a list."""
        data = json.loads(text)
        items = data.get("faults", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError("a fault file holds a list of faults, or {\"faults\": [...]}")
        return cls(FaultRule.from_dict(item) for item in items)

    @classmethod
    def load(cls, path: Path) -> FaultPlan:
        return cls.from_json(Path(path).read_text())
