"""The risk rules one by one: each a small named method that answers a Reason when it says no, else None."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal

from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.domain.values import (
    ALREADY_HOLDING,
    OUTSIDE_HOURS,
    Reason,
    RegimeAnalysis,
    Signal,
    SignalType,
    SymbolRules,
    already_holding_text,
    hold_reason,
)

HUNDRED = Decimal("100")


def daily_allowance(cap: int, now: datetime) -> int:
    """How many of the day's `cap` entries may have been made by `now`: floor(cap x elapsed fraction) + 1."""
    elapsed = (now.hour * 3600 + now.minute * 60 + now.second) / 86400
    return min(cap, math.floor(cap * elapsed) + 1)


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    return part / whole * HUNDRED


class RiskRules:
    """DESIGN.md section 5's limits as checks; the engine's cheap pre-checks and the full validation share them."""

    def __init__(self, limits: RiskLimits) -> None:
        self._limits = limits

    @staticmethod
    def check_trading_hours(config: TradingConfig, now: datetime) -> Reason | None:
        return None if config.in_trading_hours(now.time()) else Reason(OUTSIDE_HOURS, OUTSIDE_HOURS)

    @staticmethod
    def check_symbol_trading(rules: SymbolRules) -> Reason | None:
        """A pair the exchange halted (or closed to spot) takes no new entries; its open positions are still watched
        and closed."""
        problem = rules.entry_problem()
        return Reason("symbol not trading", f"no new entries: {problem}") if problem is not None else None

    @staticmethod
    def check_signal_type(signal: Signal) -> Reason | None:
        if signal.signal == SignalType.SELL:
            return Reason("spot cannot short", "spot cannot short: sell means no long entry")
        if signal.signal == SignalType.HOLD:
            return hold_reason(signal)
        return None

    @staticmethod
    def check_confidence(signal: Signal, threshold: float) -> Reason | None:
        if signal.confidence < threshold:
            return Reason("confidence below threshold", f"confidence {signal.confidence} below threshold {threshold:g}")
        return None

    @staticmethod
    def check_open_positions(open_symbols: tuple[str, ...], config: TradingConfig) -> Reason | None:
        held, cap = len(open_symbols), config.max_open_positions
        if held >= cap:
            return Reason("open positions at the limit", f"open positions {held} at the limit of {cap}")
        return None

    @staticmethod
    def check_symbol_not_held(symbol: str, open_symbols: tuple[str, ...]) -> Reason | None:
        return Reason(ALREADY_HOLDING, already_holding_text(symbol)) if symbol in open_symbols else None

    @staticmethod
    def check_daily_limit(context: UserRiskContext) -> Reason | None:
        done, cap = context.entries_today, context.config.daily_trade_limit
        if done >= cap:
            return Reason("daily trade limit reached", f"daily trade limit reached: {done} of {cap} entries today")
        return None

    def check_daily_pace(self, context: UserRiskContext) -> Reason | None:
        """The day's budget is spread over the day: by a given time, at most floor(limit x the elapsed fraction of
        the UTC day) + 1 entries (a limit of 5: one from midnight, two from 04:48, ... five from 19:12), so the
        budget is not spent in the first cycles after midnight (which, with an analyst whose buys come every hour,
        made the clock, not the quality bar, pick the day's trades)."""
        if not self._limits.daily_pacing:
            return None
        done, cap = context.entries_today, context.config.daily_trade_limit
        allowed = daily_allowance(cap, context.cycle_time)
        if allowed <= done < cap:
            return Reason("daily budget paced", f"daily budget paced: {done} of {cap} entries today, at most "
                          f"{allowed} by {context.cycle_time:%H:%M} UTC")
        return None

    def check_balance(self, context: UserRiskContext) -> Reason | None:
        minimum = self._limits.min_account_balance
        if context.usdt_balance < minimum:
            return Reason("balance below minimum account balance",
                          f"balance {context.usdt_balance} USDT below minimum account balance {minimum}")
        return None

    @staticmethod
    def check_regime(regime: RegimeAnalysis) -> Reason | None:
        if regime.trading_allowed:
            return None
        return Reason("regime does not allow entries", f"regime {regime.regime} does not allow entries: {regime.reason}")

    def check_exit_plan(self, entry: Decimal, stop: Decimal, target: Decimal) -> tuple[Reason, ...]:
        lim = self._limits
        risk, reward = entry - stop, target - entry
        if risk <= 0 or reward <= 0:
            return (Reason("exit plan", f"exit plan: need stop {stop} < entry {entry} < target {target}"),)
        rr, stop_pct, target_pct = reward / risk, _pct(risk, entry), _pct(reward, entry)
        problems = []
        if rr < lim.min_risk_reward:
            problems.append(Reason("risk:reward below minimum", f"risk:reward {rr:.2f} below minimum {lim.min_risk_reward}"))
        if not lim.min_stop_distance_pct <= stop_pct <= lim.max_stop_distance_pct:
            problems.append(Reason("stop distance outside range", f"stop distance {stop_pct:.2f}% outside "
                                   f"{lim.min_stop_distance_pct}-{lim.max_stop_distance_pct}%"))
        if not lim.min_target_distance_pct <= target_pct <= lim.max_target_distance_pct:
            problems.append(Reason("target distance outside range", f"target distance {target_pct:.2f}% outside "
                                   f"{lim.min_target_distance_pct}-{lim.max_target_distance_pct}%"))
        return tuple(problems)

    def check_position_value(self, qty: Decimal, entry: Decimal, context: UserRiskContext) -> tuple[Reason, ...]:
        value = qty * entry
        floor = max(self._limits.min_trade_value, context.rules.min_notional)
        cap = context.usdt_balance * context.config.max_balance_trade_ratio
        problems = []
        if value < floor:
            problems.append(Reason("position value below minimum", f"position value {value:.2f} below minimum {floor} "
                                   f"(min trade value {self._limits.min_trade_value}, min notional "
                                   f"{context.rules.min_notional})"))
        if value > cap:
            problems.append(Reason("position value above cap", f"position value {value:.2f} above cap {cap:.2f} "
                                   f"({context.config.max_balance_trade_ratio} x balance)"))
        return tuple(problems)

    @staticmethod
    def check_quantity(qty: Decimal, rules: SymbolRules) -> Reason | None:
        if qty < rules.min_qty:
            return Reason("quantity below minimum quantity", f"quantity {qty} below minimum quantity {rules.min_qty}")
        return None
