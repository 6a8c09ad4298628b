"""A deterministic long-only analyst: trend-following entries plus high-confluence bounces off support."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from app.analysts.rule_confidence import ConfidenceScale, SetupKind
from app.analysts.rule_confidence_table import RULE_CONFIDENCE
from app.domain.profiles import TREND_ADX
from app.domain.values import MarketFeatures, Signal, SignalType, SupportResistance
from app.features.regime import RANGING, TRENDING_UP

MOMENTUM = ("rsi", "macd_hist", "ema_21")  # the 15m indicators an entry's momentum check reads


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """The strategy's knobs (defaults tuned on 2025 BTC/ETH data, see benchmarks/approvals_per_day.py)."""

    trend_adx: float = TREND_ADX  # the regime's own threshold: a trending-up regime already has ADX above it
    trend_min_confluence: float = 60.0
    range_min_confluence: float = 75.0
    rsi_low: float = 45.0
    rsi_high: float = 70.0
    support_proximity_pct: float = 1.0  # a ranging entry needs a support at most this far below the price
    default_stop_pct: Decimal = Decimal("1.5")
    default_target_pct: Decimal = Decimal("3")


@dataclass(frozen=True, slots=True)
class Setup:
    """A confirmed entry setup and its raw quality score (on its kind's own scale; the confidence is its rank)."""

    kind: SetupKind
    score: float


class RuleBasedAnalyzer:
    """SignalProvider over MarketFeatures; never raises (any error becomes hold with the reason).

    A BUY's confidence is the setup's rank on `scale`: confidence C means its raw score beats (C - 50) / 45 of the
    setups of its kind seen on the calibration span (app/analysts/rule_confidence_table.py), so the risk manager's
    threshold admits the better-scored part of the setups, not all of them."""

    name = "rules"

    def __init__(self, settings: RuleSettings | None = None, scale: ConfidenceScale = RULE_CONFIDENCE) -> None:
        self._s = settings or RuleSettings()
        self._scale = scale

    async def analyze(self, features: MarketFeatures) -> Signal:
        return self.decide(features)

    def decide(self, features: MarketFeatures) -> Signal:
        """The synchronous core, for backtests that need no event loop."""
        try:
            return self._decide(features)
        except Exception as error:  # untrusted input must degrade to "do nothing", never crash the loop
            return Signal.hold(f"rules analyzer error: {type(error).__name__}: {error}")

    def setup_of(self, features: MarketFeatures) -> Setup | None:
        """The confirmed setup with its raw score, or None (a hold): what the calibration ranks."""
        verdict = self._judge(features)
        return verdict if isinstance(verdict, Setup) else None

    @staticmethod
    def view(features: MarketFeatures) -> MarketFeatures:
        """The part of the features these rules read, for any settings (`decide(view(f)) == decide(f)`): the price,
        regime and confluence, the 15m RSI, MACD histogram and EMA21, and the nearest support and resistance. A study
        keeps it per cycle and asks the rules of each trial's settings again without rebuilding the features."""
        m15 = features.indicators.get("15m", {})
        nearest = tuple(level for level in (_nearest(features.levels, "support"),
                                            _nearest(features.levels, "resistance")) if level is not None)
        return MarketFeatures(features.symbol, features.time, features.last_price,
                              {"15m": {k: m15[k] for k in MOMENTUM if k in m15}}, features.regime,
                              tuple(sorted(nearest, key=features.levels.index)), features.confluence)

    @staticmethod
    def could_buy(features: MarketFeatures) -> bool:
        """False when no settings could make these features a buy: the checks of `_judge` that no RuleSettings
        field moves (a usable price, a trending-up or tradable ranging regime, complete 15m momentum pointing up)."""
        m15 = features.indicators.get("15m", {})
        regime = features.regime
        return (features.last_price > 0 and (regime.regime == TRENDING_UP or (regime.regime == RANGING
                                                                               and regime.trading_allowed))
                and all(k in m15 for k in MOMENTUM) and m15["macd_hist"] > 0
                and float(features.last_price) > m15["ema_21"])

    def _decide(self, f: MarketFeatures) -> Signal:
        verdict = self._judge(f)
        return Signal.hold(verdict) if isinstance(verdict, str) else self._buy(f, verdict)

    def _judge(self, f: MarketFeatures) -> Setup | str:
        """The setup, or why there is none."""
        if f.last_price <= 0:
            return "no usable last price"
        m15 = f.indicators.get("15m", {})
        if f.regime.regime == TRENDING_UP:
            kind, problems = SetupKind.TREND, self._trend_problems(f)
        elif f.regime.regime == RANGING and f.regime.trading_allowed:
            kind, problems = SetupKind.RANGE, self._range_problems(f)
        else:
            return f"no long entry in a {f.regime.regime} market: {f.regime.reason}"
        problems += self._momentum_problems(m15, float(f.last_price))
        if problems:
            return f"{kind} setup not confirmed: " + "; ".join(problems)
        score = self._trend_score(f) if kind == SetupKind.TREND else self._range_score(f)
        return Setup(kind, score)

    def _trend_problems(self, f: MarketFeatures) -> list[str]:
        s, problems = self._s, []
        if f.regime.adx <= s.trend_adx:
            problems.append(f"1h ADX {f.regime.adx:.1f} not above {s.trend_adx:g}")
        if f.confluence < s.trend_min_confluence:
            problems.append(f"confluence {f.confluence:.1f} below {s.trend_min_confluence:g}")
        return problems

    def _range_problems(self, f: MarketFeatures) -> list[str]:
        s, problems = self._s, []
        if f.confluence < s.range_min_confluence:
            problems.append(f"confluence {f.confluence:.1f} below {s.range_min_confluence:g} for a ranging market")
        support = _nearest(f.levels, "support")
        price = float(f.last_price)
        if support is None or (price - support.price) / price * 100 > s.support_proximity_pct:
            problems.append(f"no support within {s.support_proximity_pct:g}% below the price")
        return problems

    def _momentum_problems(self, m15: Mapping[str, float], price: float) -> list[str]:
        s, problems = self._s, []
        if not all(k in m15 for k in MOMENTUM):
            return ["15m indicators incomplete"]
        if not s.rsi_low <= m15["rsi"] <= s.rsi_high:
            problems.append(f"15m RSI {m15['rsi']:.1f} outside {s.rsi_low:g}-{s.rsi_high:g}")
        if m15["macd_hist"] <= 0:
            problems.append(f"15m MACD histogram {m15['macd_hist']:.4g} not positive")
        if price <= m15["ema_21"]:
            problems.append(f"price {price:g} not above 15m EMA21 {m15['ema_21']:.6g}")
        return problems

    def _trend_score(self, f: MarketFeatures) -> float:
        adx_bonus = min(max(f.regime.adx - self._s.trend_adx, 0.0), 20.0) * 0.5
        return 50.0 + 0.35 * f.confluence + adx_bonus

    def _range_score(self, f: MarketFeatures) -> float:
        support = _nearest(f.levels, "support")
        strength = support.strength if support else 0.0
        return 45.0 + 0.3 * f.confluence + 10.0 * strength

    def _buy(self, f: MarketFeatures, setup: Setup) -> Signal:
        share = self._scale.share_below(setup.kind, setup.score)
        confidence = self._scale.confidence(setup.kind, setup.score)
        entry = f.last_price
        support, resistance = _nearest(f.levels, "support"), _nearest(f.levels, "resistance")
        stop = Decimal(repr(support.price)) if support else entry * (1 - self._s.default_stop_pct / 100)
        target = Decimal(repr(resistance.price)) if resistance else entry * (1 + self._s.default_target_pct / 100)
        reasoning = (f"{setup.kind} long: regime {f.regime.regime} (ADX {f.regime.adx:.1f}), "
                     f"confluence {f.confluence:.1f}, 15m momentum confirms; score {setup.score:.1f} beats "
                     f"{share:.0%} of the calibration's {setup.kind} setups")
        return Signal(SignalType.BUY, confidence, entry, stop, target, reasoning)


def _nearest(levels: tuple[SupportResistance, ...], kind: str) -> SupportResistance | None:
    """Levels come sorted by distance, so the first of a kind is the nearest."""
    return next((level for level in levels if level.kind == kind), None)
