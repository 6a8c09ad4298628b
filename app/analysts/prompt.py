"""The versioned multi-timeframe day-trading prompt: same features in, same text (and hash) out."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from app.domain.clock import utc_from_ms
from app.domain.values import Candle, MarketFeatures, RegimeAnalysis, SupportResistance, format_decimal

PROMPT_VERSION = "mtf-v1"

# Highest timeframe first: trend, then setup, then timing (the seed's roles for 1h / 15m / 5m).
TIMEFRAME_ROLES = (
    ("1h", "overall trend direction and momentum"),
    ("15m", "primary entry signals and trade setup"),
    ("5m", "precise entry timing"),
)
DEFAULT_MAX_CANDLES = 12

INDICATOR_LEGEND = (
    "Indicator names: rsi = RSI; macd, macd_signal, macd_hist = MACD; adx, plus_di, minus_di = ADX and DI; "
    "atr = ATR in price units; bb_upper, bb_middle, bb_lower, bb_pct_b, bb_width = Bollinger Bands; "
    "stoch_k, stoch_d = Stochastic; obv = On-Balance Volume; ema_N = N-period EMA."
)

INSTRUCTIONS = """\
You are a disciplined crypto day trader on a SPOT exchange. Judge only the current market structure above.
Rules:
- Favour trending markets with ADX > 25 and the timeframes aligned; trade with the 1h trend.
- Trade a range-bound market only when the confluence score is high (70 or more) and price sits at a level.
- When the regime says trading is not allowed, answer "hold".
- A trade needs at least 1:1.5 reward:risk: (take_profit - entry_price) >= 1.5 * (entry_price - stop_loss).
- Place the stop beyond a support level or about 1-1.5 ATR below the entry; the target before the next resistance.
- Quality over quantity: expect 1 to 5 trades a day; when in doubt, "hold".
- Spot is long-only: "buy" opens a long; "sell" means do not hold a long here (no short is opened).
- entry_price must be close to the last price (a market entry now)."""

ANSWER_FORMAT = """\
Answer with one JSON object and nothing else:
{"signal": "buy" | "sell" | "hold",
 "confidence": integer 0-100,
 "entry_price": number or null,
 "stop_loss": number or null (below entry_price for a buy),
 "take_profit": number or null (above entry_price for a buy),
 "reasoning": short string naming the deciding indicators}"""


def build_mtf_prompt(features: MarketFeatures, max_candles: int = DEFAULT_MAX_CANDLES) -> str:
    """The whole prompt for one symbol at one cycle; no user data, only market features."""
    sections = [
        _header(features),
        _regime_section(features.regime),
        _levels_section(features.levels),
        INDICATOR_LEGEND,
        *(_timeframe_section(features, tf, role, max_candles) for tf, role in _timeframes(features)),
        INSTRUCTIONS,
        ANSWER_FORMAT,
    ]
    return "\n\n".join(sections) + "\n"


def prompt_hash(prompt: str) -> str:
    """The replay key: sha256 of the exact prompt text."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def format_number(value: float) -> str:
    """About 8 significant digits in plain notation, so the text is stable and readable for any price scale."""
    if not math.isfinite(value):
        return "n/a"
    magnitude = math.floor(math.log10(abs(value))) + 1 if value else 1
    decimals = min(10, max(0, 8 - magnitude))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _header(features: MarketFeatures) -> str:
    return (
        f"Market snapshot for {features.symbol} at {features.time.isoformat()}\n"
        f"Last price: {format_decimal(features.last_price)}\n"
        f"Timeframe confluence score (0-100, higher = timeframes agree): {format_number(features.confluence)}"
    )


def _regime_section(regime: RegimeAnalysis) -> str:
    allowed = "yes" if regime.trading_allowed else "no"
    return (
        f"Market regime: {regime.regime} (trading allowed: {allowed})\n"
        f"Reason: {regime.reason}\n"
        f"ADX: {format_number(regime.adx)}, ATR as % of price: {format_number(regime.atr_pct)}"
    )


def _levels_section(levels: Iterable[SupportResistance]) -> str:
    lines = [
        f"- {lv.kind} {format_number(lv.price)} (touches {lv.touches}, strength {format_number(lv.strength)})"
        for lv in sorted(levels, key=lambda lv: (lv.price, lv.kind))
    ]
    return "Support/resistance levels:\n" + ("\n".join(lines) if lines else "- none detected")


def _timeframes(features: MarketFeatures) -> list[tuple[str, str]]:
    """The seed's three timeframes in fixed order, then any extra one the features hold, sorted."""
    known = [(tf, role) for tf, role in TIMEFRAME_ROLES if tf in features.indicators or tf in features.recent]
    seen = {tf for tf, _ in TIMEFRAME_ROLES}
    extra = sorted((set(features.indicators) | set(features.recent)) - seen)
    return known + [(tf, "additional context") for tf in extra]


def _timeframe_section(features: MarketFeatures, timeframe: str, role: str, max_candles: int) -> str:
    indicators = features.indicators.get(timeframe, {})
    indicator_text = ", ".join(f"{name}={format_number(indicators[name])}" for name in sorted(indicators))
    candles = features.recent.get(timeframe, ())[-max_candles:] if max_candles > 0 else ()
    return (
        f"=== {timeframe} timeframe ({role}) ===\n"
        f"Indicators: {indicator_text or 'none'}\n"
        f"Recent closed candles, oldest first (open time UTC, open, high, low, close, volume):\n"
        + ("\n".join(_candle_line(c) for c in candles) if candles else "none")
    )


def _candle_line(candle: Candle) -> str:
    when = utc_from_ms(candle.open_time_ms).strftime("%Y-%m-%d %H:%M")
    values = (candle.open, candle.high, candle.low, candle.close, candle.volume)
    return f"{when} " + " ".join(format_decimal(v) for v in values)
