"""Walk-forward windows (rolling, anchored, edges) and search-space files (errors name the field and line)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.optimize.space import SpaceError, config_of, read_space
from app.optimize.windows import WindowError, parse_walk_forward, walk_forward_windows


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def spans(start: datetime, end: datetime, text: str, anchored: bool = False) -> list[tuple[str, str, str]]:
    return [(f"{w.train_start:%Y-%m-%d}", f"{w.test_start:%Y-%m-%d}", f"{w.test_end:%Y-%m-%d}")
            for w in walk_forward_windows(start, end, *parse_walk_forward(text), anchored=anchored)]


def test_rolling_windows_of_the_issue() -> None:
    found = spans(day(2023, 1, 1), day(2025, 1, 1), "6M/2M")
    assert len(found) == 9
    assert found[0] == ("2023-01-01", "2023-07-01", "2023-09-01")
    assert found[1] == ("2023-03-01", "2023-09-01", "2023-11-01")
    assert found[-1] == ("2024-05-01", "2024-11-01", "2025-01-01")


def test_anchored_windows_keep_the_start_and_the_last_test_is_cut_at_the_end() -> None:
    found = spans(day(2025, 9, 10), day(2025, 12, 20), "30D/20D", anchored=True)
    assert [f[0] for f in found] == ["2025-09-10"] * 4
    assert found[-1] == ("2025-09-10", "2025-12-09", "2025-12-20")


def test_month_ends_stay_aligned() -> None:
    found = spans(day(2024, 1, 31), day(2024, 6, 1), "1M/1M")
    assert [f[1] for f in found] == ["2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_too_short_a_span_and_bad_lengths_are_errors() -> None:
    with pytest.raises(WindowError, match="too short"):
        spans(day(2025, 1, 1), day(2025, 6, 1), "6M/2M")
    for text in ("6M", "6X/2M", "0M/1M", "6M/2M/1M"):
        with pytest.raises(WindowError):
            parse_walk_forward(text)


def test_the_default_space_reads_and_becomes_a_config(tmp_path: Path) -> None:
    space = read_space(None)
    config = config_of({p.name: p.low for p in space.params})
    assert config["min_signal_confidence"] == 50
    assert config["rule_analyst"]["rsi_high"] == 65.0
    assert config["asset_profiles"]["BTC"]["atr_stop_multiplier"] == 0.5


@pytest.mark.parametrize(("text", "suffix", "message"), [
    ('{"rule_analyst": {"rsi_lo": {"low": 40, "high": 50}}}', ".json", r"line 1: rule_analyst\.rsi_lo: not a tunable.*rsi_low"),
    ('[min_signal_confidence]\nlow = 40\nhigh = 80\n', ".toml", r"line 1: min_signal_confidence: 40 is refused"),
    ('[daily_trade_limit]\nlow = 1.5\nhigh = 4\n', ".toml", "whole"),
    ('[risk_per_trade_pct]\nlow = 1\nhigh = 0.5\n', ".toml", "line 1: risk_per_trade_pct: low 1 is above high 0.5"),
    ('[risk_per_trade_pct]\nlow = 1\nhihg = 2\n', ".toml", "unknown key hihg"),
    ('[risk_per_trade_pct\nlow = 1\n', ".toml", r"line 1"),
    ('{"min_signal_confidence": {"low": 50,}}', ".json", "line 1"),
    ('{"asset_profiles": {"BTC": {"atr_stop_multiplier": {"low": "x", "high": 2}}}}', ".json", "low must be a number"),
])
def test_space_errors_name_the_field(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"space{suffix}"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        read_space(path)


def test_a_study_tunes_only_the_asset_profiles_its_symbols_trade_under(tmp_path: Path) -> None:
    space = read_space(None)
    btc = space.for_symbols(["BTCUSDT"])
    assert "asset_profiles.BTC.atr_stop_multiplier" in btc.names()
    assert set(btc.unused) == {"asset_profiles.ETH.atr_stop_multiplier", "asset_profiles.default.atr_stop_multiplier"}
    assert set(btc.names()) | set(btc.unused) == set(space.names())
    mixed = space.for_symbols(["ETHUSDT", "XRPUSDT"])  # XRP has no profile of its own: the default one
    assert set(mixed.unused) == {"asset_profiles.BTC.atr_stop_multiplier"}
    only_eth = tmp_path / "eth.toml"
    only_eth.write_text("[asset_profiles.ETH.atr_stop_multiplier]\nlow = 0.5\nhigh = 2.0\n")
    with pytest.raises(SpaceError, match="no parameter applies to BTCUSDT"):
        read_space(only_eth).for_symbols(["BTCUSDT"])
