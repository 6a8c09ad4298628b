"""Symbol rules: the one parser of Binance's `exchangeInfo` JSON, the file kept beside the candles, and rules
inferred from candles for a symbol that has neither.

Every venue reads its rules through here: the live client from the exchange's answer, the paper venue, the
backtest and `trdbot exchange-sim` from `exchange_info.json` in the data directory (Binance's own shape, as
`trdbot data download` writes it), or, failing that, from the candles themselves.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from app.domain.errors import DataError
from app.domain.profiles import QUOTE_ASSETS, base_asset
from app.domain.values import ZERO, PercentPrice, RulesSource, SymbolRules, Timeframe, canonical
from app.marketdata.candles import CandleStore

log = logging.getLogger(__name__)

EXCHANGE_INFO_FILE = "exchange_info.json"
# Inferred rules are deliberately on the safe side of Binance's usual ones: a minimum notional twice Binance's
# usual 5 USDT, and a quantity step (a power of ten, at most 1) worth at least 1 USDT at the highest price seen
# (Binance's steps are worth 0.1 to 1 USDT), so a quantity on the inferred grid is on the real one too.
INFERRED_MIN_NOTIONAL = Decimal("10")
INFERRED_STEP_VALUE = 1.0
INFERRED_MAX_QTY = Decimal("9000000")
_SAMPLE_CANDLES = 2000  # the last candles whose prices the tick is read from


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ExchangeFilter(_Model):
    filter_type: str
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    tick_size: Decimal | None = None
    min_qty: Decimal | None = None
    max_qty: Decimal | None = None
    step_size: Decimal | None = None
    min_notional: Decimal | None = None
    multiplier_up: Decimal | None = None
    multiplier_down: Decimal | None = None
    bid_multiplier_up: Decimal | None = None
    bid_multiplier_down: Decimal | None = None
    ask_multiplier_up: Decimal | None = None
    ask_multiplier_down: Decimal | None = None
    avg_price_mins: int | None = None


class ExchangeSymbol(_Model):
    symbol: str
    status: str = "TRADING"
    base_asset: str
    quote_asset: str
    is_spot_trading_allowed: bool | None = None
    permissions: list[str] = []
    permission_sets: list[list[str]] = []
    filters: list[ExchangeFilter] = []

    def filter(self, filter_type: str) -> ExchangeFilter | None:
        return next((f for f in self.filters if f.filter_type == filter_type), None)

    @property
    def spot_allowed(self) -> bool:
        """isSpotTradingAllowed when given; else a SPOT permission when any permission is listed."""
        if self.is_spot_trading_allowed is not None:
            return self.is_spot_trading_allowed
        listed = [*self.permissions, *(p for group in self.permission_sets for p in group)]
        return not listed or "SPOT" in listed


class ExchangeInfo(_Model):
    server_time: int | None = None
    symbols: list[ExchangeSymbol] = []


def _positive(values: Iterable[Decimal | None]) -> list[Decimal]:
    return [canonical(v) for v in values if v is not None and v > 0]


def _plain(value: Decimal | None) -> Decimal:
    """Binance writes "0.00100000": the value without its padding (so a quantity on that step reads 0.001)."""
    return canonical(value) if value else ZERO


def rules_from_symbol(raw: ExchangeSymbol, source: RulesSource = RulesSource.EXCHANGE) -> SymbolRules:
    """PRICE_FILTER, LOT_SIZE merged with MARKET_LOT_SIZE (the stricter bound wins), NOTIONAL or MIN_NOTIONAL,
    PERCENT_PRICE_BY_SIDE or PERCENT_PRICE, the status and the spot permission."""
    price = raw.filter("PRICE_FILTER")
    lots = [f for f in (raw.filter("LOT_SIZE"), raw.filter("MARKET_LOT_SIZE")) if f is not None]
    notional = raw.filter("NOTIONAL") or raw.filter("MIN_NOTIONAL")
    steps = _positive(f.step_size for f in lots)
    if price is None or not price.tick_size or not steps:
        raise ValueError(f"{raw.symbol}: exchangeInfo lacks PRICE_FILTER tickSize or LOT_SIZE stepSize")
    max_qtys = _positive(f.max_qty for f in lots)
    return SymbolRules(
        symbol=raw.symbol,
        base_asset=raw.base_asset,
        quote_asset=raw.quote_asset,
        tick_size=_plain(price.tick_size),
        step_size=max(steps),  # steps are powers of ten, so the coarser one is on both grids
        min_qty=max([_plain(f.min_qty) for f in lots]),
        max_qty=min(max_qtys) if max_qtys else ZERO,
        min_notional=_plain(notional.min_notional) if notional else ZERO,
        min_price=_plain(price.min_price),
        max_price=_plain(price.max_price),
        status=raw.status,
        spot_allowed=raw.spot_allowed,
        percent_price=_percent_price(raw),
        source=source,
    )


def _percent_price(raw: ExchangeSymbol) -> PercentPrice | None:
    by_side = raw.filter("PERCENT_PRICE_BY_SIDE")
    if by_side is not None and by_side.bid_multiplier_up and by_side.ask_multiplier_up:
        return PercentPrice(_plain(by_side.bid_multiplier_up), _plain(by_side.bid_multiplier_down),
                            _plain(by_side.ask_multiplier_up), _plain(by_side.ask_multiplier_down),
                            by_side.avg_price_mins or 0)
    plain = raw.filter("PERCENT_PRICE")
    if plain is not None and plain.multiplier_up:
        up, down = _plain(plain.multiplier_up), _plain(plain.multiplier_down)
        return PercentPrice(up, down, up, down, plain.avg_price_mins or 0)
    return None


def parse_exchange_info(data: Any, source: RulesSource = RulesSource.EXCHANGE,
                        origin: str = "exchangeInfo") -> dict[str, SymbolRules]:
    """Every symbol's rules in an exchangeInfo answer; a malformed answer or symbol is a DataError naming it."""
    try:
        info = ExchangeInfo.model_validate(data)
    except ValidationError as e:
        raise DataError(f"{origin}: not an exchangeInfo answer: {e.errors()[0]['msg']} at "
                        f"{'.'.join(str(p) for p in e.errors()[0]['loc'])}") from e
    rules: dict[str, SymbolRules] = {}
    for raw in info.symbols:
        try:
            rules[raw.symbol] = rules_from_symbol(raw, source)
        except ValueError as e:
            raise DataError(f"{origin}: {e}") from e
    return rules


def read_exchange_info(path: Path) -> dict[str, SymbolRules]:
    """The rules in an `exchange_info.json` file; a bad file is a DataError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno}: not JSON: {e.msg}") from e
    return parse_exchange_info(data, RulesSource.FILE, str(path))


def infer_rules(candles: CandleStore, symbol: str) -> SymbolRules:
    """Rules for a symbol that has candles and no stored rules: the tick is the finest price increment among its
    last candles; the step and minimum notional are conservative (see INFERRED_MIN_NOTIONAL)."""
    base = base_asset(symbol)
    if base == symbol:
        raise DataError(f"{symbol}: its quote asset is none of {', '.join(QUOTE_ASSETS)}, so no rules can be inferred")
    end = candles.span(symbol)[1]
    sample = candles.closed_candles(symbol, Timeframe.M5, end, _SAMPLE_CANDLES)
    prices = [p for c in sample for p in (c.open, c.high, c.low, c.close)]
    if not prices:
        raise DataError(f"{symbol}: no 5m candles to infer its rules from")
    decimals = max(-min(p.normalize().as_tuple().exponent, 0) for p in prices)  # type: ignore[operator]
    highest = float(candles.arrays_between(symbol, Timeframe.M5, 0, 2**62).high.max())
    step_exponent = math.ceil(math.log10(INFERRED_STEP_VALUE / highest)) if highest > 0 else 0
    tick = Decimal(1).scaleb(-decimals)
    step = Decimal(1).scaleb(min(step_exponent, 0))
    return SymbolRules(
        symbol=symbol, base_asset=base, quote_asset=symbol[len(base):],
        tick_size=tick, step_size=step, min_qty=step, max_qty=INFERRED_MAX_QTY,
        min_notional=INFERRED_MIN_NOTIONAL, min_price=tick, max_price=ZERO, source=RulesSource.INFERRED,
    )


def rules_for_candles(candles: CandleStore, directory: Path | None) -> dict[str, SymbolRules]:
    """Rules for every symbol with candles: from `exchange_info.json` in `directory` when it lists the symbol,
    else inferred from its candles (logged, so nobody mistakes a guess for the exchange's word)."""
    stored: Mapping[str, SymbolRules] = {}
    if directory is not None and (directory / EXCHANGE_INFO_FILE).is_file():
        stored = read_exchange_info(directory / EXCHANGE_INFO_FILE)
    rules: dict[str, SymbolRules] = {}
    inferred = []
    for symbol in candles.symbols():
        found = stored.get(symbol)
        if found is None:
            try:
                found = infer_rules(candles, symbol)
            except DataError as e:
                log.warning("%s: not tradable here: %s", symbol, e)
                continue
            inferred.append(symbol)
        rules[symbol] = found
    said = (", ".join(inferred), str(directory))
    if inferred and said not in _said_inferred:  # once per process (an optimisation builds a market per trial)
        _said_inferred.add(said)
        log.warning("no stored exchange rules for %s in %s: rules inferred from their candles (tick from the "
                    "prices seen, step and minimum notional conservative); `trdbot data download` stores the "
                    "exchange's own", *said)
    return rules


_said_inferred: set[tuple[str, str]] = set()
