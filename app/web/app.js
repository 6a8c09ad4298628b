// Entry point: switches between the log-in view and the dashboard, and refreshes the dashboard's views.

import { Api, session } from "./js/api.js";
import { bindAuth, showAuthMessage } from "./js/auth.js";
import { EquityChart, PriceChart } from "./js/charts.js";
import { renderDecisions } from "./js/decisions.js";
import { LiveFeed } from "./js/feed.js";
import { el } from "./js/format.js";
import { HistoryView } from "./js/history.js";
import { bindTradingToggle, renderOverview } from "./js/overview.js";
import { renderPositions } from "./js/positions.js";
import { SettingsForm } from "./js/settings.js";

const REFRESH_MS = 3000;
const REFRESHING_EVENTS = new Set(["trade_executed", "position_closed", "emergency_exit", "reconciled"]);

const api = new Api(() => logout("Your session ended: log in again."));
const views = {};
let timer = null;
let running = null;

function byId(id) {
  return document.getElementById(id);
}

function notify(text) {
  byId("toast").textContent = text;
}

function showDashboard(visible) {
  byId("auth-view").hidden = visible;
  byId("dashboard-view").hidden = !visible;
  byId("session").hidden = !visible;
}

function setChartSymbols(symbols) {
  const select = byId("chart-symbol");
  const chosen = select.value;
  select.replaceChildren(...symbols.map((s) => el("option", { value: s }, s)));
  if (symbols.includes(chosen)) select.value = chosen;
  views.history.setSymbols(symbols);
}

async function refreshAll() {
  const [portfolio, performance, status, positions, analyses] = await Promise.all([
    api.get("/portfolio"), api.get("/portfolio/performance"), api.get("/trading/status"),
    api.get("/trading/positions"), api.get("/trading/analyses", { limit: 50 }),
  ]);
  renderOverview({ portfolio, performance, status });
  renderPositions(positions, { api, refresh, notify });
  renderDecisions(analyses.items);
  views.equity.render(performance);
  await Promise.all([
    views.history.load(),
    views.price.load(byId("chart-symbol").value, byId("chart-timeframe").value, positions),
  ]);
}

/** One refresh at a time; a request made during one is served by the same run. */
function refresh() {
  running ??= refreshAll()
    .catch((e) => { if (session.load()) notify(`Refresh failed: ${e.message}`); })
    .finally(() => { running = null; });
  return running;
}

function buildViews() {
  if (views.price) return;
  views.price = new PriceChart(api);
  views.equity = new EquityChart();
  views.history = new HistoryView(api);
  views.settings = new SettingsForm(api);
  views.feed = new LiveFeed((message) => { if (REFRESHING_EVENTS.has(message.type)) refresh(); },
    () => logout("The live feed refused your token: log in again."));
  bindTradingToggle(api, refresh);
  byId("chart-symbol").addEventListener("change", refresh);
  byId("chart-timeframe").addEventListener("change", refresh);
}

async function startDashboard(user) {
  showDashboard(true);
  buildViews();
  byId("who").textContent = user.username;
  await views.settings.load();
  setChartSymbols(views.settings.tradedSymbols());
  views.feed.connect(user.id, session.load().token);
  await refresh();
  timer = setInterval(refresh, REFRESH_MS);
}

function logout(message = "") {
  clearInterval(timer);
  timer = null;
  views.feed?.close();
  session.clear();
  showDashboard(false);
  showAuthMessage(message);
}

function main() {
  byId("logout").addEventListener("click", () => logout("You are logged out."));
  document.addEventListener("trdbot:settings-saved", () => setChartSymbols(views.settings.tradedSymbols()));
  bindAuth(api, startDashboard);
  const saved = session.load();
  if (saved?.user) startDashboard(saved.user);
  else showDashboard(false);
}

main();
