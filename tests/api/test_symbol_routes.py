"""Choosing pairs through the API: what can be picked, with rules and provenance; what cannot, said by name."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.config import BUNDLED_DATA_DIR, Settings
from app.container import Container
from app.domain.clock import SimulatedClock
from app.main import create_app
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE
from tests.conftest import register


@pytest.fixture
async def paper(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Paper trading on a directory with the bundled four, XRPUSDT with candles only, and ETHBTC (rules stored,
    quoted in BTC)."""
    directory = tmp_path / "candles"
    shutil.copytree(BUNDLED_DATA_DIR, directory)
    shutil.copy(BUNDLED_DATA_DIR / "binance_BNBUSDT_5m.csv.gz", directory / "binance_XRPUSDT_5m.csv.gz")
    shutil.copy(BUNDLED_DATA_DIR / "binance_ETHUSDT_5m.csv.gz", directory / "binance_ETHBTC_5m.csv.gz")
    info = json.loads((directory / EXCHANGE_INFO_FILE).read_text())
    eth_btc = json.loads(json.dumps(next(s for s in info["symbols"] if s["symbol"] == "ETHUSDT")))
    info["symbols"].append({**eth_btc, "symbol": "ETHBTC", "quoteAsset": "BTC"})
    (directory / EXCHANGE_INFO_FILE).write_text(json.dumps(info))
    now = SimulatedClock(datetime(2025, 10, 1, 12, 7, tzinfo=UTC))  # inside the candles: volumes rank them
    container = Container(settings.model_copy(update={"market_data_dir": directory}), market_clock=now)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(container)),
                                 base_url="http://test") as http:
        yield http
    await container.db.dispose()


async def test_the_symbol_list_shows_rules_provenance_profile_and_coverage(paper: httpx.AsyncClient) -> None:
    headers, _ = await register(paper)
    answer = await paper.get("/market/symbols", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "candles"
    items = {item["symbol"]: item for item in body["items"]}
    assert set(items) == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ETHBTC"}
    xrp, btc, eth_btc = items["XRPUSDT"], items["BTCUSDT"], items["ETHBTC"]
    assert xrp["rules"]["source"] == "inferred from candles" and xrp["rules"]["min_notional"] == "10"
    assert btc["rules"]["source"] == "exchange_info.json" and btc["rules"]["step_size"] == "0.00001"
    assert (btc["profile"], xrp["profile"]) == ("BTC", "default")
    assert xrp["selectable"] and not eth_btc["selectable"] and "quoted in BTC" in eth_btc["note"]
    [five] = [c for c in xrp["coverage"] if c["timeframe"] == "5m"]
    assert (five["first"], five["last"], five["rows"], five["gaps"]) == ("2025-09-01T00:00:00Z", "2025-12-31T23:55:00Z",
                                                                        35136, 0)
    ranks = [item["volume_rank"] for item in body["items"]]
    assert ranks == [1, 2, 3, 4, 5, None]  # most traded first; ETHBTC's volume is in BTC: not ranked
    assert items["ETHBTC"]["volume_rank"] is None
    found = await paper.get("/market/symbols?search=xrp", headers=headers)
    assert [i["symbol"] for i in found.json()["items"]] == ["XRPUSDT"]


async def test_any_pair_with_candles_can_be_chosen_and_a_rule_with_exclusions(paper: httpx.AsyncClient) -> None:
    headers, _ = await register(paper)
    answer = await paper.put("/trading/config", headers=headers,
                             json={"symbols": ["xrpusdt", "TOP:3", "XRPUSDT"], "exclude_symbols": ["btcusdt"]})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["symbols"], answer.json()["exclude_symbols"]) == (["XRPUSDT", "top:3"], ["BTCUSDT"])
    stored = (await paper.get("/trading/config", headers=headers)).json()
    assert (stored["symbols"], stored["exclude_symbols"]) == (["XRPUSDT", "top:3"], ["BTCUSDT"])


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"symbols": ["ETHUSTD"]}, "symbols", "unknown symbol ETHUSTD; did you mean ETHUSDT?"),
    ({"symbols": ["ETHBTC"]}, "symbols", "ETHBTC is quoted in BTC; only USDT pairs can be traded"),
    ({"symbols": ["top:0"]}, "symbols", "top:0: N must be between 1 and 50"),
    ({"symbols": ["top:2", "top:3"]}, "symbols", "at most one top:N rule"),
    ({"exclude_symbols": ["top:2"]}, "exclude_symbols", "top:2: a rule cannot be excluded"),
    ({"exclude_symbols": ["DOGEUSDT"]}, "exclude_symbols", "unknown symbol DOGEUSDT"),
])
async def test_what_cannot_be_chosen_is_a_422_naming_it(paper: httpx.AsyncClient, body: dict[str, object], field: str,
                                                        message: str) -> None:
    headers, _ = await register(paper)
    answer = await paper.put("/trading/config", headers=headers, json=body)
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["loc"] == ["body", field] and message in detail["msg"]


async def test_charts_of_a_pair_without_stored_rules(paper: httpx.AsyncClient) -> None:
    headers, _ = await register(paper)
    candles = await paper.get("/market/candles?symbol=XRPUSDT&timeframe=1h&limit=5", headers=headers)
    assert candles.status_code == 200 and len(candles.json()["items"]) == 5
    bad = await paper.get("/market/candles?symbol=XRPUSTD", headers=headers)
    assert bad.status_code == 422 and "did you mean XRPUSDT?" in bad.json()["detail"][0]["msg"]
