"""Symbol rules from exchangeInfo (one parser), from the file beside the candles, or inferred from the candles;
which pairs may be chosen; the halted pair that takes no entries; the asset profile in the decision log."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from app.config import BUNDLED_DATA_DIR
from app.domain.errors import ConfigurationError, DataError
from app.domain.symbols import Selection, selection_problems, top_symbols
from app.domain.values import PercentPrice, RulesSource, SymbolRules
from app.marketdata.candles import CandleStore
from app.marketdata.exchange_info import (
    EXCHANGE_INFO_FILE,
    infer_rules,
    parse_exchange_info,
    read_exchange_info,
    rules_for_candles,
)
from app.risk.rules import RiskRules
from app.venues.paper.market import SimulatedMarket
from tests.bundled import bundled_rules

HALTED = {
    "symbol": "LUNAUSDT", "status": "BREAK", "baseAsset": "LUNA", "quoteAsset": "USDT",
    "isSpotTradingAllowed": True,
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.00010000", "maxPrice": "1000.00000000", "tickSize": "0.00010000"},
        {"filterType": "LOT_SIZE", "minQty": "0.01000000", "maxQty": "900000.00000000", "stepSize": "0.01000000"},
        {"filterType": "PERCENT_PRICE", "multiplierUp": "5", "multiplierDown": "0.2", "avgPriceMins": 5},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True, "avgPriceMins": 5},
    ],
    "permissionSets": [["SPOT"]],
}
MARGIN_ONLY = {**HALTED, "symbol": "ABCUSDT", "status": "TRADING", "isSpotTradingAllowed": False}
ETH_BTC = {**HALTED, "symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "BTC"}


def real_candles(directory: Path, symbol: str, source: str = "BNBUSDT", rows: int = 3000) -> None:
    """Real Binance candles (the bundled sample's) saved under another symbol's name: a pair with candles and no
    stored rules."""
    lines = gzip.decompress((BUNDLED_DATA_DIR / f"binance_{source}_5m.csv.gz").read_bytes()).decode().splitlines()
    (directory / f"binance_{symbol}_5m.csv").write_text("\n".join(lines[: rows + 1]) + "\n")


# ----- the parser ------------------------------------------------------------------------------------------------


def test_the_bundled_file_holds_binances_rules_for_its_four_symbols() -> None:
    rules = bundled_rules()
    assert sorted(rules) == ["BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT"]
    btc = rules["BTCUSDT"]
    assert (btc.tick_size, btc.step_size, btc.min_qty, btc.min_notional) == (D("0.01"), D("0.00001"), D("0.00001"),
                                                                             D("5"))
    assert str(btc.step_size) == "0.00001"  # Binance's "0.00001000" without its padding: quantities read 0.001
    assert btc.percent_price == PercentPrice(D(5), D("0.2"), D(5), D("0.2"), 5)
    assert all(r.source is RulesSource.FILE and r.entry_problem() is None for r in rules.values())


def test_status_permission_and_the_older_filters_are_read() -> None:
    rules = parse_exchange_info({"symbols": [HALTED, MARGIN_ONLY, ETH_BTC]})
    luna = rules["LUNAUSDT"]
    assert luna.status == "BREAK" and luna.entry_problem() == "LUNAUSDT is BREAK on the exchange, not TRADING"
    assert luna.min_notional == D("10") and luna.tick_size == D("0.0001")
    assert luna.percent_price == PercentPrice(D(5), D("0.2"), D(5), D("0.2"), 5)
    assert rules["ABCUSDT"].entry_problem() == "ABCUSDT is not open to spot trading"
    assert rules["ETHBTC"].quote_asset == "BTC"


@pytest.mark.parametrize(("data", "expected"), [
    ({"symbols": "nope"}, "not an exchangeInfo answer"),
    ({"symbols": [{"symbol": "X", "baseAsset": "X", "quoteAsset": "USDT", "filters": []}]}, "X: exchangeInfo lacks"),
])
def test_a_malformed_answer_is_an_error_naming_it(data: object, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        parse_exchange_info(data, origin="somewhere.json")


def test_a_bad_rules_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / EXCHANGE_INFO_FILE).write_text('{"symbols": [\n  {"symbol": "BTCUSDT",,}\n]}\n')
    with pytest.raises(DataError, match=r"exchange_info.json: line 2: not JSON"):
        read_exchange_info(tmp_path / EXCHANGE_INFO_FILE)


# ----- inferred rules ----------------------------------------------------------------------------------------------


def test_rules_are_inferred_from_candles_when_none_are_stored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    real_candles(tmp_path, "XRPUSDT", source="BNBUSDT")  # BNB in early September 2025: two decimals, under 1,000
    rules = rules_for_candles(CandleStore.load(tmp_path), tmp_path)["XRPUSDT"]
    assert rules.source is RulesSource.INFERRED
    assert (rules.base_asset, rules.quote_asset) == ("XRP", "USDT")
    assert rules.tick_size == D("0.01")  # the finest increment among the prices
    assert rules.step_size == D("0.01") and rules.min_qty == D("0.01")  # a step worth >= 1 USDT at the top price
    assert rules.min_notional == D("10")  # twice Binance's usual minimum
    assert "rules inferred from their candles" in caplog.text and "XRPUSDT" in caplog.text


def test_inferred_steps_are_never_finer_than_binances_own(tmp_path: Path) -> None:
    """Binance's steps are powers of ten, so a coarser inferred step keeps every quantity on the real grid."""
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"):
        shutil.copy(BUNDLED_DATA_DIR / f"binance_{symbol}_5m.csv.gz", tmp_path)
    candles = CandleStore.load(tmp_path)
    for symbol, real in bundled_rules().items():
        inferred = infer_rules(candles, symbol)
        assert inferred.step_size >= real.step_size and inferred.step_size % real.step_size == 0, symbol
        assert inferred.tick_size == real.tick_size, symbol
        assert inferred.min_notional >= real.min_notional, symbol


def test_stored_rules_win_over_inferred_ones(tmp_path: Path) -> None:
    real_candles(tmp_path, "BNBUSDT")
    real_candles(tmp_path, "ADAUSDT", source="SOLUSDT")
    shutil.copy(BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE, tmp_path)
    market = SimulatedMarket(CandleStore.load(tmp_path))
    assert market.rules("BNBUSDT") == bundled_rules()["BNBUSDT"]
    assert market.rules("BNBUSDT").source is RulesSource.FILE
    assert market.rules("ADAUSDT").source is RulesSource.INFERRED
    assert sorted(market.all_rules()) == ["ADAUSDT", "BNBUSDT"]  # BTC's stored rules, but no candles: not traded


def test_the_paper_market_says_what_a_symbol_lacks(tmp_path: Path) -> None:
    real_candles(tmp_path, "XYZ")  # no quote asset we know: no rules can be inferred
    market = SimulatedMarket(CandleStore.load(tmp_path))
    with pytest.raises(ConfigurationError, match="no rules for it"):
        market.rules("XYZ")
    with pytest.raises(ConfigurationError, match="no candles for it"):
        market.rules("XRPUSDT")


# ----- choosing pairs ----------------------------------------------------------------------------------------------


def listing(*symbols: str, quote: str = "USDT") -> dict[str, SymbolRules]:
    return {s: SymbolRules(s, s[: -len(quote)], quote, D("0.01"), D("0.001"), D("0.001"), D(1000), D(5))
            for s in symbols}


def test_unknown_symbols_are_named_with_the_closest_matches() -> None:
    listed = {**listing("BTCUSDT", "ETHUSDT", "SOLUSDT"), **listing("ETHBTC", quote="BTC")}
    assert selection_problems(["BTCUSDT", "ETHUSTD", "ETHBTC", "top:3"], listed) == [
        "unknown symbol ETHUSTD; did you mean ETHUSDT?",
        "ETHBTC is quoted in BTC; only USDT pairs can be traded (sizing is in USDT)",
    ]
    assert selection_problems(["top:0", "top:5"], listed) == ["at most one top:N rule, got top:0, top:5",
                                                              "top:0: N must be between 1 and 50"]
    assert selection_problems(["QQQ"], listed) == ["unknown symbol QQQ"]


def test_top_n_skips_stablecoins_leveraged_tokens_halted_pairs_and_exclusions() -> None:
    listed = listing("USDCUSDT", "BTCUSDT", "BTCUPUSDT", "FDUSDUSDT", "ETHUSDT", "DOGEUSDT", "XRPUSDT")
    listed["ETHUSDT"] = SymbolRules("ETHUSDT", "ETH", "USDT", D("0.01"), D("0.001"), D("0.001"), D(1000), D(5),
                                    status="HALT")
    ranked = ["USDCUSDT", "BTCUSDT", "BTCUPUSDT", "FDUSDUSDT", "ETHUSDT", "DOGEUSDT", "NEWUSDT", "XRPUSDT"]
    assert top_symbols(ranked, listed, 2) == ("BTCUSDT", "DOGEUSDT")
    assert top_symbols(ranked, listed, 5, exclude=["DOGEUSDT"]) == ("BTCUSDT", "XRPUSDT")
    assert Selection.of(["BTCUSDT", "top:3", "BTCUSDT"]) == Selection(("BTCUSDT",), 3)


# ----- the engine's side -------------------------------------------------------------------------------------------


def test_a_pair_that_is_not_trading_takes_no_new_entries() -> None:
    halted = parse_exchange_info({"symbols": [HALTED]})["LUNAUSDT"]
    reason = RiskRules.check_symbol_trading(halted)
    assert reason is not None and reason.code == "symbol not trading"
    assert str(reason) == "no new entries: LUNAUSDT is BREAK on the exchange, not TRADING"
    assert RiskRules.check_symbol_trading(bundled_rules()["BTCUSDT"]) is None


def test_the_exchange_info_file_round_trips_through_the_simulators_answer() -> None:
    from app.venues.binance.protocol import exchange_info_json

    rules = bundled_rules()
    halted = parse_exchange_info({"symbols": [HALTED, MARGIN_ONLY]})
    served = exchange_info_json([*rules.values(), *halted.values()], server_time_ms=int(
        datetime(2025, 12, 1, tzinfo=UTC).timestamp() * 1000))
    again = parse_exchange_info(json.loads(json.dumps(served)))
    assert again == {**rules, **halted}
