"""Market regime: trending up, trending down, ranging or volatile, and whether a long entry is allowed."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from app.domain.profiles import TREND_ADX, AssetProfile, asset_profile
from app.domain.values import RegimeAnalysis
from app.indicators.technical import latest_indicators

TRENDING_UP = "trending_up"
TRENDING_DOWN = "trending_down"
RANGING = "ranging"
VOLATILE = "volatile"


class MarketRegimeAnalyzer:
    """Classifies one timeframe's candles (the engine uses 1h, with a 15m volatility check)."""

    def __init__(self, trend_adx: float = TREND_ADX) -> None:
        self._trend_adx = trend_adx

    def classify_market_regime(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray, symbol: str = ""
    ) -> RegimeAnalysis:
        """Regime from raw arrays; computes the few indicators it needs."""
        indicators = latest_indicators(close, high, low, close, np.zeros_like(close))
        return self.classify_from_indicators(indicators, symbol=symbol)

    def classify_from_indicators(
        self, primary: Mapping[str, float], symbol: str = "", confirm: Mapping[str, float] | None = None
    ) -> RegimeAnalysis:
        """Regime from already computed indicators of the primary timeframe (and an optional faster one,
        used only to catch a volatility spike the slower candles do not show yet)."""
        if "adx" not in primary or "atr_pct" not in primary:
            return RegimeAnalysis(RANGING, False, "not enough candles to judge the regime", 0.0, 0.0)
        profile = asset_profile(symbol)
        adx, atr_pct = primary["adx"], primary["atr_pct"]
        volatile = self._volatility_reason(primary, confirm, profile)
        if volatile:
            return RegimeAnalysis(VOLATILE, False, volatile, adx, atr_pct)
        return self._trend_or_range(primary, adx, atr_pct)

    @staticmethod
    def _volatility_reason(
        primary: Mapping[str, float], confirm: Mapping[str, float] | None, profile: AssetProfile
    ) -> str:
        atr_pct = primary["atr_pct"]
        if atr_pct > profile.volatile_atr_pct:
            return f"volatile: ATR {atr_pct:.2f}% above {profile.volatile_atr_pct}% for {profile.asset}"
        width = primary.get("bb_width", 0.0)
        if width > profile.volatile_bb_width_pct:
            return f"volatile: Bollinger width {width:.2f}% above {profile.volatile_bb_width_pct}%"
        # a 15m ATR at more than the 1h threshold means the last hour is far wilder than usual
        fast_atr = (confirm or {}).get("atr_pct", 0.0)
        if fast_atr > profile.volatile_atr_pct:
            return f"volatile: 15m ATR {fast_atr:.2f}% above {profile.volatile_atr_pct}%"
        return ""

    def _trend_or_range(self, ind: Mapping[str, float], adx: float, atr_pct: float) -> RegimeAnalysis:
        plus, minus = ind.get("plus_di", 0.0), ind.get("minus_di", 0.0)
        slope = ind.get("ema_21_slope_pct", 0.0)
        if adx > self._trend_adx and plus > minus and slope > 0:
            reason = (f"trending up: ADX {adx:.1f} > {self._trend_adx:.0f}, "
                      f"+DI {plus:.1f} > -DI {minus:.1f}, EMA21 rising")
            return RegimeAnalysis(TRENDING_UP, True, reason, adx, atr_pct)
        if adx > self._trend_adx and minus > plus and slope < 0:
            reason = (f"trending down: ADX {adx:.1f}, -DI {minus:.1f} > +DI {plus:.1f}, EMA21 falling; "
                      "long-only spot does not buy a downtrend")
            return RegimeAnalysis(TRENDING_DOWN, False, reason, adx, atr_pct)
        reason = f"ranging: ADX {adx:.1f} without a confirmed direction; confluence decides"
        return RegimeAnalysis(RANGING, True, reason, adx, atr_pct)
