"""The web dashboard in Debian's Chromium against `trdbot demo`: the whole user journey, with screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from tests.web.demo_server import running_demo

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "screenshots"
TRADE_WAIT_MS = 90_000  # market replay at 1200x: 90 s of wall time is 30 hours of market time
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`trdbot demo` on the bundled sample in a fresh directory (so ./var starts empty), replaying at 1200x."""
    with running_demo(tmp_path_factory.mktemp("demo"), speed=1200) as url:
        yield url


def shot(page: Page, name: str | None, full_page: bool = True) -> None:
    if name is None:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}.png", full_page=full_page)


def region(page: Page, name: str) -> Locator:
    return page.get_by_role("region", name=name)


def register_and_log_in(page: Page, username: str, shots: bool = True) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shot(page, "01-login" if shots else None)
    page.get_by_label("New username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_role("button", name="Create account and log in").click()
    expect(page.get_by_label("Notice")).to_contain_text(f"Welcome, {username}")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_label("Signed in user")).to_have_text(username)
    expect(page.get_by_label("Trading mode")).to_have_text("paper")
    expect(page.get_by_label("Live feed connection")).to_have_text("connected")
    shot(page, "03-logged-in" if shots else None)


def start_trading(page: Page) -> None:
    page.get_by_role("button", name="Start trading").click()
    expect(page.get_by_role("button", name="Stop trading")).to_be_visible()
    expect(page.get_by_label("Trading status")).to_contain_text("Trading is on")
    shot(page, "04-trading-started")


def first_trade_symbol(page: Page) -> str:
    """Waits for the engine to trade for this user; returns the symbol of the newest trade in the history."""
    expect(page.get_by_label("Live event feed")).to_contain_text("Trade opened", timeout=TRADE_WAIT_MS)
    expect(page.get_by_label("Live event feed")).not_to_contain_text("{")
    page.get_by_role("link", name="Trades", exact=True).click()
    trades = region(page, "Trades").get_by_role("row").filter(has_text=re.compile(r"#\d+"))
    expect(trades.first).to_be_visible()
    symbol = trades.first.get_by_role("cell").nth(1).inner_text()
    page.get_by_role("link", name="Overview", exact=True).click()
    return symbol


def see_trade_on_chart(page: Page, symbol: str) -> None:
    page.get_by_label("Chart symbol").select_option(symbol)
    summary = page.get_by_label("Chart summary")
    expect(summary).to_contain_text(symbol)
    expect(summary).to_have_text(re.compile(r"[1-9]\d* entry"), timeout=20_000)
    expect(summary).to_have_text(re.compile(r"[1-9]\d* support/resistance levels"))
    shot(page, "05-trade-on-chart", full_page=False)


def close_a_position(page: Page) -> str:
    """Closes an open position through the confirmation dialog; the OCO may win a race, so retry a few times."""
    positions = region(page, "Open positions")
    for _ in range(5):
        close = positions.get_by_role("button", name=re.compile(r"^Close position \d+"))
        expect(close.first).to_be_visible(timeout=TRADE_WAIT_MS)
        label = close.first.get_attribute("aria-label") or ""
        close.first.click()
        dialog = page.get_by_role("dialog", name="Close position?")
        expect(dialog).to_be_visible()
        shot(page, "06-close-dialog", full_page=False)
        dialog.get_by_role("button", name="Confirm close").click()
        expect(dialog).to_be_hidden()
        notice = page.get_by_label("Notice")
        expect(notice).to_have_text(re.compile(r"^(Closed|Could not close) trade"))
        if notice.inner_text().startswith("Closed"):
            return label.split()[2]
    pytest.fail("every close lost its race against the OCO")


def see_manual_exit(page: Page, trade_id: str) -> None:
    page.get_by_role("link", name="Trades", exact=True).click()
    page.get_by_label("Filter exit reason").select_option("MANUAL")
    row = region(page, "Trades").get_by_role("row").filter(has_text=f"#{trade_id}")
    expect(row).to_contain_text("manual")
    expect(row).to_contain_text("closed")
    shot(page, "07-closed-manually")


def change_settings(page: Page) -> None:
    page.get_by_role("link", name="Settings", exact=True).click()
    risk = region(page, "Settings").get_by_label("Risk per trade (%)")
    risk.fill("5")
    page.get_by_role("button", name="Save settings").click()
    expect(risk).to_have_attribute("aria-invalid", "true")
    expect(risk).to_have_accessible_description(re.compile(r"less than or equal to 2"))
    expect(page.get_by_label("Settings status")).to_have_text("Not saved: fix the marked fields.")
    risk.scroll_into_view_if_needed()
    shot(page, "08-settings-invalid", full_page=False)
    risk.fill("0.5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_label("Settings status")).to_contain_text("Settings saved")
    expect(risk).to_have_attribute("aria-invalid", "false")
    expect(risk).to_have_value("0.5")
    shot(page, "09-settings-saved", full_page=False)


def log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "11-logged-out")


def test_user_journey_from_registration_to_logout(page: Page) -> None:
    register_and_log_in(page, "alice_web")
    start_trading(page)
    symbol = first_trade_symbol(page)
    see_trade_on_chart(page, symbol)
    trade_id = close_a_position(page)
    see_manual_exit(page, trade_id)
    change_settings(page)
    page.get_by_role("link", name="Overview", exact=True).click()
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "10-dashboard", full_page=False)
    log_out(page)


def test_live_feed_reconnects_after_a_drop(page: Page, demo_url: str) -> None:
    connections: list[WebSocketRoute] = []

    def relay(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        connections.append(ws)

    page.route_web_socket(re.compile(r"/ws/\d+"), relay)
    register_and_log_in(page, "bob_web", shots=False)
    state = page.get_by_label("Live feed connection")
    expect(state).to_have_text("connected")
    connections[0].close(code=1011, reason="server restart")
    expect(state).to_have_text(re.compile(r"reconnecting in \d+ s"))
    expect(state).to_have_text("connected", timeout=10_000)
    assert len(connections) == 2


def test_a_live_feed_refused_with_1008_logs_out(page: Page) -> None:
    """The server accepts the feed's socket and closes it with 1008 when the token is not the path's user's."""
    register_and_log_in(page, "carl_web", shots=False)
    page.evaluate("""() => {
        const saved = JSON.parse(sessionStorage.getItem("trdbot.session"));
        saved.user.id += 1000;
        sessionStorage.setItem("trdbot.session", JSON.stringify(saved));
    }""")
    page.reload()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#auth-message")).to_have_text("The live feed refused your token: log in again.")
    assert page.evaluate("sessionStorage.length") == 0


def test_api_docs_render_from_this_server_under_the_csp(page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto("/docs")
    expect(page.get_by_role("heading", name=re.compile("TRD Bot"))).to_be_visible()
    expect(page.get_by_text("/auth/login").first).to_be_visible()
    assert all(url.startswith(page.context.pages[0].url.split("/docs")[0]) for url in requested), requested
