"""Binance wire protocol: the reference signing example, server-side checks and exact JSON round trips."""

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.clock import utc_from_ms
from app.domain.values import (
    Balance,
    Candle,
    Fill,
    ListStatus,
    OcoOrder,
    Order,
    OrderStatus,
    OrderType,
    Side,
    SymbolRules,
    oco_leg_client_ids,
)
from app.venues.binance.models import (
    BinanceAccount,
    BinanceKline,
    BinanceOrder,
    BinanceOrderList,
    BinanceSymbol,
    BinanceTrade,
    balance_from_binance,
    candle_from_binance,
    oco_from_binance,
    order_from_binance,
    symbol_rules_from_binance,
)
from app.venues.binance.protocol import (
    ERROR_CODES,
    account_json,
    canceled_order_json,
    canceled_order_list_json,
    error_json,
    exchange_info_json,
    kline_json,
    my_trades_json,
    order_json,
    order_list_json,
    parse_params,
    queried_order_json,
    sign,
    signed_query,
    symbol_json,
    timestamp_error,
    verify_signature,
)

REF_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
REF_PAYLOAD = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)
REF_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
T = datetime(2025, 3, 1, 10, 15, 0, 123000, tzinfo=UTC)
RULES = SymbolRules("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"),
                    Decimal("9000"), Decimal("5"), Decimal("0.01"), Decimal("1000000"))


def test_sign_matches_the_reference_example() -> None:
    assert sign(REF_PAYLOAD, REF_SECRET) == REF_SIGNATURE


def test_signed_query_builds_the_reference_payload_in_order_with_signature_last() -> None:
    params = [("symbol", "LTCBTC"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "1"),
              ("price", "0.1"), ("recvWindow", "5000"), ("timestamp", "1499827319559")]
    assert signed_query(params, REF_SECRET) == f"{REF_PAYLOAD}&signature={REF_SIGNATURE}"


def test_verify_signature_accepts_query_body_split_and_upper_case_hex() -> None:
    query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    body = "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
    signature = sign(query + body, REF_SECRET)
    assert verify_signature(query, f"{body}&signature={signature.upper()}", REF_SECRET)
    assert verify_signature(f"{REF_PAYLOAD}&signature={REF_SIGNATURE}", "", REF_SECRET)


def test_verify_signature_rejects_tampering_a_wrong_secret_or_no_signature() -> None:
    assert not verify_signature(f"{REF_PAYLOAD.replace('quantity=1', 'quantity=2')}&signature={REF_SIGNATURE}", "",
                                REF_SECRET)
    assert not verify_signature(f"{REF_PAYLOAD}&signature={REF_SIGNATURE}", "", REF_SECRET + "x")
    assert not verify_signature(REF_PAYLOAD, "", REF_SECRET)


def test_parse_params_prefers_the_query_over_the_body() -> None:
    assert parse_params("symbol=BTCUSDT&side=BUY", "side=SELL&quantity=1") == {
        "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}


def test_timestamp_error_follows_the_server_rule() -> None:
    assert timestamp_error(10_000, 10_000, 5000) is None
    assert timestamp_error(5_000, 10_000, 5000) is None
    assert "recvWindow" in (timestamp_error(4_999, 10_000, 5000) or "")
    assert "ahead" in (timestamp_error(11_000, 10_000, 5000) or "")
    assert timestamp_error(10_999, 10_000, 5000) is None


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_error_json_gives_status_and_default_message_for_every_code(code: int) -> None:
    status, body = error_json(code)
    assert body["code"] == code and body["msg"]
    assert status in (400, 401, 429, 500, 503)


def test_error_json_statuses_that_clients_branch_on() -> None:
    assert error_json(-1003)[0] == 429
    assert error_json(-2015)[0] == 401
    assert error_json(-2010, "Account has insufficient balance for requested action.")[0] == 400
    assert error_json(-1013, "Filter failure: NOTIONAL")[1]["msg"] == "Filter failure: NOTIONAL"


# ---------------------------------------------------------------- round trips

decimals = st.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False, allow_infinity=False)
positive = st.decimals(min_value=Decimal("0.00000001"), max_value=10**9, places=8)
times = st.integers(min_value=0, max_value=4_000_000_000_000).map(utc_from_ms)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=36)
fills = st.builds(Fill, price=positive, qty=positive, commission=decimals,
                  commission_asset=st.sampled_from(["BTC", "USDT", "BNB"]),
                  trade_id=st.integers(min_value=0, max_value=2**53))
orders = st.builds(
    Order, symbol=st.sampled_from(["BTCUSDT", "ETHUSDT"]), order_id=st.integers(min_value=0, max_value=2**53),
    client_order_id=ids, side=st.sampled_from(Side), type=st.sampled_from(OrderType),
    status=st.sampled_from(OrderStatus), orig_qty=positive, executed_qty=decimals, cumulative_quote_qty=decimals,
    price=decimals, stop_price=st.none() | positive, fills=st.lists(fills, max_size=3).map(tuple),
    transact_time=st.none() | times, order_list_id=st.integers(min_value=-1, max_value=2**31),
)


@settings(max_examples=60, deadline=None)
@given(orders)
def test_order_json_round_trips_exactly(order: Order) -> None:
    assert order_from_binance(BinanceOrder.model_validate(order_json(order))) == order


@settings(max_examples=60, deadline=None)
@given(orders)
def test_queried_order_plus_my_trades_round_trips_exactly(order: Order) -> None:
    raw = BinanceOrder.model_validate(queried_order_json(order))
    assert order_from_binance(raw) == replace(order, fills=())
    trades = [BinanceTrade.model_validate(t) for t in my_trades_json(order)]
    assert order_from_binance(raw, trades) == order


@settings(max_examples=30, deadline=None)
@given(orders, ids)
def test_canceled_order_keeps_the_orders_client_id(order: Order, cancel_id: str) -> None:
    assert order_from_binance(BinanceOrder.model_validate(canceled_order_json(order, cancel_id))) == replace(
        order, fills=())


def _oco(status: ListStatus = ListStatus.EXECUTING) -> OcoOrder:
    tp_id, sl_id = oco_leg_client_ids("L1")
    common = {"symbol": "BTCUSDT", "side": Side.SELL, "orig_qty": Decimal("0.01"), "transact_time": T,
              "order_list_id": 7}
    tp = Order(order_id=11, client_order_id=tp_id, type=OrderType.LIMIT_MAKER, status=OrderStatus.FILLED,
               executed_qty=Decimal("0.01"), cumulative_quote_qty=Decimal("1050.5"), price=Decimal("105050"),
               fills=(Fill(Decimal("105050"), Decimal("0.01"), Decimal("1.0505"), "USDT", 9),), **common)
    sl = Order(order_id=10, client_order_id=sl_id, type=OrderType.STOP_LOSS_LIMIT, status=OrderStatus.EXPIRED,
               price=Decimal("97900"), stop_price=Decimal("98000"), **common)
    return OcoOrder("BTCUSDT", 7, "L1", status, (sl, tp), T)


def test_order_list_with_reports_round_trips_exactly() -> None:
    oco = _oco()
    assert oco_from_binance(BinanceOrderList.model_validate(order_list_json(oco, full=True))) == oco
    no_fills = replace(oco, legs=tuple(replace(leg, fills=()) for leg in oco.legs))
    assert oco_from_binance(BinanceOrderList.model_validate(order_list_json(oco))) == no_fills


def test_order_list_without_reports_takes_the_queried_legs() -> None:
    oco = _oco(ListStatus.ALL_DONE)
    body = order_list_json(oco, reports=False)
    assert "orderReports" not in body and body["listStatusType"] == "ALL_DONE"
    assert [e["clientOrderId"] for e in body["orders"]] == ["L1-sl", "L1-tp"]
    assert oco_from_binance(BinanceOrderList.model_validate(body), oco.legs) == oco


def test_canceled_order_list_round_trips_with_the_legs_ids() -> None:
    oco = _oco(ListStatus.ALL_DONE)
    canceled = replace(oco, legs=tuple(replace(leg, status=OrderStatus.CANCELED, fills=()) for leg in oco.legs))
    body = canceled_order_list_json(canceled, "cancel-1")
    assert {r["origClientOrderId"] for r in body["orderReports"]} == {"L1-tp", "L1-sl"}
    assert oco_from_binance(BinanceOrderList.model_validate(body)) == canceled


def test_symbol_rules_round_trip_through_exchange_info() -> None:
    info = exchange_info_json([RULES], server_time_ms=1)
    assert symbol_rules_from_binance(BinanceSymbol.model_validate(info["symbols"][0])) == RULES
    assert symbol_rules_from_binance(BinanceSymbol.model_validate(symbol_json(RULES))) == RULES


def test_symbol_rules_accept_min_notional_and_a_market_lot_size_without_step() -> None:
    raw = {
        "symbol": "ETHUSDT", "baseAsset": "ETH", "quoteAsset": "USDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000",
             "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00010000", "maxQty": "9000.00000000", "stepSize": "0.00010000"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "1500.5", "stepSize": "0.00000000"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True, "avgPriceMins": 5},
        ],
    }
    rules = symbol_rules_from_binance(BinanceSymbol.model_validate(raw))
    assert (rules.step_size, rules.min_qty, rules.max_qty) == (Decimal("0.0001"), Decimal("0.0001"), Decimal("1500.5"))
    assert (rules.tick_size, rules.min_notional) == (Decimal("0.01"), Decimal("10"))


def test_symbol_without_lot_size_is_refused() -> None:
    raw = {"symbol": "X", "baseAsset": "A", "quoteAsset": "B",
           "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01"}]}
    with pytest.raises(ValueError, match="stepSize"):
        symbol_rules_from_binance(BinanceSymbol.model_validate(raw))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000_000), positive, positive, positive, positive, decimals)
def test_kline_round_trips(open_ms: int, o: Decimal, h: Decimal, low: Decimal, c: Decimal, v: Decimal) -> None:
    candle = Candle(open_ms, o, h, low, c, v)
    raw = BinanceKline.model_validate(kline_json(candle, 300_000))
    assert candle_from_binance(raw) == candle
    assert raw.close_time == open_ms + 300_000 - 1


def test_account_round_trips_and_can_omit_zero_balances() -> None:
    balances = [Balance("USDT", Decimal("1234.5"), Decimal("10")), Balance("BTC", Decimal("0"), Decimal("0"))]
    parsed = BinanceAccount.model_validate(account_json(balances, 1))
    assert [balance_from_binance(b) for b in parsed.balances] == balances
    assert [b["asset"] for b in account_json(balances, 1, omit_zero=True)["balances"]] == ["USDT"]
