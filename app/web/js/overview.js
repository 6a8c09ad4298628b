// Overview: one coherent trading state, balances, today's and total P&L, open positions.

import { el, percent, signClass, time, usdt } from "./format.js";

const ENGINE_STATES = {
  ACTIVE: "",
  REDUCING: "The engine is only closing positions for now (risk limit reached): it opens no new trades for anyone.",
  HALTED: "The engine is halted: it only protects open positions with their stops.",
};

function figure(label, value, cls = "") {
  return [el("dt", {}, label), el("dd", { class: cls, "aria-label": label }, value)];
}

function usdtBalance(portfolio) {
  const usdtRow = portfolio.balances.find((b) => b.asset === "USDT");
  return usdtRow ? usdt(Number(usdtRow.free) + Number(usdtRow.locked)) : "0.00";
}

/** "Trading is on/off" and what that means, with the engine's own state only when it changes the answer. */
export function tradingSentence(status) {
  const yours = status.is_active
    ? "Trading is on: the engine opens and closes trades for you."
    : "Trading is off: the engine opens no new trades for you; open positions keep their stop and target.";
  const engine = ENGINE_STATES[status.state] ?? `The engine reports ${String(status.state).toLowerCase()}.`;
  const next = status.next_cycle_at ? ` Next analysis ${time(status.next_cycle_at)} UTC.` : "";
  return [yours, engine].filter(Boolean).join(" ") + next;
}

function todayFigure(profit) {
  if (!profit) return figure("P&L today (USDT)", "not available");
  const today = profit.items[0];
  const label = today ? `P&L on ${today.start.slice(0, 10)} (USDT)` : "P&L today (USDT)";
  return figure(label, usdt(today?.profit ?? 0), signClass(today?.profit));
}

export function renderOverview({ portfolio, performance, status, positions, profit }) {
  const unrealised = positions.reduce((sum, p) => sum + Number(p.unrealized_pnl ?? 0), 0);
  const figures = [
    ...figure("Mode", portfolio.mode),
    ...figure("USDT balance", usdtBalance(portfolio)),
    ...figure("Total value (USDT)", usdt(portfolio.total_value_usdt)),
    ...todayFigure(profit),
    ...figure("Realised P&L (USDT)", usdt(performance.total_realized_pnl), signClass(performance.total_realized_pnl)),
    ...figure("Unrealised P&L (USDT)", usdt(unrealised), signClass(String(unrealised))),
    ...figure("Win rate", `${percent(performance.win_rate, 1)} of ${performance.total_trades}`),
    ...figure("Trades today", `${status.trades_today} / ${status.daily_trade_limit}`),
    ...figure("Open positions", String(status.open_positions)),
  ];
  document.getElementById("overview-figures").replaceChildren(...figures);
  document.getElementById("engine-line").textContent = tradingSentence(status);
  const toggle = document.getElementById("toggle-trading");
  toggle.textContent = status.is_active ? "Stop trading" : "Start trading";
  toggle.dataset.active = String(status.is_active);
  toggle.className = status.is_active ? "danger" : "primary";
  const badge = document.getElementById("mode-badge");
  badge.textContent = portfolio.mode;
  badge.dataset.mode = portfolio.mode;
}

export function bindTradingToggle(api, refresh) {
  const toggle = document.getElementById("toggle-trading");
  toggle.addEventListener("click", async () => {
    toggle.disabled = true;
    try {
      await api.post(toggle.dataset.active === "true" ? "/trading/stop" : "/trading/start");
      await refresh();
    } finally {
      toggle.disabled = false;
    }
  });
}
