"""The chaos harness: the simulator in this process on a clock it steers, the live bot in another that it kills -9.

A run is a sequence of lives. Each life draws its fault rules and a kill cue from the run's seed, starts the bot
(`tests.chaos.bot_process`), takes a still picture after the bot's first (reconciling) cycle, lets it trade under
faults, and kills it: at the cue's request (before the simulator runs it, or after, with the answer lost) or at a
random wall time. A last life ends with a still picture at the end of the run. A still picture is taken with the
faults off, nothing left in flight, the venue jumped to a fresh 5-minute boundary and slowed to real time (no candle
closes), and the bot held after one whole clean cycle; then the exchange's view is compared with the books.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from app.config import BUNDLED_DATA_DIR
from app.db import Database, upgrade
from app.devtools.simulator import ApiAccount, ExchangeSimulator, create_simulator_app
from app.devtools.simulator_thread import SimulatorThread
from app.domain.risk import TradingConfig
from app.domain.values import TradeStatus
from app.marketdata.candles import CandleStore
from app.repositories import UnitOfWorkFactory
from app.services.security import CredentialCipher, mask_key
from app.venues.paper.market import SimulatedMarket
from tests.chaos.bot_process import ANALYST
from tests.chaos.clock import VenueClock
from tests.chaos.faults import ChaosFaultPlan, ChaosRule, FaultProfile, FaultSchedule
from tests.chaos.invariants import Account, InvariantChecker
from tests.chaos.processes import BotProcess, Spawner
from tests.chaos.report import ChaosReport, LifeLog
from tests.chaos.traffic import KillCue, TrafficGate

REPO = Path(__file__).resolve().parents[2]
START = datetime(2025, 9, 8, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
BALANCE = Decimal("10000")
HOLD_AHEAD_S = 90  # market seconds the venue jumps before a picture: past every Retry-After a fault can leave
DRAIN_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0  # start-up plus a first cycle that may meet a frozen venue
SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    run_dir: Path
    kills: int = 30
    min_faults: int = 0
    max_wall_s: float = 150.0
    speed: float = 1000.0  # a 5-minute cycle every 0.3 s of wall time
    users: int = 2
    symbols: tuple[str, ...] = SYMBOLS
    life_s: tuple[float, float] = (0.6, 2.5)  # wall time a life trades after its first picture, unless a cue kills it
    final_s: float = 2.0
    profile: FaultProfile = field(default_factory=FaultProfile)
    cover_kinds: bool = True  # add rules for kinds not hit yet, so that every kind is hit
    buy_pct: int = 50
    start: datetime = START
    calm: bool = False  # no faults, and kills only between cycles: the harness's own control run
    progress_every: int = 0  # print a line every this many bot processes (the soak)


@dataclass(frozen=True, slots=True)
class CueSpec:
    label: str
    method: str
    path: str
    side: str | None
    nth: tuple[int, int]
    early: bool  # armed from the start: the first cycle reconciles what the last kill interrupted
    weight: int


CUES = (
    CueSpec("entry", "POST", "/api/v3/order", "BUY", (1, 2), False, 3),
    CueSpec("entry-booking", "GET", "/api/v3/account", None, (1, 6), False, 2),
    CueSpec("protect", "POST", "/api/v3/orderList/oco", None, (1, 2), False, 3),
    CueSpec("exit", "POST", "/api/v3/order", "SELL", (1, 2), False, 3),
    CueSpec("exit-cancel", "DELETE", "/api/v3/orderList", None, (1, 2), False, 2),
    CueSpec("reprotect", "POST", "/api/v3/orderList/oco", None, (1, 1), True, 3),
    CueSpec("reconcile", "GET", "/api/v3/orderList", None, (1, 4), True, 1),
    CueSpec("wall", "", "", None, (0, 0), False, 2),
)
REPROTECT = next(c for c in CUES if c.label == "reprotect")
WALL = next(c for c in CUES if c.label == "wall")


class HarnessError(RuntimeError):
    """The harness itself failed (not the bot): the run cannot be judged."""


class ChaosRun:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = VenueClock(config.start, config.speed)
        self.faults = ChaosFaultPlan()
        self.schedule = FaultSchedule(self.faults, random.Random(f"faults-{config.seed}"), config.profile)
        self.report = ChaosReport(config.seed, config.run_dir)
        self.db_url = f"sqlite+aiosqlite:///{config.run_dir}/chaos.db"
        self.credentials_key = CredentialCipher.generate_key()
        self.accounts = [Account(i + 1, f"chaoskey{i + 1:04d}abcdef", f"chaossecret{i + 1:04d}abcdefghij",
                                 config.symbols) for i in range(config.users)]
        self._started = 0.0
        self._still = False

    # ----- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> ChaosReport:
        self._started = time.monotonic()
        self.report.stopped_by = "a harness error"
        try:
            await self._setup()
            number = 0
            while (reason := self._enough()) is None:
                number += 1
                await self._life(number)
                self._progress(number)
            await self._life(number + 1, final=True)
            self.report.stopped_by = reason
        finally:
            if hasattr(self, "gate"):
                await self._figures()
            await self._teardown()
            self.report.wall_s = time.monotonic() - self._started
            self.report.write()
        return self.report

    def _progress(self, number: int) -> None:
        if self.config.progress_every and number % self.config.progress_every == 0:
            report = self.report
            print(f"  {time.monotonic() - self._started:6.0f} s: {number} bot processes, {report.kills} kills, "
                  f"{self.schedule.injected} faults, {report.checks} checks, {len(report.findings)} violations",
                  flush=True)

    def _enough(self) -> str | None:
        elapsed = time.monotonic() - self._started
        if elapsed > self.config.max_wall_s:
            return f"wall budget of {self.config.max_wall_s:.0f} s spent"
        if self.report.kills >= self.config.kills and self.schedule.injected >= self.config.min_faults:
            return f"{self.config.kills} kills and {self.config.min_faults} faults reached"
        return None

    async def _life(self, number: int, final: bool = False) -> None:
        clean = self.rng.random() < 0.5
        spec = WALL if self.config.calm else self._pick_cue()
        cue = None if final or spec is WALL else KillCue(
            spec.label, spec.method, spec.path, spec.side, self.rng.randint(*spec.nth), self.rng.random() < 0.5)
        rules = [] if self.config.calm else self.schedule.new_life(number) + self._coverage(number)
        if clean:
            await self._quiet()
            self._hold()
        log = LifeLog(number, clean, str(cue) if cue else "wall time", self.clock.now_ms())
        self.report.lives.append(log)
        bot = await BotProcess.spawn(self.spawner, self._env(clean), self.config.run_dir, self._stderr_path,
                                     f"bot-{number}")
        kills_before = len(self.gate.kills)
        self.gate.aim(bot.pid, cue if spec.early else None)
        try:
            if await self._first_picture(bot, log, clean):
                await self._trade(bot, log, cue, final)
        finally:
            await self._end_life(bot, log, kills_before, final)
            log.faults = [r.describe() for r in rules]

    def _pick_cue(self) -> CueSpec:
        """Seeded; after a kill that can leave a position without its OCO, mostly the re-protection that follows."""
        last = self.report.lives[-1].kill if self.report.lives else None
        if last and last.startswith(("entry", "protect", "wall")) and self.rng.random() < 0.5:
            return REPROTECT
        return self.rng.choices(CUES, weights=[c.weight for c in CUES])[0]

    def _coverage(self, number: int) -> list[ChaosRule]:
        return self.schedule.cover(number) if self.config.cover_kinds and number >= 3 else []

    async def _first_picture(self, bot: BotProcess, log: LifeLog, clean: bool) -> bool:
        """Wait for the first cycle, then hold the bot after a clean cycle and check; False if it died meanwhile."""
        first = await self._until(bot, "cycle", START_TIMEOUT_S, log)
        if first is None or first["event"] == "timeout":
            return False
        log.first_cycle_at = datetime.fromtimestamp(int(first["t"]) / 1000, UTC).isoformat()
        log.mark("first cycle")
        if clean:
            held = await self._expect(bot, "held", log) is not None
        else:
            held = await self._settle(bot, log)
        if held:
            log.mark("held")
            await self._check("after the restart's first cycle", log.number)
            log.mark("checked")
        self._leave_stillness()
        if held:
            await bot.send("go")
        return held

    async def _trade(self, bot: BotProcess, log: LifeLog, cue: KillCue | None, final: bool) -> None:
        """Trade under faults until the cue kills the bot or the life's wall time runs out; the last life ends
        with a picture instead."""
        self.gate.aim(bot.pid, cue)
        lifetime = self.config.final_s if final else self.rng.uniform(*self.config.life_s)
        if await self._until(bot, "never", lifetime, log, quiet=True) is None:
            return  # killed by its cue
        if final:
            if await self._settle(bot, log):
                await self._check("at the end of the run", log.number)
            self._leave_stillness()
            self.gate.kill_now("end of run")
        elif self.config.calm:
            await bot.send("pause")
            if await self._expect(bot, "paused", log) is not None:
                self.gate.kill_now("between cycles")
        else:
            self.gate.kill_now("wall time")

    async def _end_life(self, bot: BotProcess, log: LifeLog, kills_before: int, final: bool) -> None:
        if bot.ended_output:
            self.gate.aim(None, None)  # it is gone; nothing left to kill
        else:
            self.gate.kill_now("end of run" if final else "harness")
        await bot.ended()
        log.mark("dead")
        self._leave_stillness()
        if len(self.gate.kills) > kills_before:
            kill = self.gate.kills[kills_before]
            log.kill, log.kill_request, log.kill_cycle = kill.cue, kill.request, bot.cycles + 1
        else:
            log.events.append("exited on its own (see bot-stderr.log)")

    async def _until(self, bot: BotProcess, wanted: str, timeout_s: float, log: LifeLog,
                     quiet: bool = False) -> dict[str, str] | None:
        """Protocol lines until `wanted` (counting cycles); None if the process ended. On timeout: the line
        `{"event": "timeout"}`, and the event is logged unless `quiet`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                event = await bot.next_event(deadline - time.monotonic())
            except TimeoutError:
                if not quiet:
                    log.events.append(f"no {wanted} within {timeout_s:.0f} s")
                return {"event": "timeout"}
            if event is None:
                return None
            if event["event"] == "cycle":
                self._count_cycle(bot, log, event)
            elif event["event"] == "start-failed":
                log.events.append(f"start failed: {event.get('error')}")
            if event["event"] == wanted:
                return event

    def _count_cycle(self, bot: BotProcess, log: LifeLog, event: dict[str, str]) -> None:
        bot.cycles += 1
        log.cycles += 1
        self.report.cycles += 1
        self.report.entries += int(event.get("entries", 0))
        self.report.exits += int(event.get("exits", 0))
        if event.get("ok") == "0":
            log.events.append(f"cycle {event['t']} failed: {event.get('error')}")

    # ----- still pictures --------------------------------------------------------------------------------------
    async def _quiet(self) -> None:
        """Faults off, and every request sent under them answered."""
        self.faults.suspended = True
        self._still = True
        epoch = self.gate.new_epoch()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.gate.in_flight_before(epoch):
            if time.monotonic() > deadline:
                raise HarnessError(f"requests still in flight after {DRAIN_TIMEOUT_S} s")
            await asyncio.sleep(0.01)

    def _hold(self, after_ms: int = 0) -> None:
        """The venue on a fresh boundary past every Retry-After and past the bot's last cycle (`after_ms`), at real
        time: no candle closes meanwhile."""
        self.clock.hold(HOLD_AHEAD_S, after_ms)

    def _leave_stillness(self) -> None:
        if self._still:
            if self.clock.held:
                self.clock.release()
            self.faults.suspended = False
            self._still = False

    async def _settle(self, bot: BotProcess, log: LifeLog) -> bool:
        """Faults off, the bot paused between cycles, the venue held past its last cycle, one whole cycle there,
        then the bot holds: True when it does."""
        self.gate.disarm()
        await self._quiet()
        await bot.send("pause")
        paused = await self._expect(bot, "paused", log)
        if paused is None:
            return False
        await self._quiet()  # what the cycle before the pause left in flight
        self._hold(after_ms=int(paused["last"]))
        await bot.send("settle")
        return await self._expect(bot, "held", log) is not None

    async def _expect(self, bot: BotProcess, event: str, log: LifeLog) -> dict[str, str] | None:
        """The event, or None when the bot died first or did not answer in time (then it is killed)."""
        answer = await self._until(bot, event, SETTLE_TIMEOUT_S, log)
        if answer is not None and answer["event"] == "timeout":
            self.gate.kill_now("harness")
            return None
        return answer

    async def _check(self, label: str, life: int) -> None:
        self.report.record_check(label, life, await self.checker.check())

    # ----- set-up ----------------------------------------------------------------------------------------------
    async def _setup(self) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        self._stderr_path = self.config.run_dir / "bot-stderr.log"
        self.spawner = await Spawner.start({**self._base_env(), "OPENBLAS_NUM_THREADS": "1"}, self.config.run_dir,
                                           self._stderr_path)
        await asyncio.to_thread(upgrade, self.db_url)
        self.database = Database(self.db_url)
        self.uow = UnitOfWorkFactory(self.database.sessions)
        await self._create_users()
        market = SimulatedMarket(CandleStore.load(BUNDLED_DATA_DIR, symbols=self.config.symbols),
                                 slippage_pct=Decimal("0.02"), fee_rate=Decimal("0.001"))
        self.simulator = ExchangeSimulator(
            market, self.clock, [ApiAccount(a.api_key, a.api_secret, {"USDT": BALANCE}) for a in self.accounts],
            self.faults, check_timestamps=False)  # the venue runs 1000x: a signed request's timestamp is stale
        self.gate = TrafficGate(create_simulator_app(self.simulator))
        self.server = SimulatorThread(self.gate).start()
        self.checker = InvariantChecker(self.server.base_url, self.uow, self.accounts)

    async def _create_users(self) -> None:
        cipher = CredentialCipher(self.credentials_key)
        now = self.config.start
        for account in self.accounts:
            async with self.uow() as uow:
                user = await uow.users.add(f"chaos{account.user_id}", f"chaos{account.user_id}@example.com", "-", now)
                if user.id != account.user_id:
                    raise HarnessError(f"expected user id {account.user_id}, got {user.id}: is the database fresh?")
                await uow.configs.create(TradingConfig(
                    user_id=user.id, is_active=True, symbols=self.config.symbols, max_open_positions=3,
                    daily_trade_limit=100_000, min_signal_confidence=50, max_balance_trade_ratio=Decimal("0.05"),
                    position_timeout_minutes=self.rng.choice((20, 30, 45, 60)), analyzer=ANALYST), now)
                await uow.portfolios.create(user.id, BALANCE, now)
                await uow.credentials.upsert(user.id, cipher.encrypt(account.api_key),
                                             cipher.encrypt(account.api_secret), mask_key(account.api_key),
                                             "testnet", now)
                await uow.commit()

    @staticmethod
    def _base_env() -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        return {**base, "PYTHONPATH": str(REPO)}

    def _env(self, hold_first: bool) -> dict[str, str]:
        symbols = ",".join(f'"{s}"' for s in self.config.symbols)
        return {
            **self._base_env(), "DATABASE_URL": self.db_url, "USE_MOCK_BINANCE": "false",
            # never hashes a password, never reads its own candles in live mode: both kept cheap for a fast start
            "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "8192",
            "BINANCE_BASE_URL": self.server.base_url, "JWT_SECRET": "chaos-jwt-secret-not-for-production-0123456789",
            "CREDENTIALS_KEY": self.credentials_key, "LOG_DIR": str(self.config.run_dir / "logs"),
            "DEFAULT_SYMBOLS": f"[{symbols}]", "CHAOS_SPEED": str(self.config.speed),
            "CHAOS_HOLD_FIRST": "1" if hold_first else "0", "CHAOS_ANALYST_SEED": str(self.config.seed),
            "CHAOS_BUY_PCT": str(self.config.buy_pct), "CHAOS_LOG": str(self.config.run_dir / "bot.log"),
        }

    async def _figures(self) -> None:
        report = self.report
        report.faults_by_kind = self.schedule.hits_by_kind()
        report.faults_by_endpoint = self.schedule.hits_by_endpoint()
        report.partial_fills = {side: self.schedule.partial_fill_hits(side) for side in ("BUY", "SELL")}
        report.frozen_venues = self.schedule.frozen_venues()
        report.requests = self.gate.requests
        async with self.uow() as uow:
            for account in self.accounts:
                trades, _ = await uow.trades.page(account.user_id, limit=1_000_000)
                report.trades += len(trades)
                report.closed_trades += sum(1 for t in trades if t.status == TradeStatus.CLOSED)

    async def _teardown(self) -> None:
        if hasattr(self, "gate"):
            self.gate.kill_now("end of run")
        if hasattr(self, "spawner"):
            await self.spawner.close()
        if hasattr(self, "server"):
            self.server.stop()
        if hasattr(self, "checker"):
            await self.checker.aclose()
        if hasattr(self, "database"):
            await self.database.dispose()

