"""Retention: what the settings no longer keep is deleted in batches; what a trade or an order names stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from app.config import Settings
from app.container import Container
from app.domain.records import (
    AnalysisRecord,
    DecisionRecord,
    DecisionSpan,
    DecisionTally,
    EventRecord,
    OrderRecord,
    Purpose,
    RowStatus,
    TradeRecord,
)
from app.domain.values import Decision, OrderType, Side, TradeStatus
from app.engine.bot import TradingBot
from app.models import Analysis, AnalysisDecision, Event
from app.models import DecisionSpan as SpanRow
from app.models import DecisionTally as TallyRow
from app.repositories.retention import RetentionPolicy, RetentionPruner

NOW = datetime(2026, 3, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=100)


def _analysis(at: datetime) -> AnalysisRecord:
    return AnalysisRecord(symbol="BTCUSDT", created_at=at, analyzer="rules", signal="buy", confidence=70,
                          reasoning="r", regime="trending_up", confluence_score=Decimal("0.5"),
                          last_price=Decimal("60000"))


async def _seed(container: Container) -> tuple[int, dict[str, int]]:
    async with container.uow() as uow:
        user = await uow.users.add("kept", "kept@example.com", "hash", OLD)
        ids = {name: await uow.analyses.add(_analysis(OLD)) for name in ("traded", "ordered", "forgotten")}
        ids["recent"] = await uow.analyses.add(_analysis(NOW - timedelta(days=1)))
        trade = await uow.trades.add(TradeRecord(
            id=0, user_id=user.id, symbol="BTCUSDT", side="BUY", status=TradeStatus.CLOSED, amount=Decimal("0.001"),
            price=Decimal("60000"), stop_loss=Decimal("59000"), take_profit=Decimal("62000"), ai_signal_confidence=70,
            entry_client_order_id="e1", entry_fee=Decimal("0.06"), executed_at=OLD, analysis_id=ids["traded"],
        ))
        await uow.orders.add(OrderRecord(
            client_order_id="e2", user_id=user.id, purpose=Purpose.ENTRY, symbol="BTCUSDT", side=Side.BUY,
            type=OrderType.MARKET, quantity=Decimal("0.001"), status=RowStatus.REJECTED, analysis_id=ids["ordered"],
        ), OLD)
        await uow.analyses.add_decisions([
            DecisionRecord(ids["traded"], user.id, Decision.EXECUTED, (), OLD, trade.id),
            DecisionRecord(ids["traded"], user.id, Decision.SKIPPED, ("already holding BTCUSDT",), OLD),
            DecisionRecord(ids["forgotten"], user.id, Decision.REJECTED, ("confidence",), OLD),
            DecisionRecord(ids["recent"], user.id, Decision.REJECTED, ("confidence",), NOW - timedelta(days=1)),
        ])
        await uow.analyses.add_tallies([DecisionTally(i, Decision.SKIPPED, "hold", 10_000) for i in ids.values()])
        await uow.analyses.add_spans([
            DecisionSpan(user.id, "rules", ("BTCUSDT",), None, None, OLD, OLD + timedelta(days=1)),
            DecisionSpan(user.id, "rules", ("BTCUSDT",), None, None, OLD, NOW),
        ])
        await uow.events.add_many([EventRecord(user.id, "signal_rejected", at, {"n": n})
                                   for n, at in enumerate([OLD, OLD, NOW - timedelta(days=2)])])
        await uow.commit()
    return user.id, ids


async def test_pruning_keeps_what_is_named_and_recent(settings: Settings) -> None:
    container = Container(settings)
    _, ids = await _seed(container)
    pruner = RetentionPruner(container.uow, RetentionPolicy(analyses_days=90, decisions_days=90, events_days=30,
                                                            batch_rows=1))
    deleted = await pruner.prune(NOW)
    async with container.uow() as uow:
        analyses = set(await uow.session.scalars(select(Analysis.id)))
        decisions = list(await uow.session.execute(select(AnalysisDecision.analysis_id, AnalysisDecision.decision)))
        tallies = set(await uow.session.scalars(select(TallyRow.analysis_id)))
        spans = await uow.session.scalar(select(func.count()).select_from(SpanRow))
        events = await uow.session.scalar(select(func.count()).select_from(Event))
    await container.db.dispose()
    assert analyses == {ids["traded"], ids["ordered"], ids["recent"]}, "a trade's or an order's analysis stays"
    assert sorted(tuple(d) for d in decisions) == sorted([(ids["traded"], "executed"), (ids["recent"], "rejected")])
    assert tallies == analyses, "tallies go with their analysis"
    assert spans == 1 and events == 1
    assert deleted == {"analysis_decisions": 2, "analyses": 1, "decision_spans": 1, "events": 2}


async def test_zero_days_keeps_everything(settings: Settings) -> None:
    container = Container(settings)
    await _seed(container)
    deleted = await RetentionPruner(container.uow, RetentionPolicy(0, 0, 0)).prune(NOW + timedelta(days=3650))
    await container.db.dispose()
    assert deleted == {}


async def test_the_loop_prunes_at_most_once_an_interval(settings: Settings) -> None:
    container = Container(settings)
    bot: TradingBot = container.bot
    asked: list[datetime] = []

    async def housekeeping(now: datetime) -> dict[str, int]:
        asked.append(now)
        return {"events": 0}

    bot.housekeeping, bot.housekeeping_interval_s = housekeeping, 3600
    for minutes in range(0, 125, 5):
        await bot.keep_house(NOW + timedelta(minutes=minutes))
    await container.db.dispose()
    assert asked == [NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)]
