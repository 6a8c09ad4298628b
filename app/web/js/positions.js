// Open positions, each with a Close button that asks for confirmation in a dialog first.

import { el, emptyRow, plain, row, signClass, time, usdt } from "./format.js";

function confirmClose(position) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent =
    `Sell the ${position.amount} ${position.symbol} held (trade #${position.trade_id}) at the market price now?`;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

export function renderPositions(positions, { api, refresh, notify }) {
  const body = document.getElementById("positions-body");
  if (!positions.length) {
    body.replaceChildren(emptyRow(10, "No open positions."));
    return;
  }
  body.replaceChildren(...positions.map((p) => {
    const close = el("button", {
      type: "button", class: "danger small", "aria-label": `Close position ${p.trade_id} ${p.symbol}`,
      onclick: async () => {
        if (!(await confirmClose(p))) return;
        try {
          const trade = await api.post(`/trading/close/${p.trade_id}`);
          notify(`Closed trade #${trade.id} at ${trade.exit_price}: P&L ${usdt(trade.profit_loss)} USDT`);
        } catch (e) {
          notify(`Could not close trade #${p.trade_id}: ${e.message}`);
        }
        await refresh();
      },
    }, "Close");
    return row([
      el("td", {}, el("a", { href: `#/trades/${p.trade_id}` }, `#${p.trade_id}`)), p.symbol, p.amount, p.entry_price, p.stop_loss, p.take_profit, plain(p.current_price),
      el("td", { class: signClass(p.unrealized_pnl) }, usdt(p.unrealized_pnl)), time(p.opened_at), el("td", {}, close),
    ]);
  }));
}
