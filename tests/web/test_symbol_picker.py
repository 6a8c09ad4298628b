"""The settings' pair picker in Chromium against `trdbot demo` on candles that hold, besides the bundled four, a pair
quoted in BTC, a halted pair and a pair without stored rules; what is saved is read back through the API."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from app.config import BUNDLED_DATA_DIR
from app.marketdata.exchange_info import EXCHANGE_INFO_FILE
from tests.web.demo_server import running_demo

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "correct horse battery"
BUNDLED = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"]
PHONE = {"width": 390, "height": 844}


def _candles_as(directory: Path, source: str, symbol: str) -> None:
    shutil.copy(BUNDLED_DATA_DIR / f"binance_{source}_5m.csv.gz", directory / f"binance_{symbol}_5m.csv.gz")


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample plus ETHBTC (quoted in BTC), LUNAUSDT (BREAK) and XRPUSDT (no stored rules: inferred)."""
    directory = tmp_path_factory.mktemp("market")
    for symbol in BUNDLED:
        _candles_as(directory, symbol, symbol)
    _candles_as(directory, "ETHUSDT", "ETHBTC")
    _candles_as(directory, "BNBUSDT", "LUNAUSDT")
    _candles_as(directory, "SOLUSDT", "XRPUSDT")
    info = json.loads((BUNDLED_DATA_DIR / EXCHANGE_INFO_FILE).read_text())
    eth = next(s for s in info["symbols"] if s["symbol"] == "ETHUSDT")
    info["symbols"] += [
        {**copy.deepcopy(eth), "symbol": "ETHBTC", "quoteAsset": "BTC"},
        {**copy.deepcopy(eth), "symbol": "LUNAUSDT", "baseAsset": "LUNA", "status": "BREAK"},
    ]
    (directory / EXCHANGE_INFO_FILE).write_text(json.dumps(info))
    return directory


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory, market_dir: Path) -> Iterator[str]:
    """A slow replay: these tests need the API, not trades."""
    with running_demo(tmp_path_factory.mktemp("demo"), speed=1, extra_env={"MARKET_DATA_DIR": str(market_dir)}) as url:
        yield url


class Account:
    """A user registered through the API, whose config the tests read back through the API."""

    def __init__(self, url: str, username: str) -> None:
        self.url, self.username = url, username
        answer = httpx.post(f"{url}/auth/register",
                            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", headers=self.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def config(self) -> dict[str, Any]:
        return dict(self.get("/trading/config"))


def log_in(page: Page, account: Account) -> None:
    page.goto("/#/settings")
    page.get_by_label("Username", exact=True).fill(account.username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page.get_by_role("heading", name="Settings", exact=True)).to_be_visible()
    expect(chips(page, "Chosen symbols")).to_have_count(len(BUNDLED))


def search_box(page: Page, name: str = "Symbols") -> Locator:
    return page.get_by_role("combobox", name=name, exact=True)


def options(page: Page, name: str = "Symbols") -> Locator:
    return page.get_by_role("listbox", name=name, exact=True).get_by_role("option")


def option(page: Page, symbol: str, name: str = "Symbols") -> Locator:
    return options(page, name).filter(has=page.locator(".symbol", has_text=re.compile(f"^{symbol}$")))


def chips(page: Page, name: str) -> Locator:
    return page.get_by_role("list", name=name).get_by_role("listitem")


def expect_chips(page: Page, name: str, symbols: list[str]) -> None:
    expect(chips(page, name)).to_have_text([re.compile(rf"^{symbol}\b") for symbol in symbols])


def save(page: Page) -> Locator:
    page.get_by_role("button", name="Save settings").click()
    return page.get_by_label("Settings status")


@pytest.fixture
def account(demo_url: str, request: pytest.FixtureRequest) -> Account:
    return Account(demo_url, re.sub(r"\W", "", request.node.name.removeprefix("test_"))[:32])


def test_typing_filters_the_pairs_and_each_shows_rank_rules_and_data(page: Page, account: Account) -> None:
    listed = {item["symbol"]: item for item in account.get("/market/symbols")["items"]}
    log_in(page, account)
    search_box(page).fill("eth")
    expect(options(page)).to_have_count(2)
    expect(option(page, "ETHUSDT")).to_contain_text(f"#{listed['ETHUSDT']['volume_rank']} by volume")
    expect(option(page, "ETHUSDT")).to_contain_text("5m data 2025-09-01 to 2025-12-31")
    expect(option(page, "ETHUSDT")).not_to_contain_text("rules")  # the exchange's own rules go without saying
    search_box(page).fill("xrp")
    expect(options(page)).to_have_count(1)
    expect(option(page, "XRPUSDT")).to_contain_text("rules inferred from candles")
    search_box(page).fill("luna")
    expect(option(page, "LUNAUSDT")).to_contain_text("no new entries now: LUNAUSDT is BREAK on the exchange")
    expect(option(page, "LUNAUSDT")).to_be_enabled()
    search_box(page).fill("")
    expect(options(page)).to_have_count(len(listed))
    assert [o.split()[0] for o in options(page).all_inner_texts()] == list(listed)  # by volume rank, as the API


def test_a_pair_not_quoted_in_usdt_is_disabled_with_its_reason(page: Page, account: Account) -> None:
    log_in(page, account)
    search_box(page).fill("ethbtc")
    ethbtc = option(page, "ETHBTC")
    expect(ethbtc).to_be_disabled()
    expect(ethbtc).to_contain_text("cannot be chosen: ETHBTC is quoted in BTC; only USDT pairs can be traded")
    ethbtc.click(force=True)  # as a user would: the click does nothing
    expect_chips(page, "Chosen symbols", BUNDLED)
    page.keyboard.press("ArrowDown")
    expect(search_box(page)).to_have_attribute("aria-activedescendant", ethbtc.get_attribute("id") or "")
    page.keyboard.press("Enter")
    expect_chips(page, "Chosen symbols", BUNDLED)
    expect(ethbtc).to_have_attribute("aria-selected", "false")


def test_picking_two_pairs_by_keyboard_and_mouse_saves_them(page: Page, account: Account) -> None:
    log_in(page, account)
    box = search_box(page)
    box.focus()
    for _ in BUNDLED:
        page.keyboard.press("Backspace")  # an empty search box's Backspace removes the last chip
    expect(chips(page, "Chosen symbols")).to_have_count(0)
    box.press_sequentially("xrp")
    page.keyboard.press("Enter")  # the first match that can be chosen is active
    expect_chips(page, "Chosen symbols", ["XRPUSDT"])
    expect(box).to_have_value("")
    box.fill("usdt")
    active = [option(page, s).get_attribute("id") or "" for s in ("ETHUSDT", "BTCUSDT")]  # by volume rank
    expect(box).to_have_attribute("aria-activedescendant", active[0])
    page.keyboard.press("ArrowDown")
    expect(box).to_have_attribute("aria-activedescendant", active[1])
    expect(option(page, "BTCUSDT")).to_have_class(re.compile(r"\bactive\b"))
    page.keyboard.press("ArrowUp")
    expect(box).to_have_attribute("aria-activedescendant", active[0])
    page.keyboard.press("Escape")
    expect(box).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("ArrowDown")
    expect(box).to_have_attribute("aria-expanded", "true")
    option(page, "SOLUSDT").click()
    expect(option(page, "SOLUSDT")).to_have_attribute("aria-selected", "true")
    expect(save(page)).to_contain_text("Settings saved (symbols)")
    assert account.config()["symbols"] == ["XRPUSDT", "SOLUSDT"]
    page.reload()
    expect_chips(page, "Chosen symbols", ["XRPUSDT", "SOLUSDT"])


def test_a_top_n_rule_with_an_exclusion_saves_instead_of_a_list(page: Page, account: Account) -> None:
    log_in(page, account)
    for symbol in BUNDLED:
        page.get_by_role("button", name=f"Remove {symbol}").click()
    expect(save(page)).to_have_text("Not saved: fix the marked fields.")
    expect(search_box(page)).to_have_accessible_description(re.compile("Pick at least one pair, or turn on the top N"))
    page.get_by_label("Trade the top N most traded pairs").check()
    page.get_by_label("Top N", exact=True).fill("60")
    expect(save(page)).to_have_text("Not saved: fix the marked fields.")
    expect(page.get_by_label("Top N", exact=True)).to_have_accessible_description(re.compile("from 1 to 50"))
    page.get_by_label("Top N", exact=True).fill("3")
    exclude = search_box(page, "Never pick (exclude)")
    exclude.fill("eth")
    page.keyboard.press("Enter")
    expect_chips(page, "Excluded symbols", ["ETHUSDT"])
    expect(save(page)).to_contain_text("Settings saved (symbols, exclude_symbols)")
    config = account.config()
    assert (config["symbols"], config["exclude_symbols"]) == (["top:3"], ["ETHUSDT"])
    chart = [o.strip() for o in page.get_by_label("Chart symbol").locator("option").all_inner_texts()]
    assert "top:3" not in chart and "ETHUSDT" not in chart and "XRPUSDT" in chart, chart
    page.reload()
    expect(page.get_by_label("Trade the top N most traded pairs")).to_be_checked()
    expect(page.get_by_label("Top N", exact=True)).to_have_value("3")


def test_an_unknown_pair_typed_shows_the_api_refusal_in_words(page: Page, account: Account) -> None:
    log_in(page, account)
    box = search_box(page)
    box.fill("ethustd")
    expect(options(page)).to_have_text([re.compile("ETHUSTD.*not in the list: add it as typed")])
    page.keyboard.press("Enter")
    expect_chips(page, "Chosen symbols", [*BUNDLED, "ETHUSTD"])
    expect(save(page)).to_have_text("Not saved: fix the marked fields.")
    error = page.locator("#cfg-symbols-error")
    expect(error).to_have_text("unknown symbol ETHUSTD; did you mean ETHUSDT?")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).to_have_accessible_description(re.compile(r"unknown symbol ETHUSTD; did you mean ETHUSDT\?"))
    assert account.config()["symbols"] == BUNDLED
    page.get_by_role("button", name="Remove ETHUSTD").click()
    expect(save(page)).to_have_text("Nothing to save.")
    expect(box).to_have_attribute("aria-invalid", "false")


@pytest.mark.parametrize("viewport", [PHONE])
def test_the_picker_works_on_a_phone_without_sideways_scrolling(page: Page, account: Account) -> None:
    log_in(page, account)
    search_box(page).click()
    expect(options(page)).to_have_count(7)
    option(page, "XRPUSDT").click()
    expect_chips(page, "Chosen symbols", [*BUNDLED, "XRPUSDT"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = option(page, "ETHBTC").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_role("region", name="Settings").screenshot(path=SHOTS / "12-symbol-picker-phone.png")
    expect(save(page)).to_contain_text("Settings saved (symbols)")
    assert account.config()["symbols"] == [*BUNDLED, "XRPUSDT"]
