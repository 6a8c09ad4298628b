"""The seed's path for `app.domain.profiles` (see docs/architecture.md): a thin public entry module that re-exports it."""

from app.domain.profiles import (
    ASSET_PROFILES,
    CONFLUENCE_MOMENTUM_WEIGHT,
    CONFLUENCE_STRENGTH_WEIGHT,
    CONFLUENCE_TREND_WEIGHT,
    DEFAULT_PROFILE,
    PIVOT_WINDOW,
    QUOTE_ASSETS,
    TIMEFRAME_WEIGHTS,
    TREND_ADX,
    AssetProfile,
    asset_profile,
    base_asset,
)

__all__ = [
    "ASSET_PROFILES",
    "CONFLUENCE_MOMENTUM_WEIGHT",
    "CONFLUENCE_STRENGTH_WEIGHT",
    "CONFLUENCE_TREND_WEIGHT",
    "DEFAULT_PROFILE",
    "PIVOT_WINDOW",
    "QUOTE_ASSETS",
    "TIMEFRAME_WEIGHTS",
    "TREND_ADX",
    "AssetProfile",
    "asset_profile",
    "base_asset",
]
