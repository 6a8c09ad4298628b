"""Risk rules: support/resistance, adaptive exits, adaptive confidence, position size and trade validation."""

from __future__ import annotations

import functools
import hashlib
import math
import random
from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal, localcontext

import numpy as np

from app.domain.risk import RiskLimits, UserRiskContext
from app.domain.values import (
    ZERO,
    ExitPlan,
    MarketFeatures,
    RegimeAnalysis,
    RiskDecision,
    Side,
    Signal,
    SignalType,
    SupportResistance,
    SymbolRules,
    hold_reason,
)
from app.indicators.batch import compiled_kernels
from app.indicators.technical import rolling_max, rolling_min
from app.services.service_constants import PIVOT_WINDOW, AssetProfile, asset_profile

HUNDRED = Decimal("100")
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


@functools.cache
def _touch_weights(bars: int) -> np.ndarray:
    """Columns of ones and of 4**j: a boolean row times it gives the row's count, and a sum whose base-4 exponent
    is the last True bar whatever the summation order (the lower powers add up to less than a third of the top
    one, and every rounding of non-negative partial sums stays in [4**last, 4**(last + 1)))."""
    return np.stack((np.ones(bars), 4.0 ** np.arange(bars)), axis=1)


def _mean(values: list[float]) -> float:
    """Left to right from 0.0, as Python 3.11's sum() adds floats and the compiled zones do (3.12's sum() is
    compensated: it would round differently)."""
    total = 0.0
    for value in values:
        total += value
    return total / len(values)


def _touches_and_last(near: np.ndarray) -> list[tuple[int, int]]:
    """Per row of 1.0 / 0.0: how many ones, and the index of the last one (n - 1 when none, as argmax over a
    reversed row)."""
    n = near.shape[1]
    if n > _WEIGHTED_BARS:
        counts = near.sum(axis=1).astype(np.int64).tolist()
        return list(zip(counts, (n - 1 - near[:, ::-1].argmax(axis=1)).tolist(), strict=True))
    # dot, not @: half the call cost on such small matrices
    return [(int(count), (math.frexp(top)[1] - 1) >> 1 if top else n - 1)
            for count, top in near.dot(_touch_weights(n)).tolist()]


class RiskManager:
    """Every risk rule of DESIGN.md section 5, as pure functions of the values passed in."""

    def __init__(self, limits: RiskLimits, pivot_window: int = PIVOT_WINDOW) -> None:
        self._limits = limits
        self._pivot_window = pivot_window
        self._touch_threshold = float(limits.sr_touch_threshold_pct) / 100.0

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    # ---- support and resistance -------------------------------------------------------------------------

    def detect_support_resistance_levels(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray, current_price: float
    ) -> tuple[SupportResistance, ...]:
        """Swing pivots, clustered within the touch threshold, with touch counts and a recency-weighted strength.

        A level below the price is a support, above it a resistance (an old resistance that was broken
        now supports); the result is sorted by distance from the price.
        """
        return self.levels_around(self.support_resistance_zones(high, low), current_price)

    def support_resistance_zones(self, high: np.ndarray, low: np.ndarray, compiled: bool = False) -> tuple[Zone, ...]:
        """The price-independent part of the detection: (price, touches, strength) per clustered pivot level.

        Tops are bars whose high is the highest of the 2w+1 bars centred on them, bottoms likewise with lows;
        levels are the means of the sorted pivot prices grouped by `_cluster`, scored by `_score_levels`.
        (Few numpy calls: results are bit-identical to the plain formulation kept in
        tests/services/test_sr_speed_equivalence.py.) `compiled` clusters and scores in
        app.indicators.kernels.sr_zones where numba is installed: the same bits, about three times faster; the live
        service does not load numba for it, and backtests compute most windows many at a time
        (`support_resistance_zone_windows`)."""
        high, low = np.asarray(high, dtype=np.float64), np.asarray(low, dtype=np.float64)
        tops, bottoms = self._pivots(high, low)
        if not len(tops) + len(bottoms):
            return ()
        kernels = compiled_kernels() if compiled else None
        if kernels is not None:
            # a stable sort gives what sorted() gives (pivot prices are never NaN: NaN >= x is false)
            ordered = np.sort(np.concatenate((tops, bottoms)), kind="stable")
            levels, touches, strengths = kernels.sr_zones(ordered, high, low, self._touch_threshold)
            return tuple(zip(levels.tolist(), touches.tolist(), strengths.tolist(), strict=True))
        levels = self._cluster(tops.tolist() + bottoms.tolist(), self._touch_threshold)
        return self._score_levels(levels, high, low, self._touch_threshold)

    def support_resistance_zone_windows(self, high: np.ndarray, low: np.ndarray, starts: np.ndarray,
                                        length: int) -> list[tuple[Zone, ...]] | None:
        """support_resistance_zones of many windows of one series at once (compiled, backtests), or None where it
        cannot give the same: without numba, or when the series is not all finite (TA-Lib's rolling extremes treat
        NaN by position, so a bar's pivot status would depend on where its window starts)."""
        kernels = compiled_kernels()
        w = self._pivot_window
        if kernels is None or len(high) != len(low) or not (np.isfinite(high).all() and np.isfinite(low).all()):
            return None
        n = len(high)
        if length < 2 * w + 1 or n < 2 * w + 1:
            return [() for _ in range(len(starts))]
        tops, bottoms = np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_)
        tops[w:n - w], bottoms[w:n - w] = self._pivot_masks(high, low)
        counts, levels, touches, strengths = kernels.sr_zone_windows(
            high, low, tops, bottoms, np.asarray(starts, dtype=np.int64), length, w, self._touch_threshold)
        # every window's zones in one pass (row by row, the first `count` of each), then cut per window
        kept = np.arange(levels.shape[1]) < counts[:, None]
        zones = list(zip(levels[kept].tolist(), touches[kept].tolist(), strengths[kept].tolist(), strict=True))
        ends = np.cumsum(counts).tolist()
        return [tuple(zones[end - count:end]) for end, count in zip(ends, counts.tolist(), strict=True)]

    @staticmethod
    def levels_around(zones: Sequence[Zone], current_price: float) -> tuple[SupportResistance, ...]:
        """Zones below the price are supports, above it resistances, nearest first."""
        return ZoneLevels(zones).around(current_price)

    def _pivots(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prices of the tops (by bar) and of the bottoms (by bar)."""
        w = self._pivot_window
        n = len(high)
        if n < 2 * w + 1 or len(low) != n:
            return np.empty(0), np.empty(0)
        tops, bottoms = self._pivot_masks(high, low)
        return high[w : n - w][tops], low[w : n - w][bottoms]

    def _pivot_masks(self, high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For bars w .. n-w-1: whether each is a top (its high the highest of the 2w+1 bars centred on it) and a
        bottom (likewise with lows). Needs at least 2w+1 bars."""
        w = self._pivot_window
        n = len(high)
        # the trailing window ending at bar i + w is centred on bar i
        tops = high[w : n - w] >= rolling_max(high, 2 * w + 1)[2 * w :]
        bottoms = low[w : n - w] <= rolling_min(low, 2 * w + 1)[2 * w :]
        return tops, bottoms

    @staticmethod
    def _cluster(prices: list[float], threshold: float) -> list[float]:
        """Group sorted pivot prices that lie within the threshold of the group's first price; mean of each."""
        ordered = sorted(prices)
        levels: list[float] = []
        start, limit = 0, ordered[0] * (1.0 + threshold)
        for i in range(1, len(ordered)):
            if ordered[i] > limit:
                levels.append(_mean(ordered[start:i]))
                start, limit = i, ordered[i] * (1.0 + threshold)
        levels.append(_mean(ordered[start:]))
        return levels

    @staticmethod
    def _score_levels(levels: list[float], high: np.ndarray, low: np.ndarray, threshold: float) -> tuple[Zone, ...]:
        """A bar touches a level when its high or its low lies within the threshold of it; strength weighs the
        touches (up to 6) and how recent the last one is (no touch at all counts as the last bar)."""
        n = len(high)
        column = np.array(levels)[:, None]
        # |level - x| is |x - level| bit for bit (rounding is symmetric), so one difference covers highs and lows
        distance = column - np.array((high, low))[:, None, :]  # (2, levels, bars)
        np.abs(distance, out=distance)
        # fmin, not minimum: a NaN distance on one side must not hide a touch on the other (as an `or` would not)
        nearest = np.fmin(distance[0], distance[1], out=distance[0])
        near = np.less_equal(nearest, column * threshold, out=distance[1])  # 1.0 / 0.0, ready for the dot below
        span = max(n - 1, 1)
        zones = []
        for level, (touches, last) in zip(levels, _touches_and_last(near), strict=True):
            strength = (touches / 6.0 if touches < 6 else 1.0) * 0.7 + last / span * 0.3
            # np.round(strength, 4) is rint(strength * 1e4) / 1e4 (Python's round(strength, 4) may differ)
            zones.append((level, touches, round(strength * 10000.0) / 10000.0))
        return tuple(zones)

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
        profile = asset_profile(symbol)
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
        """Quantity risking `risk_pct` % of the balance between entry and stop, capped by value, rounded down."""
        risk_per_unit = abs(entry - stop)
        if risk_per_unit == 0 or entry <= 0 or balance <= 0:
            return ZERO
        with localcontext() as ctx:
            ctx.rounding = ROUND_FLOOR  # a rounded quotient must never exceed the exact one
            by_risk = balance * risk_pct / HUNDRED / risk_per_unit
            by_value = balance * max_balance_trade_ratio / entry
        return rules.round_qty(min(by_risk, by_value))

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
            return RiskDecision.reject(f"price: no usable last price ({entry})", threshold=threshold)
        atr = features.indicators.get(EXIT_ATR_TIMEFRAME, {}).get("atr", 0.0)
        plan = self.calculate_adaptive_risk_reward(Side.BUY, entry, features.levels, atr, features.symbol)
        stop, target = self._round_exits(plan, entry, context.rules)
        qty = self.calculate_position_size(
            context.usdt_balance, cfg.risk_per_trade_pct, entry, stop, context.rules, cfg.max_balance_trade_ratio
        )
        reasons = self._failed_rules(signal, features, context, threshold, entry, stop, target, qty)
        if reasons:
            return RiskDecision.reject(*reasons, threshold=threshold)
        return RiskDecision(
            approved=True, quantity=qty, entry_price=entry, stop_loss=stop, take_profit=target,
            confidence_threshold=threshold, risk_amount=qty * (entry - stop),
        )

    def _failed_rules(
        self, signal: Signal, features: MarketFeatures, context: UserRiskContext, threshold: float,
        entry: Decimal, stop: Decimal, target: Decimal, qty: Decimal,
    ) -> tuple[str, ...]:
        checks = (
            self.check_signal_type(signal),
            self.check_confidence(signal, threshold),
            self.check_open_positions(context),
            self.check_symbol_not_held(features.symbol, context),
            self.check_daily_limit(context),
            self.check_balance(context),
            self.check_regime(features.regime),
            *self.check_exit_plan(entry, stop, target),
            *self.check_position_value(qty, entry, context),
            self.check_quantity(qty, context.rules),
        )
        return tuple(reason for reason in checks if reason)

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

    def check_signal_type(self, signal: Signal) -> str:
        if signal.signal == SignalType.SELL:
            return "spot cannot short: sell means no long entry"
        if signal.signal == SignalType.HOLD:
            return hold_reason(signal)
        return ""

    def check_confidence(self, signal: Signal, threshold: float) -> str:
        if signal.confidence < threshold:
            return f"confidence {signal.confidence} below threshold {threshold:g}"
        return ""

    def check_open_positions(self, context: UserRiskContext) -> str:
        held, cap = len(context.open_symbols), context.config.max_open_positions
        return f"open positions {held} at the limit of {cap}" if held >= cap else ""

    def check_symbol_not_held(self, symbol: str, context: UserRiskContext) -> str:
        return f"already holding {symbol}" if symbol in context.open_symbols else ""

    def check_daily_limit(self, context: UserRiskContext) -> str:
        done, cap = context.entries_today, context.config.daily_trade_limit
        return f"daily trade limit reached: {done} of {cap} entries today" if done >= cap else ""

    def check_balance(self, context: UserRiskContext) -> str:
        minimum = self._limits.min_account_balance
        if context.usdt_balance < minimum:
            return f"balance {context.usdt_balance} USDT below minimum account balance {minimum}"
        return ""

    def check_regime(self, regime: RegimeAnalysis) -> str:
        return "" if regime.trading_allowed else f"regime {regime.regime} does not allow entries: {regime.reason}"

    def check_exit_plan(self, entry: Decimal, stop: Decimal, target: Decimal) -> tuple[str, ...]:
        lim = self._limits
        risk, reward = entry - stop, target - entry
        if risk <= 0 or reward <= 0:
            return (f"exit plan: need stop {stop} < entry {entry} < target {target}",)
        rr, stop_pct, target_pct = reward / risk, _pct(risk, entry), _pct(reward, entry)
        problems = []
        if rr < lim.min_risk_reward:
            problems.append(f"risk:reward {rr:.2f} below minimum {lim.min_risk_reward}")
        if not lim.min_stop_distance_pct <= stop_pct <= lim.max_stop_distance_pct:
            problems.append(f"stop distance {stop_pct:.2f}% outside "
                            f"{lim.min_stop_distance_pct}-{lim.max_stop_distance_pct}%")
        if not lim.min_target_distance_pct <= target_pct <= lim.max_target_distance_pct:
            problems.append(f"target distance {target_pct:.2f}% outside "
                            f"{lim.min_target_distance_pct}-{lim.max_target_distance_pct}%")
        return tuple(problems)

    def check_position_value(self, qty: Decimal, entry: Decimal, context: UserRiskContext) -> tuple[str, ...]:
        value = qty * entry
        floor = max(self._limits.min_trade_value, context.rules.min_notional)
        cap = context.usdt_balance * context.config.max_balance_trade_ratio
        problems = []
        if value < floor:
            problems.append(f"position value {value:.2f} below minimum {floor} (min trade value "
                            f"{self._limits.min_trade_value}, min notional {context.rules.min_notional})")
        if value > cap:
            problems.append(f"position value {value:.2f} above cap {cap:.2f} "
                            f"({context.config.max_balance_trade_ratio} x balance)")
        return tuple(problems)

    def check_quantity(self, qty: Decimal, rules: SymbolRules) -> str:
        return f"quantity {qty} below minimum quantity {rules.min_qty}" if qty < rules.min_qty else ""


class ZoneLevels:
    """A window's zones as levels at any price (RiskManager.levels_around): both levels a zone can be are built once,
    for as long as its window lasts (a 15m window serves three cycles, each at its own price)."""

    __slots__ = ("_prices", "_resistances", "_supports")

    def __init__(self, zones: Sequence[Zone]) -> None:
        self._prices = [price for price, _, _ in zones]
        self._supports = [SupportResistance(price, "support", touches, strength) for price, touches, strength in zones]
        self._resistances = [SupportResistance(price, "resistance", touches, strength)
                             for price, touches, strength in zones]

    def around(self, current_price: float) -> tuple[SupportResistance, ...]:
        """Zones below the price are supports, above it resistances, nearest first (ties in zone order)."""
        if current_price <= 0:
            return ()
        prices = self._prices
        distance = [abs(price - current_price) for price in prices]
        ordered = sorted([i for i, price in enumerate(prices) if price != current_price], key=distance.__getitem__)
        supports, resistances = self._supports, self._resistances
        return tuple([supports[i] if prices[i] < current_price else resistances[i] for i in ordered])
