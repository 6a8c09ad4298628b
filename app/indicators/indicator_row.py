"""A batch result row: which column holds which indicator, and a row back to latest_indicators' dict."""

from __future__ import annotations

import numpy as np

# Every key latest_indicators can produce, in the order it inserts them.
INDICATOR_NAMES: tuple[str, ...] = (
    "close", "open", "volume", "adx", "plus_di", "minus_di", "ema_9", "ema_21", "ema_21_slope_pct", "ema_50",
    "ema_200", "rsi", "macd", "macd_signal", "macd_hist", "stoch_k", "stoch_d", "atr", "atr_pct", "bb_upper",
    "bb_middle", "bb_lower", "bb_pct_b", "bb_width", "obv",
)
COLUMN = {name: i for i, name in enumerate(INDICATOR_NAMES)}


def row_to_dict(row: np.ndarray) -> dict[str, float]:
    """The latest_indicators dict of one result row (whose non-finite values are all NaN): the other values, in
    INDICATOR_NAMES order."""
    return {name: value for name, value in zip(INDICATOR_NAMES, row.tolist(), strict=True) if value == value}
