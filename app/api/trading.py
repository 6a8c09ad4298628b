"""Start and stop trading, the config, trades, positions, manual close and the decision log."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import datetime, time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from app.api.deps import ContainerDep, CurrentUser, Uow
from app.api.errors import answers
from app.api.http_guards import CheckedJsonRoute
from app.api.schemas import (
    MAX_ID,
    ActiveAnswer,
    AnalysisPage,
    AnalysisPublic,
    ConfigPublic,
    OcoLegPublic,
    OrderPublic,
    PositionPublic,
    TradeDecisionPublic,
    TradeDetail,
    TradeFees,
    TradePage,
    TradePublic,
    TradingStatus,
)
from app.domain.errors import RuleViolation
from app.domain.events import STATUS_EVENT
from app.domain.records import AnalysisRecord, OrderRecord, Purpose, TradeRecord
from app.domain.risk import TradingConfig
from app.domain.symbols import TOP_RULE, normalised
from app.domain.values import OrderType, TradeStatus, oco_leg_client_ids
from app.user_config import ConfigUpdate

router = APIRouter(prefix="/trading", tags=["trading"], route_class=CheckedJsonRoute, responses=answers(401))
TradeId = Annotated[int, Path(ge=-MAX_ID, le=MAX_ID)]


def trade_public(trade: TradeRecord) -> TradePublic:
    return TradePublic(
        id=trade.id, symbol=trade.symbol, side=trade.side, amount=trade.amount, price=trade.price,
        status=trade.status.value, stop_loss=trade.stop_loss, take_profit=trade.take_profit,
        ai_signal_confidence=trade.ai_signal_confidence, executed_at=trade.executed_at, exit_price=trade.exit_price,
        exit_reason=trade.exit_reason.value if trade.exit_reason else None, profit_loss=trade.profit_loss,
        profit_loss_percentage=trade.profit_loss_percentage, fees=trade.fees,
        duration_seconds=trade.duration_seconds, closed_at=trade.closed_at,
    )


def config_public(config: TradingConfig) -> ConfigPublic:
    def hhmm(value: time | None) -> str | None:
        return value.strftime("%H:%M") if value else None

    return ConfigPublic(
        symbols=list(config.symbols), exclude_symbols=list(config.exclude_symbols),
        risk_per_trade_pct=config.risk_per_trade_pct,
        max_open_positions=config.max_open_positions, daily_trade_limit=config.daily_trade_limit,
        min_signal_confidence=config.min_signal_confidence, max_balance_trade_ratio=config.max_balance_trade_ratio,
        trading_hours_start=hhmm(config.trading_hours_start), trading_hours_end=hhmm(config.trading_hours_end),
        position_timeout_minutes=config.position_timeout_minutes, analyzer=config.analyzer,  # type: ignore[arg-type]
    )


def analysis_public(record: AnalysisRecord) -> AnalysisPublic:
    assert record.id is not None
    return AnalysisPublic(
        id=record.id, symbol=record.symbol, created_at=record.created_at, analyzer=record.analyzer,
        signal=record.signal, confidence=record.confidence, entry_price=record.entry_price,
        stop_loss=record.stop_loss, take_profit=record.take_profit, reasoning=record.reasoning,
        regime=record.regime, confluence_score=record.confluence_score, model=record.model, error=record.error,
        fallback_used=record.fallback_used, decision=record.decision.value if record.decision else None,
        reasons=list(record.reasons),
    )


async def _set_active(container: ContainerDep, uow: Uow, user_id: int, active: bool) -> ActiveAnswer:
    config = await uow.configs.get(user_id)
    await uow.configs.save(dataclasses.replace(config, is_active=active), container.clock.now())
    await uow.commit()
    await container.websockets.publish(user_id, STATUS_EVENT, container.market_clock.now(), {"is_active": active})
    return ActiveAnswer(is_active=active)


@router.post("/start", response_model=ActiveAnswer)
async def start(user: CurrentUser, container: ContainerDep, uow: Uow) -> ActiveAnswer:
    return await _set_active(container, uow, user.id, True)


@router.post("/stop", response_model=ActiveAnswer)
async def stop(user: CurrentUser, container: ContainerDep, uow: Uow) -> ActiveAnswer:
    return await _set_active(container, uow, user.id, False)


@router.get("/status", response_model=TradingStatus)
async def trading_status(user: CurrentUser, container: ContainerDep, uow: Uow) -> TradingStatus:
    config = await uow.configs.get(user.id)
    now = container.market_clock.now()
    day_start = datetime(now.year, now.month, now.day, tzinfo=now.tzinfo)
    return TradingStatus(
        is_active=config.is_active, mode=user.mode.value, state=container.engine_state.value,
        open_positions=len(await uow.positions.for_user(user.id)),
        trades_today=await uow.trades.entries_since(user.id, day_start), daily_trade_limit=config.daily_trade_limit,
        last_analysis_at=await uow.analyses.latest_time(), next_cycle_at=container.next_cycle_at(),
        analyzer=config.analyzer, analyst=container.analyst_status(config.analyzer),
    )


@router.get("/config", response_model=ConfigPublic)
async def get_config(user: CurrentUser, uow: Uow) -> ConfigPublic:
    return config_public(await uow.configs.get(user.id))


@router.put("/config", response_model=ConfigPublic, responses=answers(413, 422))
async def update_config(body: ConfigUpdate, user: CurrentUser, container: ContainerDep, uow: Uow) -> ConfigPublic:
    changes = body.model_dump(exclude_unset=True)
    for field in ("symbols", "exclude_symbols"):
        if field in changes:
            changes[field] = await _checked_symbols(container, field, changes[field])
    config = dataclasses.replace(await uow.configs.get(user.id), **changes)
    await uow.configs.save(config, container.clock.now())
    await uow.commit()
    return config_public(config)


async def _checked_symbols(container: ContainerDep, field: str, items: list[str]) -> tuple[str, ...]:
    """Upper-case symbols (and, in `symbols`, one `top:N` rule), each known and quoted in USDT, else a 422 naming
    every problem (with the closest known symbols)."""
    normal = normalised(items)
    problems = await container.symbol_problems(normal)
    if field == "exclude_symbols":
        problems += [f"{s}: a rule cannot be excluded" for s in normal if TOP_RULE.match(s)]
    if problems:
        raise RequestValidationError([{"type": "value_error", "loc": ("body", field), "input": items,
                                       "msg": "; ".join(problems)}])
    return normal


TRADE_PAGE = TypeAdapter(TradePage)


@router.get("/trades", response_model=TradePage)
async def list_trades(
    user: CurrentUser,
    container: ContainerDep,
    uow: Uow,
    status_: Annotated[TradeStatus | None, Query(alias="status")] = None,
    symbol: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> Response:
    """The page as JSON, made again only when the user's trades changed since (or BOOKS_CACHE_SECONDS passed):
    a trade list changes a few times a day and is asked for on every dashboard refresh."""
    status = status_.value if status_ else None
    key, fingerprint = (user.id, status, symbol, limit, offset), await uow.trades.fingerprint(user.id)
    body = container.trade_pages.get(key, fingerprint)
    if body is None:
        items, total = await uow.trades.page(user.id, status, symbol, limit, offset)
        body = TRADE_PAGE.dump_json(TradePage(items=[trade_public(t) for t in items], total=total))
        container.trade_pages.put(key, fingerprint, body)
    return Response(body, media_type="application/json")


CSV_COLUMNS = ("id", "symbol", "side", "status", "amount", "price", "stop_loss", "take_profit",
               "ai_signal_confidence", "executed_at", "exit_price", "exit_reason", "profit_loss",
               "profit_loss_percentage", "fees", "duration_seconds", "closed_at")
CSV_PAGE = 500  # trades read per unit of work while the export streams
TRADE_ROW = TypeAdapter(TradePublic)


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


async def _trade_rows(container: ContainerDep, user_id: int, status: str | None,
                      symbol: str | None) -> AsyncIterator[str]:
    """The header, then every matching trade page by page, each page in a unit of work of its own (no connection
    is held while the client reads)."""
    yield _csv_line(list(CSV_COLUMNS))
    after: tuple[datetime, int] | None = None
    while True:
        async with container.uow() as uow:
            page = await uow.trades.page_after(user_id, status, symbol, CSV_PAGE, after)
        for trade in page:
            row = TRADE_ROW.dump_python(trade_public(trade), mode="json")
            yield _csv_line(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
        if len(page) < CSV_PAGE:
            return
        after = (page[-1].executed_at, page[-1].id)


@router.get("/trades.csv", response_class=StreamingResponse, responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "every matching trade, newest first, with a header row"}, **answers(422)})
async def export_trades(
    user: CurrentUser,
    container: ContainerDep,
    status_: Annotated[TradeStatus | None, Query(alias="status")] = None,
    symbol: Annotated[str | None, Query(max_length=20)] = None,
) -> StreamingResponse:
    """All the user's trades (the filters of GET /trading/trades) as CSV, streamed; money as exact decimals."""
    rows = _trade_rows(container, user.id, status_.value if status_ else None, symbol)
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="trades.csv"'})


@router.get("/trades/{trade_id}", response_model=TradePublic, responses=answers(404))
async def get_trade(trade_id: TradeId, user: CurrentUser, uow: Uow) -> TradePublic:
    trade = await uow.trades.get(user.id, trade_id)
    if trade is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"trade {trade_id} not found")
    return trade_public(trade)


def order_public(order: OrderRecord, exits: dict[str, OrderRecord]) -> OrderPublic:
    filled = order.executed_qty > 0
    legs = []
    if order.type == OrderType.OCO:
        for leg_id, kind, price in zip(oco_leg_client_ids(order.client_order_id), ("take_profit", "stop_loss"),
                                       (order.price, order.stop_price), strict=True):
            leg = exits.get(leg_id)
            legs.append(OcoLegPublic(client_order_id=leg_id, kind=kind, price=price,  # type: ignore[arg-type]
                                     status=leg.status.value if leg else None))
    return OrderPublic(
        client_order_id=order.client_order_id, purpose=order.purpose.value, type=order.type.value,
        side=order.side.value, quantity=order.quantity, price=order.price, stop_price=order.stop_price,
        status=order.status.value, exchange_order_id=order.exchange_order_id, executed_qty=order.executed_qty,
        cumulative_quote_qty=order.cumulative_quote_qty,
        average_price=order.cumulative_quote_qty / order.executed_qty if filled else None,
        commission=order.commission, commission_asset=order.commission_asset, error=order.error,
        created_at=order.created_at, transact_time=order.transact_time, legs=legs,
    )


def decision_public(record: AnalysisRecord) -> TradeDecisionPublic:
    """The analysis that opened a trade: its public fields, the id named as the analysis's."""
    public = analysis_public(record)
    shared = public.model_dump(include=set(TradeDecisionPublic.model_fields) - {"analysis_id"})
    return TradeDecisionPublic(analysis_id=public.id, **shared)


@router.get("/trades/{trade_id}/detail", response_model=TradeDetail, responses=answers(404))
async def trade_detail(trade_id: TradeId, user: CurrentUser, container: ContainerDep, uow: Uow) -> TradeDetail:
    """The trade with its orders as recorded (entry, OCO lists and their legs, exits: fills and fees), the
    analysis that opened it with the user's decision, and its duration."""
    trade = await uow.trades.get(user.id, trade_id)
    if trade is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"trade {trade_id} not found")
    orders = await uow.orders.of_trade(trade.id)
    exits = {o.client_order_id: o for o in orders if o.purpose == Purpose.EXIT}
    analysis = await uow.analyses.decided(trade.analysis_id, user.id) if trade.analysis_id is not None else None
    ended = trade.closed_at or container.market_clock.now()
    return TradeDetail(
        trade=trade_public(trade), orders=[order_public(o, exits) for o in orders],
        fees=TradeFees(entry_fee=trade.entry_fee, exit_fee=trade.exit_fee, total=trade.fees),
        decision=decision_public(analysis) if analysis is not None else None,
        duration_seconds=trade.duration_seconds if trade.duration_seconds is not None
        else max(0, int((ended - trade.executed_at).total_seconds())),
    )


@router.get("/positions", response_model=list[PositionPublic], responses=answers(502, 503))
async def positions(user: CurrentUser, container: ContainerDep, uow: Uow) -> list[PositionPublic]:
    records = await uow.positions.for_user(user.id)
    prices = await container.current_prices(user, {p.symbol for p in records})
    answer = []
    for p in records:
        price = prices.get(p.symbol)
        answer.append(PositionPublic(
            trade_id=p.trade_id, symbol=p.symbol, amount=p.amount, entry_price=p.entry_price,
            stop_loss=p.stop_loss, take_profit=p.take_profit, oco_order_id=p.oco_order_id, opened_at=p.opened_at,
            current_price=price, unrealized_pnl=(price - p.entry_price) * p.amount if price is not None else None,
            closing_reason=p.closing_reason.value if p.closing_reason else None,
        ))
    return answer


@router.post("/close/{trade_id}", response_model=TradePublic, responses=answers(404, 409, 502, 503))
async def close_trade(trade_id: TradeId, user: CurrentUser, container: ContainerDep, uow: Uow) -> TradePublic:
    trade = await uow.trades.get(user.id, trade_id)
    if trade is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"trade {trade_id} not found")
    if trade.status != TradeStatus.FILLED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"trade {trade_id} is {trade.status.value}, not open")
    try:
        closed = await container.close_trade(uow, user, trade_id)
    except RuleViolation as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    return trade_public(closed)


@router.get("/analyses", response_model=AnalysisPage)
async def analyses(
    user: CurrentUser,
    uow: Uow,
    symbol: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AnalysisPage:
    records = await uow.analyses.for_user(user.id, symbol, limit)
    return AnalysisPage(items=[analysis_public(r) for r in records])

