// Entry point: the log-in view or the dashboard; the dashboard shows one view per hash route and refreshes it.

import { Api, session } from "./js/api.js";
import { bindAuth, showAuthMessage } from "./js/auth.js";
import { BacktestsView } from "./js/backtests.js";
import { EquityChart, PriceChart, rethemeCharts } from "./js/charts.js";
import { renderDecisions } from "./js/decisions.js";
import { EventsView } from "./js/events.js";
import { LiveFeed } from "./js/feed.js";
import { byId, el } from "./js/format.js";
import { PerformanceView } from "./js/performance.js";
import { bindTradingToggle, renderOverview } from "./js/overview.js";
import { renderPositions } from "./js/positions.js";
import { parseRoute, showRoute } from "./js/router.js";
import { SettingsForm } from "./js/settings.js";
import { bindTheme } from "./js/theme.js";
import { HistoryView, TradeDetail } from "./js/trades.js";

const REFRESH_MS = 3000;
const REFRESHING_EVENTS = new Set(["trade_executed", "position_closed", "emergency_exit", "reconciled"]);
// views whose data changes by itself; the others load when shown and when their controls change
const LIVE_VIEWS = new Set(["overview", "trades", "decisions"]);

const api = new Api(() => logout("Your session ended: log in again."));
const views = {};
let timer = null;
let running = null;
let route = parseRoute(location.hash);

function notify(text) {
  byId("toast").textContent = text;
}

function showDashboard(visible) {
  byId("auth-view").hidden = visible;
  byId("dashboard-view").hidden = !visible;
  byId("session").hidden = !visible;
  byId("main-nav").hidden = !visible;
}

function setChartSymbols(symbols) {
  const select = byId("chart-symbol");
  const chosen = select.value;
  select.replaceChildren(...symbols.map((s) => el("option", { value: s }, s)));
  if (symbols.includes(chosen)) select.value = chosen;
  views.history.setSymbols(symbols);
}

async function loadOverview() {
  const [portfolio, performance, status, positions, equity, profit] = await Promise.all([
    api.get("/portfolio"), api.get("/portfolio/performance"), api.get("/trading/status"),
    api.get("/trading/positions"), api.optional("/portfolio/equity"),
    api.optional("/portfolio/profit", { period: "day", limit: 1 }),
  ]);
  renderOverview({ portfolio, performance, status, positions, profit });
  renderPositions(positions, { api, refresh, notify });
  views.equity.render(equity, performance);
  const chart = byId("chart-symbol");
  // until the reader picks a pair, the chart shows the newest open position's
  if (!chart.dataset.chosen && positions.length && [...chart.options].some((o) => o.value === positions[0].symbol)) {
    chart.value = positions[0].symbol;
  }
  await views.price.load(byId("chart-symbol").value, byId("chart-timeframe").value, positions);
}

const LOADERS = {
  overview: loadOverview,
  trades: (id) => (id ? views.detail.load(id) : views.history.load()),
  performance: () => views.performance.load(),
  decisions: async () => renderDecisions((await api.get("/trading/analyses", { limit: 100 })).items),
  backtests: (id) => views.backtests.load(id),
  events: () => views.events.load(),
  settings: async () => {},
};

/** One refresh at a time; a request made during one is served by the same run. */
function refresh() {
  running ??= LOADERS[route.view](route.id)
    .catch((e) => { if (session.load()) notify(`Could not load this view: ${e.message}`); })
    .finally(() => { running = null; });
  return running;
}

function navigate() {
  route = parseRoute(location.hash);
  showRoute(route);
  if (route.view !== "backtests") views.backtests?.stopPolling();
  byId("trades-list").hidden = route.view === "trades" && route.id != null;
  byId("trade-detail").hidden = !(route.view === "trades" && route.id != null);
  notify("");
  running = null;
  return refresh();
}

function tick() {
  const detailShown = route.view === "trades" && route.id != null;
  if (LIVE_VIEWS.has(route.view) && !detailShown) refresh();
}

function buildViews() {
  if (views.price) return;
  views.price = new PriceChart(api);
  views.equity = new EquityChart();
  views.history = new HistoryView(api, notify);
  views.detail = new TradeDetail(api);
  views.performance = new PerformanceView(api);
  views.backtests = new BacktestsView(api);
  views.events = new EventsView(api);
  views.settings = new SettingsForm(api);
  views.feed = new LiveFeed((message) => { if (REFRESHING_EVENTS.has(message.type)) tick(); },
    () => logout("The live feed refused your token: log in again."));
  bindTradingToggle(api, refresh);
  byId("chart-symbol").addEventListener("change", (event) => { event.target.dataset.chosen = "1"; refresh(); });
  byId("chart-timeframe").addEventListener("change", refresh);
}

async function startDashboard(user, welcome = "") {
  showDashboard(true);
  buildViews();
  byId("who").textContent = user.username;
  const [status] = await Promise.all([api.get("/trading/status"), views.settings.load()]);
  byId("mode-badge").textContent = status.mode;
  byId("mode-badge").dataset.mode = status.mode;
  setChartSymbols(views.settings.tradedSymbols());
  views.feed.connect(user.id, session.load().token);
  api.optional("/events", { limit: 20 }).then((page) => page && views.feed.prime(page.items)).catch(() => {});
  await navigate();
  if (welcome) notify(welcome);
  timer = setInterval(tick, REFRESH_MS);
}

function logout(message = "") {
  clearInterval(timer);
  timer = null;
  views.feed?.close();
  views.backtests?.stopPolling();
  session.clear();
  showDashboard(false);
  showAuthMessage(message);
}

function skipToContent(event) {
  event.preventDefault();  // the hash is the route: the skip link only moves the focus
  const target = byId("dashboard-view").hidden ? byId("auth-view") : document.querySelector(".view:not([hidden])");
  const heading = target?.querySelector("h2");
  (heading ?? byId("content")).setAttribute("tabindex", "-1");
  (heading ?? byId("content")).focus();
}

function main() {
  bindTheme(rethemeCharts);
  byId("skip-link").addEventListener("click", skipToContent);
  byId("logout").addEventListener("click", () => logout("You are logged out."));
  document.addEventListener("trdbot:settings-saved", () => setChartSymbols(views.settings.tradedSymbols()));
  window.addEventListener("hashchange", () => { if (session.load()?.user) navigate(); });
  bindAuth(api, startDashboard);
  const saved = session.load();
  if (saved?.user) startDashboard(saved.user);
  else showDashboard(false);
}

main();
