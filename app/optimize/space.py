"""The search space: which settings a study tunes and over what ranges, read from a JSON or TOML file."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.backtest.strategy import ASSET_PROFILES_KEY, PROFILE_EXIT_FIELDS, RULE_ANALYST
from app.config import Settings
from app.domain.profiles import ASSET_PROFILES, DEFAULT_PROFILE, asset_profile
from app.user_config import ConfigUpdate

DEFAULT_SPACE = Path(__file__).with_name("default_space.toml")

# What the engine reads, by where it goes in a --config file. Analysis settings (the analyses of a symbol depend on
# them and on the candles only) are the S/R touch threshold and the rule analyst's thresholds.
CONFIG_TUNABLES = {"min_signal_confidence": int, "daily_trade_limit": int, "position_timeout_minutes": int,
                   "max_open_positions": int, "risk_per_trade_pct": float, "max_balance_trade_ratio": float}
SETTINGS_TUNABLES = {"sr_touch_threshold_pct": float, "min_risk_reward": float, "max_risk_reward": float,
                     "min_stop_distance_pct": float, "max_stop_distance_pct": float,
                     "min_target_distance_pct": float, "max_target_distance_pct": float}
# the thresholds `_judge` reads (default_stop_pct / default_target_pct only propose exits the risk manager replaces)
RULE_TUNABLES = ("trend_adx", "trend_min_confluence", "range_min_confluence", "rsi_low", "rsi_high",
                 "support_proximity_pct")
PROFILE_ASSETS = (*ASSET_PROFILES, DEFAULT_PROFILE.asset)
ANALYSIS_SETTINGS = frozenset({"sr_touch_threshold_pct", *(f"{RULE_ANALYST}.{n}" for n in RULE_TUNABLES)})


def tunables() -> dict[str, type]:
    """Every name a space may tune, with its kind."""
    names: dict[str, type] = {**CONFIG_TUNABLES, **SETTINGS_TUNABLES}
    names.update({f"{RULE_ANALYST}.{n}": float for n in RULE_TUNABLES})
    names.update({f"{ASSET_PROFILES_KEY}.{a}.{f}": float for a in PROFILE_ASSETS for f in PROFILE_EXIT_FIELDS})
    return names


class SpaceError(ValueError):
    """A bad search-space file: the message names the file, the line where it can, and the field."""


@dataclass(frozen=True, slots=True)
class Param:
    name: str  # a tunables() name, e.g. "rule_analyst.rsi_low" or "asset_profiles.BTC.atr_stop_multiplier"
    low: float
    high: float
    step: float | None = None  # None: continuous (floats only)
    log: bool = False

    @property
    def is_int(self) -> bool:
        return tunables()[self.name] is int

    @property
    def asset(self) -> str | None:
        """The asset profile it belongs to ("BTC", ..., "default"), or None for a setting of every symbol."""
        section, _, rest = self.name.partition(".")
        return rest.split(".", 1)[0] if section == ASSET_PROFILES_KEY else None

    @property
    def analysis(self) -> bool:
        """Whether the symbol's analyses depend on it (the analysis cache is keyed by these)."""
        return self.name in ANALYSIS_SETTINGS


@dataclass(frozen=True, slots=True)
class SearchSpace:
    params: tuple[Param, ...]
    source: str
    unused: tuple[str, ...] = ()  # parameters of the file left out: no symbol of the study reads them

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def for_symbols(self, symbols: Sequence[str]) -> SearchSpace:
        """The space without the asset profiles that no symbol of the study trades under: they cannot move a trial,
        and tuning them would only spread the sampler thin and show noise as importance."""
        used = {asset_profile(symbol).asset for symbol in symbols}
        kept = tuple(p for p in self.params if p.asset is None or p.asset in used)
        if not kept:
            raise SpaceError(f"--space {self.source}: no parameter applies to {', '.join(symbols)} (only asset "
                             f"profiles of other assets)")
        return SearchSpace(kept, self.source, tuple(p.name for p in self.params if p not in kept))


def read_space(path: Path | None) -> SearchSpace:
    """The space in `path` (.toml or .json), or the shipped default."""
    path = path or DEFAULT_SPACE
    try:
        text = path.read_text()
    except OSError as e:
        raise SpaceError(f"--space {path}: {e.strerror}") from e
    raw = _parse(path, text)
    leaves = _leaves(raw, "", path, text)
    if not leaves:
        raise SpaceError(f"--space {path}: no parameter to tune")
    return SearchSpace(tuple(_param(name, spec, path, text) for name, spec in leaves.items()), str(path))


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise SpaceError(f"--space {path} line {e.lineno}: {e.msg}") from e
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"--space {path}: {e}") from e
    if not isinstance(data, dict):
        raise SpaceError(f"--space {path}: expected an object of parameters")
    return data.get("params", data) if isinstance(data.get("params"), dict) else data


def _leaves(raw: Mapping[str, Any], prefix: str, path: Path, text: str) -> dict[str, Mapping[str, Any]]:
    """Nested tables ([rule_analyst.rsi_low]) and dotted names ("rule_analyst.rsi_low") alike: a leaf has low/high."""
    out: dict[str, Mapping[str, Any]] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if not isinstance(value, Mapping):
            raise SpaceError(f"--space {path}{_line(text, key)}: {name}: expected a table with low and high")
        if "low" in value or "high" in value:
            out[name] = value
        else:
            out.update(_leaves(value, f"{name}.", path, text))
    return out


def _param(name: str, spec: Mapping[str, Any], path: Path, text: str) -> Param:
    where = f"--space {path}{_line(text, name.rsplit('.', 1)[-1])}: {name}"
    known = tunables()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        raise SpaceError(f"{where}: not a tunable setting" + (f" (did you mean {near[0]}?)" if near else ""))
    unknown = sorted(set(spec) - {"low", "high", "step", "log"})
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]} (keys: low, high, step, log)")
    low, high, step = (_number(where, key, spec.get(key)) for key in ("low", "high", "step"))
    if low is None or high is None:
        raise SpaceError(f"{where}: needs both low and high")
    if low > high:
        raise SpaceError(f"{where}: low {low:g} is above high {high:g}")
    if known[name] is int and (low != int(low) or high != int(high) or (step is not None and step != int(step))):
        raise SpaceError(f"{where}: a whole-number setting needs whole low, high and step")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and (low <= 0 or step is not None)):
        raise SpaceError(f"{where}: log must be true or false, and a log range needs low > 0 and no step")
    param = Param(name, low, high, step, log)
    _check_bounds(where, param)
    return param


def _number(where: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{where}: {key} must be a number, got {value!r}")
    if key == "step" and value <= 0:
        raise SpaceError(f"{where}: step must be above 0")
    return float(value)


def _check_bounds(where: str, param: Param) -> None:
    """Both ends must be values the service accepts (PUT /trading/config's limits, the settings' own)."""
    for end in (param.low, param.high):
        value: Any = int(end) if param.is_int else Decimal(repr(end))
        try:
            if param.name in CONFIG_TUNABLES:
                ConfigUpdate.model_validate({param.name: value})
            elif param.name in SETTINGS_TUNABLES:
                Settings(_env_file=None, **{param.name: value})
        except ValidationError as e:
            raise SpaceError(f"{where}: {end:g} is refused: {e.errors()[0]['msg']}") from e
        if end < 0:
            raise SpaceError(f"{where}: {end:g} is negative")


def _line(text: str, key: str) -> str:
    """" line N" where the key first appears in the file (empty when it cannot be found)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if key in line:
            return f" line {number}"
    return ""


def config_of(values: Mapping[str, float]) -> dict[str, Any]:
    """A trial's values as a --config object: flat config and settings fields, the rule analyst's and the asset
    profiles' in their sections."""
    config: dict[str, Any] = {}
    for name, value in values.items():
        parts = name.split(".")
        target = config
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = int(value) if tunables()[name] is int else round(float(value), 10)
    return config
