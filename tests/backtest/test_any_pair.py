"""`trdbot backtest` over pairs outside the sample: rules inferred (and said so) or read from exchange_info.json;
`--symbols top:N` picks each hour's most traded pairs from candles closed before it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.cli import main
from app.marketdata.candles import CandleStore
from app.marketdata.directory import CandleDirectory
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE, rules_for_candles
from tests.backtest.backtest_helpers import SAMPLE

SPAN = ("--start", "2025-10-01", "--end", "2025-10-08")


def two_new_pairs(directory: Path, with_rules: bool) -> Path:
    """XRPUSDT and ADAUSDT as real candles (BNB's and SOL's, renamed), with or without Binance's rules stored."""
    directory.mkdir()
    names = {"BNBUSDT": "XRPUSDT", "SOLUSDT": "ADAUSDT"}
    for source, name in names.items():
        shutil.copy(SAMPLE / f"binance_{source}_5m.csv.gz", directory / f"binance_{name}_5m.csv.gz")
    if with_rules:
        info = json.loads((SAMPLE / EXCHANGE_INFO_FILE).read_text())
        info["symbols"] = [{**s, "symbol": names[s["symbol"]], "baseAsset": names[s["symbol"]][:-4]}
                           for s in info["symbols"] if s["symbol"] in names]
        (directory / EXCHANGE_INFO_FILE).write_text(json.dumps(info))
    return directory


@pytest.mark.parametrize("with_rules", [False, True])
def test_pairs_with_only_candle_files_backtest(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               with_rules: bool) -> None:
    data = two_new_pairs(tmp_path / "data", with_rules)
    code = main(["backtest", "--quiet", "--symbols", "XRPUSDT,ADAUSDT", "--data", str(data), *SPAN,
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code == 0 and report["trades"] > 0
    expected = "exchange_info.json" if with_rules else "inferred from candles"
    assert report["rules"] == {"XRPUSDT": expected, "ADAUSDT": expected}
    inferred_warning = any("inferred from the candles" in w for w in report["warnings"])
    assert inferred_warning is not with_rules
    assert ("inferred from the candles" in out) is not with_rules


def test_a_pair_not_quoted_in_usdt_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(SAMPLE / "binance_ETHUSDT_5m.csv.gz", tmp_path / "binance_ETHBTC_5m.csv.gz")
    code = main(["backtest", "--quiet", "--symbols", "ETHBTC", "--data", str(tmp_path), *SPAN])
    err = capsys.readouterr().err
    assert code == 2 and "ETHBTC is quoted in BTC; only USDT pairs can be traded" in err


def test_top_n_trades_each_hours_most_traded_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--quiet", "--symbols", "top:1", *SPAN, "--out", str(tmp_path)])
    capsys.readouterr()
    report = json.loads((tmp_path / "report.json").read_text())
    assert code == 0 and report["span"]["symbols"] == ["top:1"] and report["trades"] > 0
    assert report["span"]["universe"] == ["BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT"]
    candles = CandleStore.load(SAMPLE)
    ranking = CandleDirectory(candles, rules_for_candles(candles, SAMPLE))
    lines = (tmp_path / "trades.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {line.split(",")[1] for line in lines[1:]} == {"BTCUSDT", "ETHUSDT"}  # the lead changed hands that week
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        entered = datetime.fromisoformat(row["entry_time"]).astimezone(UTC)
        assert row["symbol"] == ranking.ranking_at(entered)[0], row  # the hour's most traded pair, and only it
