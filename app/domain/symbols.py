"""Which pairs a user may trade, and the volume-ranked rule (`top:N`) that picks them instead of a list.

Sizing is in USDT, so only pairs quoted in USDT are tradable; stablecoin pairs and leveraged tokens never make a
ranked list (they top the volume tables without moving like the assets the strategy was built for).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.domain.values import SymbolRules

QUOTE = "USDT"
TOP_RULE = re.compile(r"^top:(?P<n>[0-9]{1,3})$", re.IGNORECASE)
MAX_TOP = 50
STABLECOINS = frozenset({"USDC", "FDUSD", "TUSD", "BUSD", "USDP", "DAI", "PAX", "USDS", "USD1", "EUR", "AEUR",
                         "EURI", "PYUSD", "XUSD", "BFUSD", "USDE", "GBP", "TRY", "BRL"})
LEVERAGED = re.compile(r"^[A-Z0-9]+(UP|DOWN|BULL|BEAR)$")


@dataclass(frozen=True, slots=True)
class Selection:
    """A user's `symbols`: named pairs and, at most once, `top:N` (the N most traded USDT pairs, refreshed hourly)."""

    named: tuple[str, ...]
    top: int | None = None

    @classmethod
    def of(cls, items: Iterable[str]) -> Selection:
        named: list[str] = []
        top = None
        for item in items:
            rule = TOP_RULE.match(item)
            if rule is not None:
                top = int(rule["n"])
            else:
                named.append(item)
        return cls(tuple(dict.fromkeys(named)), top)

    def items(self) -> tuple[str, ...]:
        return (*self.named, f"top:{self.top}") if self.top is not None else self.named


def normalised(items: Iterable[str]) -> tuple[str, ...]:
    """Symbols upper-cased, a `top:N` rule lower-cased, blanks and repeats dropped, the order kept."""
    cleaned = (item.strip() for item in items)
    return tuple(dict.fromkeys(i.lower() if TOP_RULE.match(i) else i.upper() for i in cleaned if i))


def excluded_by_default(rules: SymbolRules) -> bool:
    """Stablecoin pairs (USDCUSDT, FDUSDUSDT, ...) and leveraged tokens (BTCUPUSDT, ...): never in a ranked list."""
    return rules.base_asset in STABLECOINS or bool(LEVERAGED.match(rules.base_asset))


def tradable_problem(rules: SymbolRules) -> str | None:
    """Why a listed pair cannot be chosen at all (as opposed to paused: a halted pair may be chosen and waits)."""
    if rules.quote_asset != QUOTE:
        return f"{rules.symbol} is quoted in {rules.quote_asset}; only {QUOTE} pairs can be traded (sizing is in {QUOTE})"
    return None


def selection_problems(requested: Iterable[str], listed: Mapping[str, SymbolRules]) -> list[str]:
    """What is wrong with a requested list of symbols (and `top:N`), each naming the symbol; empty when none."""
    problems = []
    tops = [item for item in requested if TOP_RULE.match(item)]
    if len(tops) > 1:
        problems.append(f"at most one top:N rule, got {', '.join(tops)}")
    for item in tops:
        n = int(TOP_RULE.match(item)["n"])  # type: ignore[index]
        if not 1 <= n <= MAX_TOP:
            problems.append(f"{item}: N must be between 1 and {MAX_TOP}")
    for symbol in dict.fromkeys(s for s in requested if not TOP_RULE.match(s)):
        rules = listed.get(symbol)
        if rules is None:
            problems.append(_unknown(symbol, listed))
            continue
        problem = tradable_problem(rules)
        if problem is not None:
            problems.append(problem)
    return problems


def _unknown(symbol: str, listed: Mapping[str, SymbolRules]) -> str:
    close = difflib.get_close_matches(symbol, [s for s, r in listed.items() if tradable_problem(r) is None], n=3,
                                      cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown symbol {symbol}{hint}"


def top_symbols(ranked: Sequence[str], listed: Mapping[str, SymbolRules], n: int,
                exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The first `n` of `ranked` (most traded first) that are tradable USDT pairs, trading now, not stablecoins or
    leveraged tokens, and not in `exclude`."""
    skip = set(exclude)
    chosen: list[str] = []
    for symbol in ranked:
        rules = listed.get(symbol)
        if (rules is None or symbol in skip or tradable_problem(rules) is not None or excluded_by_default(rules)
                or rules.entry_problem() is not None):
            continue
        chosen.append(symbol)
        if len(chosen) == n:
            break
    return tuple(chosen)
