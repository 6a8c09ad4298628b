"""Risk rules: adaptive exits from the support/resistance levels features found, adaptive confidence, position
size and trade validation."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal, localcontext

from app.domain.profiles import AssetProfile, asset_profile
from app.domain.risk import RiskLimits, TradingConfig, UserRiskContext
from app.domain.values import (
    ZERO,
    ExitPlan,
    MarketFeatures,
    Reason,
    RiskDecision,
    Side,
    Signal,
    SignalType,
    SupportResistance,
    SymbolRules,
)
from app.risk.rules import RiskRules

HUNDRED = Decimal("100")
# a market buy fills above the last price (slippage, the price moving while the order travels): the whole balance
# is never committed, so a position capped at 100 % of it is not refused for insufficient funds
FUNDS_HEADROOM_PCT = Decimal("0.5")
PREFERRED_RISK_REWARD = Decimal("2")  # target when no resistance is in sight
RR_QUANTUM = Decimal("0.0001")
EXIT_ATR_TIMEFRAME = "15m"
Zone = tuple[float, int, float]  # price, touches, strength
_WEIGHTED_BARS = 500  # 4.0 ** 499 and the sums below 4.0 ** 500 stay finite


def _dec(value: float) -> Decimal:
    """A float from indicator math, made Decimal through its shortest repr (never the binary expansion)."""
    return Decimal(repr(float(value)))


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    return part / whole * HUNDRED


class RiskManager:
    """Every risk rule of DESIGN.md section 5, as pure functions of the values passed in."""

    def __init__(self, limits: RiskLimits, profiles: Mapping[str, AssetProfile] | None = None) -> None:
        self._limits = limits
        self._profiles = profiles  # None: the fitted ASSET_PROFILES (a backtest may tune them)
        self.rules = RiskRules(limits)

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    # ---- adaptive exits -------------------------------------------------------------------------------------

    def stop_range(self, profile: AssetProfile) -> tuple[Decimal, Decimal]:
        """The asset's stop-distance range, never wider than the global one."""
        low = max(self._limits.min_stop_distance_pct, profile.min_stop_pct)
        high = min(self._limits.max_stop_distance_pct, profile.max_stop_pct)
        return (low, high) if low <= high else (self._limits.min_stop_distance_pct, self._limits.max_stop_distance_pct)

    def calculate_adaptive_risk_reward(
        self, side: Side, entry_price: Decimal, levels: Sequence[SupportResistance], atr: float, symbol: str
    ) -> ExitPlan:
        """Stop beyond the nearest protecting level plus an ATR buffer, target before the nearest opposing level;
        both clamped to the distance and reward:risk ranges. A plan whose R:R ends below the minimum means
        "no consistent plan" and validation rejects it."""
        profile = asset_profile(symbol, self._profiles)
        direction = Decimal(1) if side == Side.BUY else Decimal(-1)
        protect_kind, goal_kind = ("support", "resistance") if side == Side.BUY else ("resistance", "support")
        buffer = profile.atr_stop_multiplier * _dec(max(atr, 0.0))
        stop_pct, stop_why = self._stop_distance_pct(entry_price, direction, levels, protect_kind, buffer, profile)
        risk = entry_price * stop_pct / HUNDRED
        reward, target_why = self._reward(entry_price, direction, levels, goal_kind, risk, profile)
        stop = entry_price - direction * risk
        target = entry_price + direction * reward
        rr = (reward / risk).quantize(RR_QUANTUM, ROUND_DOWN) if risk > 0 else ZERO
        return ExitPlan(stop_loss=stop, take_profit=target, risk_reward=rr, reason=f"{stop_why}; {target_why}")

    @staticmethod
    def _nearest(levels: Sequence[SupportResistance], kind: str, entry: Decimal) -> Decimal | None:
        """The closest level of that kind on its proper side: supports below the entry, resistances above."""
        best: Decimal | None = None
        for level in levels:
            price = _dec(level.price)
            on_its_side = price < entry if kind == "support" else price > entry
            closer = best is None or abs(price - entry) < abs(best - entry)
            if level.kind == kind and on_its_side and closer:
                best = price
        return best

    def _stop_distance_pct(
        self, entry: Decimal, direction: Decimal, levels: Sequence[SupportResistance], kind: str,
        buffer: Decimal, profile: AssetProfile,
    ) -> tuple[Decimal, str]:
        level = self._nearest(levels, kind, entry)
        if level is None:
            raw, why = _pct(2 * buffer, entry), f"no {kind}: stop 2 x ATR buffer away"
        else:
            raw, why = _pct(direction * (entry - level) + buffer, entry), f"stop beyond {kind} {level} + ATR buffer"
        low, high = self.stop_range(profile)
        clamped = min(max(raw, low), high)
        if clamped != raw:
            why += f", clamped to {clamped:.2f}% (range {low}-{high}%)"
        return clamped, why

    def _reward(
        self, entry: Decimal, direction: Decimal, levels: Sequence[SupportResistance], kind: str,
        risk: Decimal, profile: AssetProfile,
    ) -> tuple[Decimal, str]:
        lim = self._limits
        level = self._nearest(levels, kind, entry)
        if level is None:
            raw, why = risk * PREFERRED_RISK_REWARD, f"no {kind}: target at {PREFERRED_RISK_REWARD}R"
        else:
            goal = level * (1 - direction * profile.target_buffer_pct / HUNDRED)
            raw, why = direction * (goal - entry), f"target before {kind} {level}"
        reward = min(max(raw, lim.min_risk_reward * risk), lim.max_risk_reward * risk)
        low, high = entry * lim.min_target_distance_pct / HUNDRED, entry * lim.max_target_distance_pct / HUNDRED
        reward = min(max(reward, low), high)
        if reward != raw:
            why += f", moved into {lim.min_risk_reward}-{lim.max_risk_reward}R and " \
                   f"{lim.min_target_distance_pct}-{lim.max_target_distance_pct}%"
        return reward, why

    # ---- adaptive confidence --------------------------------------------------------------------------------

    def get_adaptive_confidence_threshold(
        self, base: int, recent_results: Sequence[bool], user_id: int, symbol: str, cycle_time: datetime
    ) -> float:
        """Base threshold, moved by the recent win rate, then a seeded jitter; clamped to floor and ceiling."""
        lim = self._limits
        threshold = float(base) + self._win_rate_adjustment(recent_results)
        if lim.randomize_thresholds:
            threshold *= 1.0 + self._jitter_fraction(user_id, symbol, cycle_time)
        return round(min(max(threshold, float(lim.confidence_floor)), float(lim.confidence_ceiling)), 2)

    def _win_rate_adjustment(self, recent_results: Sequence[bool]) -> float:
        lim = self._limits
        window = tuple(recent_results)[: lim.win_rate_lookback_trades]
        if len(window) < lim.win_rate_min_trades:
            return 0.0
        win_rate = Decimal(sum(1 for won in window if won)) * HUNDRED / len(window)
        if win_rate < lim.low_win_rate_pct:
            return float(lim.low_win_rate_raise)
        if win_rate > lim.high_win_rate_pct:
            return -float(lim.high_win_rate_lower)
        return 0.0

    def _jitter_fraction(self, user_id: int, symbol: str, cycle_time: datetime) -> float:
        """Uniform in +/- jitter %; keyed by a stable hash so a rerun draws the same number (not hash())."""
        key = f"{self._limits.random_seed}|{user_id}|{symbol}|{cycle_time.isoformat()}"
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        return random.Random(seed).uniform(-1.0, 1.0) * float(self._limits.threshold_jitter_pct) / 100.0

    # ---- position size --------------------------------------------------------------------------------------

    @staticmethod
    def calculate_position_size(
        balance: Decimal, risk_pct: Decimal, entry: Decimal, stop: Decimal, rules: SymbolRules,
        max_balance_trade_ratio: Decimal,
    ) -> Decimal:
        """Quantity risking `risk_pct` % of the balance between entry and stop, capped by value and by what the
        balance can pay for a market buy that fills a little above the last price, rounded down."""
        risk_per_unit = abs(entry - stop)
        if risk_per_unit == 0 or entry <= 0 or balance <= 0:
            return ZERO
        with localcontext() as ctx:
            ctx.rounding = ROUND_FLOOR  # a rounded quotient must never exceed the exact one
            by_risk = balance * risk_pct / HUNDRED / risk_per_unit
            by_value = balance * max_balance_trade_ratio / entry
            by_funds = balance / (entry * (1 + FUNDS_HEADROOM_PCT / HUNDRED))
        return rules.round_qty(min(by_risk, by_value, by_funds))

    # ---- validation -----------------------------------------------------------------------------------------

    def validate_trade_signal(self, signal: Signal, features: MarketFeatures, context: UserRiskContext) -> RiskDecision:
        """Every rule runs; the decision lists every one that failed. Entry is the last price; the analyst's
        levels are proposals only, the exits come from `calculate_adaptive_risk_reward`."""
        cfg = context.config
        entry = features.last_price
        threshold = self.get_adaptive_confidence_threshold(
            cfg.min_signal_confidence, context.recent_results, context.user_id, features.symbol, context.cycle_time
        )
        if entry <= 0:
            return RiskDecision.reject(Reason("price", f"price: no usable last price ({entry})"), threshold=threshold)
        atr = features.indicators.get(EXIT_ATR_TIMEFRAME, {}).get("atr", 0.0)
        plan = self.calculate_adaptive_risk_reward(Side.BUY, entry, features.levels, atr, features.symbol)
        stop, target = self._round_exits(plan, entry, context.rules)
        qty = self.calculate_position_size(
            context.usdt_balance, cfg.risk_per_trade_pct, entry, stop, context.rules, cfg.max_balance_trade_ratio
        )
        reasons = self._failed_rules(signal, features, context, threshold, entry, stop, target, qty)
        profile = asset_profile(features.symbol, self._profiles).asset
        if reasons:
            return RiskDecision.reject(*reasons, threshold=threshold, profile=profile)
        return RiskDecision(
            approved=True, quantity=qty, entry_price=entry, stop_loss=stop, take_profit=target,
            confidence_threshold=threshold, risk_amount=qty * (entry - stop), profile=profile,
        )

    def _failed_rules(
        self, signal: Signal, features: MarketFeatures, context: UserRiskContext, threshold: float,
        entry: Decimal, stop: Decimal, target: Decimal, qty: Decimal,
    ) -> tuple[Reason, ...]:
        rules = self.rules
        checks = (
            rules.check_symbol_trading(context.rules),
            rules.check_signal_type(signal),
            rules.check_confidence(signal, threshold),
            rules.check_open_positions(context.open_symbols, context.config),
            rules.check_symbol_not_held(features.symbol, context.open_symbols),
            rules.check_daily_limit(context),
            rules.check_daily_pace(context),
            rules.check_balance(context),
            rules.check_regime(features.regime),
            *rules.check_exit_plan(entry, stop, target),
            *rules.check_position_value(qty, entry, context),
            rules.check_quantity(qty, context.rules),
        )
        return tuple(reason for reason in checks if reason)

    def skip_reason(self, config: TradingConfig, symbol: str, signal: Signal, open_symbols: tuple[str, ...],
                    now: datetime) -> Reason | None:
        """The checks that need nothing from the exchange, asked before the engine reads the balance: trading hours,
        a hold, the symbol already held, the position cap (the same rules `validate_trade_signal` applies)."""
        rules = self.rules
        held = rules.check_signal_type(signal) if signal.signal == SignalType.HOLD else None  # a sell is judged in full
        return (rules.check_trading_hours(config, now) or held
                or rules.check_symbol_not_held(symbol, open_symbols) or rules.check_open_positions(open_symbols, config))

    def _round_exits(self, plan: ExitPlan, entry: Decimal, rules: SymbolRules) -> tuple[Decimal, Decimal]:
        """Stop down and target up to the tick (the safer side) unless that leaves the allowed distance;
        a plan that met the minimum R:R still meets it after rounding."""
        lim = self._limits
        stop = rules.round_price_down(plan.stop_loss)
        if _pct(entry - stop, entry) > lim.max_stop_distance_pct:
            stop = rules.round_price_up(plan.stop_loss)
        target = rules.round_price_up(plan.take_profit)
        if plan.risk_reward + RR_QUANTUM >= lim.min_risk_reward:  # the plan's R:R is floored to the quantum
            target = max(target, rules.round_price_up(entry + lim.min_risk_reward * (entry - stop)))
        if _pct(target - entry, entry) > lim.max_target_distance_pct:
            target = rules.round_price_down(plan.take_profit)
        return stop, target
