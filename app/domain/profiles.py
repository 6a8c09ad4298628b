"""Per-asset risk profiles and the analysis constants the services share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

QUOTE_ASSETS = ("USDT", "USDC", "FDUSD", "BUSD", "BTC", "ETH")


@dataclass(frozen=True, slots=True)
class AssetProfile:
    """How one asset moves: the ATR multiple below support for stops, a buffer under resistance for targets,
    a stop-distance range inside the global one, and where 1h volatility becomes "too volatile to trade".

    Thresholds come from 2025 Binance data: `volatile_atr_pct` sits near the 95th percentile of the asset's
    1h ATR(14) in % of price and `volatile_bb_width_pct` near the 97th percentile of its 1h Bollinger width.
    """

    asset: str  # the base asset it was fitted on, or "default" for every other symbol
    atr_stop_multiplier: Decimal
    target_buffer_pct: Decimal
    min_stop_pct: Decimal
    max_stop_pct: Decimal
    volatile_atr_pct: float
    volatile_bb_width_pct: float


ASSET_PROFILES: dict[str, AssetProfile] = {
    "BTC": AssetProfile("BTC", Decimal("1.0"), Decimal("0.05"), Decimal("0.8"), Decimal("2.0"), 1.2, 7.0),
    "ETH": AssetProfile("ETH", Decimal("1.2"), Decimal("0.1"), Decimal("0.8"), Decimal("2.5"), 1.8, 11.0),
    "SOL": AssetProfile("SOL", Decimal("1.5"), Decimal("0.15"), Decimal("1.0"), Decimal("2.5"), 2.2, 13.0),
    "BNB": AssetProfile("BNB", Decimal("1.2"), Decimal("0.1"), Decimal("0.8"), Decimal("2.2"), 1.5, 8.0),
}
DEFAULT_PROFILE = AssetProfile("default", Decimal("1.5"), Decimal("0.15"), Decimal("0.8"), Decimal("2.5"), 2.0, 10.0)


def base_asset(symbol: str) -> str:
    """The base asset of a spot symbol such as BTCUSDT -> BTC (unknown quotes give the symbol itself)."""
    upper = symbol.upper()
    for quote in QUOTE_ASSETS:
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper[: -len(quote)]
    return upper


def asset_profile(symbol: str, profiles: Mapping[str, AssetProfile] | None = None) -> AssetProfile:
    """The symbol's profile from `profiles` (base asset -> profile, "default" for the rest; a backtest's tuned
    set), else from the fitted ones."""
    if profiles is None:
        return ASSET_PROFILES.get(base_asset(symbol), DEFAULT_PROFILE)
    return profiles.get(base_asset(symbol)) or profiles.get(DEFAULT_PROFILE.asset) or DEFAULT_PROFILE


# Market regime (1h): a trend needs ADX above this, with +DI/-DI and the EMA21 slope agreeing.
TREND_ADX = 25.0
# Support/resistance: a swing pivot is the extreme of this many bars on each side.
PIVOT_WINDOW = 5
# Confluence weights (sum 100): trend alignment, momentum agreement, 1h trend strength.
CONFLUENCE_TREND_WEIGHT = 40.0
CONFLUENCE_MOMENTUM_WEIGHT = 35.0
CONFLUENCE_STRENGTH_WEIGHT = 25.0
# How much each timeframe counts in the alignment and momentum factors (sum 1).
TIMEFRAME_WEIGHTS = {"1h": 0.5, "15m": 0.3, "5m": 0.2}
