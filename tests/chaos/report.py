"""A chaos run's figures and findings: each violation with the seed, the life, the kill and the faults around it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.chaos.invariants import Violation


@dataclass
class LifeLog:
    """One bot process, from its start to its kill."""

    number: int
    clean_first_cycle: bool
    cue: str
    started_ms: int  # the venue's time when the process started
    faults: list[str] = field(default_factory=list)
    cycles: int = 0
    first_cycle_at: str | None = None
    kill: str | None = None
    kill_request: str | None = None
    kill_cycle: int | None = None  # the cycle of this life the kill interrupted (1: the first, the reconciling one)
    events: list[str] = field(default_factory=list)  # harness events: timeouts, failed starts
    timeline: list[str] = field(default_factory=list)  # wall seconds from the process start to each step
    _wall0: float = field(default_factory=time.monotonic, repr=False)

    def mark(self, step: str) -> None:
        self.timeline.append(f"{step} +{time.monotonic() - self._wall0:.2f}s")

    def describe(self) -> str:
        kill = f"killed by {self.kill}" + (f" at {self.kill_request}" if self.kill_request else "")
        kill += f" during cycle {self.kill_cycle}" if self.kill_cycle else ""
        first = "clean first cycle" if self.clean_first_cycle else "first cycle under faults"
        lines = [f"life {self.number} ({first}, {self.cycles} cycles, {kill if self.kill else 'not killed'})"]
        lines += [f"    fault {f}" for f in self.faults] or ["    no faults"]
        lines += [f"    event {e}" for e in self.events]
        lines.append(f"    timeline {', '.join(self.timeline)}")
        return "\n".join(lines)


@dataclass
class Finding:
    """A violation as first seen, and how often it was seen again."""

    violation: Violation
    seed: int
    check: str
    life: int
    seen: int = 1


@dataclass
class ChaosReport:
    seed: int
    run_dir: Path
    lives: list[LifeLog] = field(default_factory=list)
    findings: dict[tuple[str, int, str], Finding] = field(default_factory=dict)
    checks: int = 0
    cycles: int = 0
    entries: int = 0
    exits: int = 0
    trades: int = 0
    closed_trades: int = 0
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    faults_by_endpoint: Counter[str] = field(default_factory=Counter)
    partial_fills: dict[str, int] = field(default_factory=dict)
    frozen_venues: int = 0
    requests: int = 0
    wall_s: float = 0.0
    stopped_by: str = ""

    # ----- recording -----------------------------------------------------------------------------------------
    def record_check(self, check: str, life: int, violations: list[Violation]) -> None:
        self.checks += 1
        for violation in violations:
            known = self.findings.get(violation.key)
            if known is None:
                self.findings[violation.key] = Finding(violation, self.seed, check, life)
            else:
                known.seen += 1

    # ----- figures -------------------------------------------------------------------------------------------
    @property
    def kills(self) -> int:
        return sum(1 for life in self.lives if life.kill and life.kill != "end of run")

    def kills_by_cue(self) -> Counter[str]:
        return Counter(_kill_kind(life) for life in self.lives if life.kill and life.kill != "end of run")

    @property
    def faults(self) -> int:
        return sum(self.faults_by_kind.values())

    def violations_by_invariant(self) -> Counter[str]:
        return Counter(f.violation.invariant for f in self.findings.values())

    # ----- output --------------------------------------------------------------------------------------------
    def summary(self) -> str:
        kills = ", ".join(f"{k} {n}" for k, n in sorted(self.kills_by_cue().items()))
        faults = ", ".join(f"{k} {n}" for k, n in sorted(self.faults_by_kind.items()))
        partial = ", ".join(f"{side} {n}" for side, n in sorted(self.partial_fills.items()))
        violations = ", ".join(f"{k} {n}" for k, n in sorted(self.violations_by_invariant().items())) or "none"
        return "\n".join([
            f"chaos run seed={self.seed}: {self.wall_s:.1f} s wall, {len(self.lives)} bot processes ({self.stopped_by})",
            f"  kills       {self.kills} ({kills})",
            f"  faults      {self.faults} ({faults}); partial fills by side: {partial}; "
            f"{self.frozen_venues} frozen venues",
            f"  cycles      {self.cycles} ({self.entries} entries, {self.exits} exits booked by cycles); "
            f"{self.requests} requests to the venue",
            f"  trades      {self.trades} in the books ({self.closed_trades} closed)",
            f"  checks      {self.checks} still pictures",
            f"  violations  {len(self.findings)} distinct ({violations})",
            f"  run dir     {self.run_dir}",
        ])

    def details(self, limit: int = 12) -> str:
        """Each violated invariant's first findings, with the life that revealed it and the one before."""
        lines = []
        by_life = {life.number: life for life in self.lives}
        for finding in sorted(self.findings.values(), key=lambda f: (f.violation.invariant, f.life))[:limit]:
            lines.append(f"{finding.violation}")
            lines.append(f"  seed {finding.seed}; first seen in the check {finding.check} of life {finding.life}; "
                         f"seen in {finding.seen} of the {self.checks} checks")
            for number in (finding.life - 1, finding.life):
                if number in by_life:
                    lines.append("  " + by_life[number].describe().replace("\n", "\n  "))
        if len(self.findings) > limit:
            lines.append(f"... and {len(self.findings) - limit} more in {self.run_dir / 'report.json'}")
        return "\n".join(lines)

    def text(self) -> str:
        return self.summary() + ("\n\n" + self.details() if self.findings else "")

    def write(self) -> Path:
        path = self.run_dir / "report.json"
        data = {
            "seed": self.seed, "wall_s": self.wall_s, "kills": self.kills, "kills_by_cue": self.kills_by_cue(),
            "faults": self.faults, "faults_by_kind": self.faults_by_kind, "faults_by_endpoint": self.faults_by_endpoint,
            "partial_fills": self.partial_fills, "frozen_venues": self.frozen_venues, "cycles": self.cycles, "checks": self.checks,
            "trades": self.trades, "closed_trades": self.closed_trades, "stopped_by": self.stopped_by,
            "violations": [{**asdict(f.violation), "check": f.check, "life": f.life, "seen": f.seen}
                           for f in self.findings.values()],
            "lives": [{k: v for k, v in asdict(life).items() if not k.startswith("_")} for life in self.lives],
        }
        path.write_text(json.dumps(data, indent=1, default=str))
        return path


_ENTRY_TIME = re.compile(r"-(\d{13})-p\d+$")


def _kill_kind(life: LifeLog) -> str:
    """entry, protection, re-protection, exit, reconciliation or wall time: what the kill interrupted. An OCO for an
    entry made before this process started is a re-protection (its entry time is in the list's client id)."""
    cue = (life.kill or "").split(":", 1)[0]
    if cue in ("protect", "reprotect"):
        entry = _ENTRY_TIME.search(life.kill_request.split(" -> ")[0] if life.kill_request else "")
        return "re-protection" if entry and int(entry.group(1)) < life.started_ms else "protection"
    return {"entry": "entry", "entry-booking": "entry", "exit": "exit", "exit-cancel": "exit",
            "reconcile": "reconciliation"}.get(cue, cue or "?")
