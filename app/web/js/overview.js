// Overview: mode, balance and total value, realised P&L, win rate, trades today, open positions, engine state.

import { el, signClass, time, usdt } from "./format.js";

function figure(label, value, cls = "") {
  return [el("dt", {}, label), el("dd", { class: cls, "aria-label": label }, value)];
}

function usdtBalance(portfolio) {
  const usdtRow = portfolio.balances.find((b) => b.asset === "USDT");
  return usdtRow ? usdt(Number(usdtRow.free) + Number(usdtRow.locked)) : "0.00";
}

export function renderOverview({ portfolio, performance, status }) {
  const figures = [
    ...figure("Mode", portfolio.mode),
    ...figure("USDT balance", usdtBalance(portfolio)),
    ...figure("Total value (USDT)", usdt(portfolio.total_value_usdt)),
    ...figure("Realised P&L (USDT)", usdt(performance.total_realized_pnl), signClass(performance.total_realized_pnl)),
    ...figure("Win rate", `${usdt(performance.win_rate, 1)} % of ${performance.total_trades}`),
    ...figure("Max drawdown", `${usdt(performance.max_drawdown_pct)} %`),
    ...figure("Trades today", `${status.trades_today} / ${status.daily_trade_limit}`),
    ...figure("Open positions", String(status.open_positions)),
    ...figure("Engine", status.state ?? "–"),
  ];
  document.getElementById("overview-figures").replaceChildren(...figures);
  const line = status.is_active ? "Trading is on" : "Trading is off";
  const next = status.next_cycle_at ? ` · next cycle ${time(status.next_cycle_at)} UTC` : "";
  document.getElementById("engine-line").textContent = `${line}${next}`;
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
