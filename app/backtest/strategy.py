"""Strategy settings a backtest's `--config` may set that the API does not expose: the rule analyst's thresholds and
the asset profiles' exits (`trdbot optimize` tunes both and writes them here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from app.analysts.rules import RuleSettings
from app.domain.profiles import ASSET_PROFILES, DEFAULT_PROFILE, AssetProfile

RULE_ANALYST = "rule_analyst"  # the --config section of RuleSettings fields
ASSET_PROFILES_KEY = "asset_profiles"  # the --config section: {"BTC": {"atr_stop_multiplier": 1.2, ...}, "default": ...}
SECTIONS = (RULE_ANALYST, ASSET_PROFILES_KEY)
RULE_FIELDS = {f.name: f.type for f in dataclasses.fields(RuleSettings)}
# the exit side of a profile (what the risk manager reads); the volatility thresholds belong to the analysis
PROFILE_EXIT_FIELDS = ("atr_stop_multiplier", "target_buffer_pct", "min_stop_pct", "max_stop_pct")


class StrategyError(ValueError):
    """A bad `rule_analyst` or `asset_profiles` section: the message names the field."""


@dataclass(frozen=True, slots=True)
class StrategyOverrides:
    rules: RuleSettings = field(default_factory=RuleSettings)
    profiles: Mapping[str, AssetProfile] | None = None  # None: the fitted ASSET_PROFILES

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> StrategyOverrides:
        """The sections of a --config object (absent: the defaults)."""
        rules = _rule_settings(config.get(RULE_ANALYST) or {})
        profiles = config.get(ASSET_PROFILES_KEY)
        return cls(rules, _profiles(profiles) if profiles else None)


def _rule_settings(section: Any) -> RuleSettings:
    if not isinstance(section, Mapping):
        raise StrategyError(f"{RULE_ANALYST}: expected an object of {', '.join(RULE_FIELDS)}")
    unknown = sorted(set(section) - set(RULE_FIELDS))
    if unknown:
        raise StrategyError(f"{RULE_ANALYST}.{unknown[0]}: unknown (known: {', '.join(RULE_FIELDS)})")
    defaults = RuleSettings()
    values = {name: _number(f"{RULE_ANALYST}.{name}", value, type(getattr(defaults, name)))
              for name, value in section.items()}
    return dataclasses.replace(defaults, **values)


def _profiles(section: Any) -> dict[str, AssetProfile]:
    if not isinstance(section, Mapping):
        raise StrategyError(f"{ASSET_PROFILES_KEY}: expected an object keyed by base asset (BTC, ..., default)")
    profiles = {**ASSET_PROFILES, DEFAULT_PROFILE.asset: DEFAULT_PROFILE}
    for asset, fields in section.items():
        where = f"{ASSET_PROFILES_KEY}.{asset}"
        if not isinstance(fields, Mapping):
            raise StrategyError(f"{where}: expected an object of {', '.join(PROFILE_EXIT_FIELDS)}")
        unknown = sorted(set(fields) - set(PROFILE_EXIT_FIELDS))
        if unknown:
            raise StrategyError(f"{where}.{unknown[0]}: unknown (known: {', '.join(PROFILE_EXIT_FIELDS)})")
        base = profiles.get(asset.upper(), dataclasses.replace(DEFAULT_PROFILE, asset=asset.upper()))
        values = {name: _number(f"{where}.{name}", value, Decimal) for name, value in fields.items()}
        profile = dataclasses.replace(base, **values)
        if profile.min_stop_pct > profile.max_stop_pct:
            raise StrategyError(f"{where}: min_stop_pct {profile.min_stop_pct} exceeds max_stop_pct {profile.max_stop_pct}")
        profiles[base.asset] = profile
    return profiles


def _number(where: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise StrategyError(f"{where}: expected a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation as e:
        raise StrategyError(f"{where}: expected a number, got {value!r}") from e
    if not number.is_finite() or number < 0:
        raise StrategyError(f"{where}: expected a number of 0 or more, got {value!r}")
    return number if kind is Decimal else float(number)
