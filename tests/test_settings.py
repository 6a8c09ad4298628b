"""Settings validation: bad configuration is refused at start-up, naming the setting."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from app.config import Settings


def make_settings(**values: object) -> Settings:
    # No .env file: tests must not depend on the developer's local configuration.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_sync_database_driver_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        make_settings(database_url="postgresql://bot:bot@localhost/botdb")

    assert caught.value.errors()[0]["loc"] == ("database_url",)
    assert "DATABASE_URL" in str(caught.value)


def test_async_drivers_are_accepted() -> None:
    assert make_settings(database_url="postgresql+asyncpg://u:p@h/db").database_url.startswith("postgresql+asyncpg")
    assert make_settings(database_url="sqlite+aiosqlite:///x.db").database_url.startswith("sqlite+aiosqlite")


def test_min_stop_distance_above_max_is_rejected() -> None:
    with pytest.raises(ValidationError, match="MIN_STOP_DISTANCE_PCT must not exceed MAX_STOP_DISTANCE_PCT"):
        make_settings(min_stop_distance_pct=Decimal("3"), max_stop_distance_pct=Decimal("2"))


def test_out_of_range_risk_per_trade_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        make_settings(risk_per_trade_pct=Decimal("5"))

    assert caught.value.errors()[0]["loc"] == ("risk_per_trade_pct",)


def test_risk_limits_carry_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_OPEN_POSITIONS", "7")
    monkeypatch.setenv("MIN_STOP_DISTANCE_PCT", "1.25")

    limits = make_settings().risk_limits()

    assert limits.max_open_positions == 7
    assert limits.min_stop_distance_pct == Decimal("1.25")
    assert limits.daily_trade_limit == 5


def test_default_secrets_are_reported_as_unsafe_for_live() -> None:
    problems = make_settings().live_problems()

    assert any("JWT_SECRET" in p for p in problems)
    assert any("CREDENTIALS_KEY" in p for p in problems)


def test_the_venue_clock_is_for_live_mode_only() -> None:
    assert make_settings().market_clock == "wall"
    assert make_settings(use_mock_binance=False, market_clock="venue").follows_venue_clock
    assert not make_settings(use_mock_binance=False).follows_venue_clock
    with pytest.raises(ValidationError, match="MARKET_CLOCK=venue .* needs USE_MOCK_BINANCE=false"):
        make_settings(market_clock="venue")
    assert make_settings(market_source="live", market_clock="venue").follows_venue_clock  # paper on the live market
    with pytest.raises(ValidationError) as caught:
        make_settings(time_sync_interval_seconds=0)
    assert caught.value.errors()[0]["loc"] == ("time_sync_interval_seconds",)


def test_paper_trading_replays_the_candle_files_unless_the_live_market_is_named() -> None:
    assert make_settings().market_source == "replay" and not make_settings().uses_live_market
    assert make_settings(market_source="live").uses_live_market and not make_settings(market_source="live").is_live
    assert make_settings(use_mock_binance=False).uses_live_market
    with pytest.raises(ValidationError) as caught:
        make_settings(market_source="file")
    assert caught.value.errors()[0]["loc"] == ("market_source",)
