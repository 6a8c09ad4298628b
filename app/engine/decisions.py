"""Users' decisions, a batch at a time: skips, the risk manager's verdict, the decision log, and the entries it
approves.

A batch is decided from the cycle's published analyses by `Decisions.decide_batch`, with a few set-based reads and
one write for the whole batch: most users' signals all end in a skip (a hold, a symbol already held), which needs
nothing but what the batch read. Only a signal the risk manager must judge reads the exchange (the balance, the
symbol's rules), and only an approved one trades, through the order path of entries.py, which writes its own rows
as it goes (they must exist before each order). A batch's users are independent, so batches could as well be
decided by other processes given the same analyses.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.domain.errors import ConfigurationError, ExchangeError
from app.domain.events import EngineError, SignalAnalysed, SignalRejected
from app.domain.records import DecisionRecord, DecisionSpan, DecisionTally, PositionRecord, TradeRecord
from app.domain.risk import TradingConfig, UserRiskContext
from app.domain.values import PROFILE_NOTE, SKIPS_FROM_SPANS, Decision, Reason, RiskDecision
from app.engine.analysis import SymbolAnalysis
from app.engine.desk import Desk, EngineParts
from app.engine.entries import ApprovedEntry, Entries
from app.engine.settings import RiskChecker, log

Analyses = Mapping[tuple[str, str], SymbolAnalysis]  # (symbol, analyst kind) -> the cycle's published analysis


@dataclass(slots=True)
class _UserCycle:
    """One user's cycle: the positions the decisions see, what the risk manager will need (read for the whole
    batch, read again for the user after an entry of theirs), and where the quiet walk over the symbols stopped."""

    config: TradingConfig
    positions: list[PositionRecord]
    in_doubt: frozenset[str]  # symbols of entries the exchange denied: held, for the rules, until they are settled
    entries_today: int | None = None
    recent_results: tuple[bool, ...] | None = None
    held: tuple[str, ...] = ()  # what the pre-checks see as held: the positions' symbols, then those in doubt
    next_symbol: int = 0  # the first of the user's symbols not decided yet

    def __post_init__(self) -> None:
        self.see(self.positions)

    def see(self, positions: list[PositionRecord]) -> None:
        self.positions = positions
        symbols = tuple(p.symbol for p in positions)
        self.held = symbols + tuple(sorted(self.in_doubt - set(symbols))) if self.in_doubt else symbols

    def count_entries(self, booked: int) -> int:
        """Entries today for the daily limit: the booked ones, and every entry in doubt (it may have bought; a batch
        redone after its worker died holds the entries the first attempt sent and has not booked yet)."""
        return booked + len(self.held) - len(self.positions)


@dataclass(slots=True)
class BatchOutcome:
    """What deciding a batch of users did: its entries, the risk rules' rejections by code, and the tallies of every
    decision per analysis (written once per cycle, summed with the other batches')."""

    entries: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    tallies: Counter[tuple[int, Decision, str]] = field(default_factory=Counter)
    decided_elsewhere: int = 0  # users another process marked decided in this cycle first: their rows are its

    def add(self, other: BatchOutcome) -> None:
        self.entries += other.entries
        self.decided_elsewhere += other.decided_elsewhere
        if other.rejections:
            self.rejections.update(other.rejections)
        self.tallies.update(other.tallies)

    def tally_records(self) -> list[DecisionTally]:
        return [DecisionTally(analysis_id, decision, reason, count)
                for (analysis_id, decision, reason), count in sorted(self.tallies.items())]


ENTRY_FAILED = Reason("entry failed", "the entry was approved but bought nothing (the event log says why)")


@dataclass(slots=True)
class _BatchLog:
    """The batch's decision log: every decision tallied, a user's own row where something happened to them (an entry,
    a rejection, a skip at their position cap, an entry or a check that failed). A hold, a skip outside the user's
    hours or of a symbol they hold are everyone's or theirs by choice: the log answers them from the user's decision
    span and the analysis row (app/repositories/log.py), with the same text."""

    outcome: BatchOutcome
    rows: list[DecisionRecord] = field(default_factory=list)

    def record(self, user: _UserCycle, analysis: SymbolAnalysis, decision: Decision, reasons: Sequence[Reason],
               now: datetime, trade_id: int | None = None) -> None:
        if log.isEnabledFor(logging.INFO):  # every symbol, every cycle: no joining for a level that is off
            log.info("user %s analysis %s: %s %s", user.config.user_id, analysis.analysis_id, decision,
                     "; ".join(reasons))
        counted = [r.code for r in reasons if r.code != PROFILE_NOTE] or [""]
        tallies = self.outcome.tallies
        for code in counted:  # Counter.update's generic path costs more than the counting, every symbol every cycle
            key = (analysis.analysis_id, decision, code)
            tallies[key] = tallies.get(key, 0) + 1
        if not (decision == Decision.SKIPPED and counted[0] in SKIPS_FROM_SPANS):
            self.rows.append(DecisionRecord(analysis.analysis_id, user.config.user_id, decision, tuple(reasons), now,
                                            trade_id))


class Decisions(Desk):
    """Users' cycles, a batch at a time: rate limit, each symbol's skip reason or risk decision, the approved entries,
    and the decision log."""

    def __init__(self, parts: EngineParts, risk_manager: RiskChecker, entries: Entries) -> None:
        super().__init__(parts)
        self.risk_manager = risk_manager
        self.entries = entries

    async def decide_batch(self, configs: Sequence[TradingConfig], analyses: Analyses, now: datetime,
                           in_doubt: Mapping[int, set[str]], previous_cycle: datetime | None) -> BatchOutcome:
        """Decide a batch of users on the cycle's analyses: read their state in a few queries, walk every symbol
        that needs nothing more in memory, judge the rest, then write the batch's rows, spans and times at once.
        The events the batch emits are published together at its end. `previous_cycle` is the cycle before this one
        (None after a start): a user decided then continues their decision span."""
        batch = _BatchLog(BatchOutcome())
        users, spans = await self._read_batch(configs, now, in_doubt, previous_cycle)
        judged = [user for user in users if not self._decide_quietly(user, analyses, now, batch)]
        if not judged:  # a quiet batch: the reads and the skips above emit nothing, nothing to hold
            await self._write_batch(users, spans, batch, now)
            return batch.outcome
        async with self.events_held():
            await self._read_risk_counts(judged, now)
            await self._decide_judged(judged, analyses, now, batch)
            await self._write_batch(users, spans, batch, now)
        return batch.outcome

    async def write_tallies(self, tallies: Sequence[DecisionTally]) -> None:
        """The cycle's summary per analysis: how often each outcome met it."""
        if tallies:
            async with self.uow() as uow:
                await uow.analyses.add_tallies(tallies)
                await uow.commit()

    async def _read_batch(self, configs: Sequence[TradingConfig], now: datetime, in_doubt: Mapping[int, set[str]],
                          previous_cycle: datetime | None) -> tuple[list[_UserCycle], _Spans]:
        """The users due (the rate limit), with their positions, and what their decision spans do this cycle."""
        ids = [c.user_id for c in configs]
        async with self.uow() as uow:
            last = await uow.configs.analyzed_at(ids)
            due = [c for c in configs if self._remaining_rate_limit(last.get(c.user_id), now) <= 0]
            due_ids = [c.user_id for c in due]
            positions = await uow.positions.for_users(due_ids) if due_ids else {}
            spans = await uow.analyses.open_spans(due_ids) if due_ids else {}
        users = [_UserCycle(c, positions.get(c.user_id, []), frozenset(in_doubt.get(c.user_id, ()))) for c in due]
        return users, _spans(due, spans, last, previous_cycle, now)

    def _remaining_rate_limit(self, last: datetime | None, now: datetime) -> float:
        """Seconds until the user may be analysed again (0 when due)."""
        if last is None:
            return 0.0
        due = last + timedelta(seconds=self.settings.user_rate_limit_s)
        # a cycle that runs a little early must not skip a whole interval
        return max(0.0, (due - now).total_seconds() - 1.0)

    def _decide_quietly(self, user: _UserCycle, analyses: Analyses, now: datetime, batch: _BatchLog) -> bool:
        """Skip the user's symbols in order while the cheap pre-checks answer; False at the first signal the risk
        manager must judge (`next_symbol` points at it), True when every symbol was skipped."""
        config = user.config
        for index, symbol in enumerate(config.symbols):
            analysis = analyses.get((symbol, config.analyzer))
            if analysis is None:
                continue
            signal = analysis.report.signal
            skip = self.risk_manager.skip_reason(config, symbol, signal, user.held, now)
            if skip is None:
                user.next_symbol = index
                return False
            self.metrics.count_signal(signal.signal, Decision.SKIPPED)
            batch.record(user, analysis, Decision.SKIPPED, [skip], now)
        return True

    async def _read_risk_counts(self, users: Sequence[_UserCycle], now: datetime) -> None:
        """Entries today and recent results of the users the risk manager will judge, in two queries."""
        ids = [u.config.user_id for u in users]
        async with self.uow() as uow:
            entries = await uow.trades.entry_counts_since(ids, _day_start(now))
            results = await uow.trades.recent_results_of(ids, self.parts.limits.win_rate_lookback_trades)
        for user in users:
            user.entries_today = user.count_entries(entries.get(user.config.user_id, 0))
            user.recent_results = results.get(user.config.user_id, ())

    async def _decide_judged(self, users: Sequence[_UserCycle], analyses: Analyses, now: datetime,
                             batch: _BatchLog) -> None:
        """The users with a signal for the risk manager, in rounds: each user's symbols in order up to their next
        approved entry, then the round's entries carried out together (one user's entry changes what their next
        symbol's checks see), until every symbol is decided."""
        pending = list(users)
        while pending:
            round_: list[tuple[_UserCycle, ApprovedEntry]] = []
            for user in pending:
                approved = await self._next_entry(user, analyses, now, batch)
                if approved is not None:
                    round_.append((user, approved))
            if not round_:
                return
            trades = await self.entries.execute_many([approved for _, approved in round_], now)
            pending = await self._entered(round_, trades, now, batch)

    async def _next_entry(self, user: _UserCycle, analyses: Analyses, now: datetime,
                          batch: _BatchLog) -> ApprovedEntry | None:
        """The user's symbols from `next_symbol` on, each skipped or rejected, up to the first approved entry."""
        config = user.config
        while user.next_symbol < len(config.symbols):
            symbol = config.symbols[user.next_symbol]
            user.next_symbol += 1
            analysis = analyses.get((symbol, config.analyzer))
            if analysis is None:
                continue
            try:
                approved = await self._judge(user, analysis, now, batch)
            except (ExchangeError, ConfigurationError) as e:
                log.error("user %s, %s: %s", config.user_id, symbol, e)
                batch.record(user, analysis, Decision.SKIPPED, [Reason("error", f"not judged: {e}")], now)
                await self.emit(config.user_id, EngineError(str(e), symbol=symbol), now)
                continue
            if approved is not None:
                return approved
        return None

    async def _judge(self, user: _UserCycle, analysis: SymbolAnalysis, now: datetime,
                     batch: _BatchLog) -> ApprovedEntry | None:
        """A symbol's skip or the risk manager's verdict; the entry when it is approved."""
        config = user.config
        symbol, signal = analysis.symbol, analysis.report.signal
        skip = self.risk_manager.skip_reason(config, symbol, signal, user.held, now)
        if skip is not None:
            self.metrics.count_signal(signal.signal, Decision.SKIPPED)
            batch.record(user, analysis, Decision.SKIPPED, [skip], now)
            return None
        await self.emit(config.user_id, SignalAnalysed(symbol, signal.signal.value, signal.confidence, analysis.regime,
                                                       round(analysis.confluence, 2)), now)
        features = analysis.entry_features()
        if features is None:
            raise RuntimeError(f"{symbol} at {now.isoformat()}: a {signal.signal.value} signal came without its features")
        context = await self._risk_context(user, symbol, now)
        decision = self.risk_manager.validate_trade_signal(signal, features, context)
        if not decision.approved:
            self.metrics.count_signal(signal.signal, Decision.REJECTED)
            await self._reject(user, analysis, decision, now, batch)
            return None
        return ApprovedEntry(config, symbol, decision, analysis)

    async def _entered(self, round_: Sequence[tuple[_UserCycle, ApprovedEntry]], trades: Sequence[TradeRecord | None],
                       now: datetime, batch: _BatchLog) -> list[_UserCycle]:
        """A round's entries in the log; the users with symbols left, who see their new positions."""
        more, bought = [], []
        for (user, approved), trade in zip(round_, trades, strict=True):
            self.metrics.count_signal(approved.analysis.report.signal.signal, "executed" if trade else "failed")
            if trade is not None:
                batch.outcome.entries += 1
                batch.record(user, approved.analysis, Decision.EXECUTED, approved.decision.profile_note(), now,
                             trade.id)
            else:
                batch.record(user, approved.analysis, Decision.SKIPPED, [ENTRY_FAILED], now)
            if user.next_symbol < len(user.config.symbols):
                more.append(user)
                if trade is not None:
                    bought.append(user)
        if bought:
            async with self.uow() as uow:  # the next symbol's checks see the new position, and its counts
                positions = await uow.positions.for_users([u.config.user_id for u in bought])
            for user in bought:
                user.see(positions.get(user.config.user_id, []))
            await self._read_risk_counts(bought, now)
        return more

    async def _risk_context(self, user: _UserCycle, symbol: str, now: datetime) -> UserRiskContext:
        config = user.config
        exchange = await self.exchanges.for_user(config.user_id)
        if user.entries_today is None or user.recent_results is None:
            async with self.uow() as uow:
                user.entries_today = user.count_entries(await uow.trades.entries_since(config.user_id,
                                                                                        _day_start(now)))
                user.recent_results = await uow.trades.recent_results(config.user_id,
                                                                      self.parts.limits.win_rate_lookback_trades)
        balance = await exchange.get_account_balance(self.settings.quote_asset)
        return UserRiskContext(
            user_id=config.user_id, config=config, usdt_balance=balance.free,
            open_symbols=user.held, entries_today=user.entries_today,
            recent_results=user.recent_results, rules=await exchange.get_symbol_rules(symbol), cycle_time=now,
        )

    async def _reject(self, user: _UserCycle, analysis: SymbolAnalysis, decision: RiskDecision, now: datetime,
                      batch: _BatchLog) -> None:
        batch.outcome.rejections.update(reason.code for reason in decision.reasons)
        batch.record(user, analysis, Decision.REJECTED, [*decision.reasons, *decision.profile_note()], now)
        signal = analysis.report.signal
        await self.emit(user.config.user_id, SignalRejected(analysis.symbol, signal.signal.value, signal.confidence,
                                                            list(decision.reasons)), now)

    async def _write_batch(self, users: Sequence[_UserCycle], spans: _Spans, batch: _BatchLog, now: datetime) -> None:
        """The batch's own decision rows, the decision spans that end or begin, and the users' analysis time (which
        every open span goes on to), in one transaction. The users are marked first, each only if no other process
        marked them in this cycle (a batch redone while its first worker still wrote): the rows of a user marked
        elsewhere are that process's, never written twice."""
        async with self.uow() as uow:
            ids = [u.config.user_id for u in users]
            marked = await uow.configs.mark_analyzed(ids, now)
            rows, closed, begun = batch.rows, spans.closed, spans.begun
            if len(marked) < len(ids):
                batch.outcome.decided_elsewhere += len(ids) - len(marked)
                log.warning("%d users of a batch at %s were decided by another process first: their rows are its",
                            len(ids) - len(marked), now.isoformat())
                rows = [r for r in rows if r.user_id in marked]
                closed = [(span_id, last) for user_id, span_id, last in spans.closed_by if user_id in marked]
                begun = [span for span in begun if span.user_id in marked]
            await uow.analyses.add_decisions(rows)
            await uow.analyses.close_spans(closed)
            await uow.analyses.add_spans(begun)
            await uow.commit()


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class _Spans:
    closed_by: list[tuple[int, int, datetime]]  # (user id, span id, its last cycle)
    begun: list[DecisionSpan]

    @property
    def closed(self) -> list[tuple[int, datetime]]:  # (span id, its last cycle)
        return [(span_id, last) for _, span_id, last in self.closed_by]


def _spans(configs: Sequence[TradingConfig], open_spans: Mapping[int, DecisionSpan], last: Mapping[int, datetime],
           previous_cycle: datetime | None, now: datetime) -> _Spans:
    """A user's open span goes on (nothing to write) when its terms are the user's and the user was decided in the
    previous cycle; else it is closed at the user's last decision and a span begins now."""
    closed, begun = [], []
    for c in configs:
        span = DecisionSpan(c.user_id, c.analyzer, c.symbols, c.trading_hours_start, c.trading_hours_end, now)
        current, decided = open_spans.get(c.user_id), last.get(c.user_id)
        if current is not None and current.same_terms(span) and previous_cycle is not None and decided == previous_cycle:
            continue
        if current is not None:
            closed.append((c.user_id, current.id, decided or current.first_at))
        begun.append(span)
    return _Spans(closed, begun)
