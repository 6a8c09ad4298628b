// Trade history: symbol and status filters and paging on the server, the exit reason filter on the loaded page.

import { el, emptyRow, plain, row, signClass, time, usdt } from "./format.js";

export class HistoryView {
  constructor(api) {
    this.api = api;
    this.offset = 0;
    this.total = 0;
    this.trades = [];
    this.controls = {
      symbol: document.getElementById("filter-symbol"),
      status: document.getElementById("filter-status"),
      exit: document.getElementById("filter-exit"),
      size: document.getElementById("page-size"),
    };
    for (const control of Object.values(this.controls)) {
      control.addEventListener("change", () => { this.offset = 0; this.load(); });
    }
    document.getElementById("page-prev").addEventListener("click", () => this.turn(-1));
    document.getElementById("page-next").addEventListener("click", () => this.turn(1));
  }

  get limit() {
    return Number(this.controls.size.value);
  }

  setSymbols(symbols) {
    const select = this.controls.symbol;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "All"), ...symbols.map((s) => el("option", { value: s }, s)));
    select.value = symbols.includes(chosen) ? chosen : "";
  }

  turn(direction) {
    const next = this.offset + direction * this.limit;
    if (next < 0 || next >= Math.max(this.total, 1)) return;
    this.offset = next;
    this.load();
  }

  async load() {
    const { symbol, status, exit } = this.controls;
    // an exit reason only exists on closed trades, so ask the server for those when filtering by it
    const statusQuery = status.value || (exit.value ? "closed" : "");
    const page = await this.api.get("/trading/trades", {
      symbol: symbol.value, status: statusQuery, limit: this.limit, offset: this.offset,
    });
    this.total = page.total;
    this.trades = page.items;
    this.render();
  }

  render() {
    const exit = this.controls.exit.value;
    const shown = exit ? this.trades.filter((t) => t.exit_reason === exit) : this.trades;
    const body = document.getElementById("history-body");
    body.replaceChildren(...(shown.length ? shown.map(tradeRow) : [emptyRow(12, "No trades match.")]));
    const pages = Math.max(1, Math.ceil(this.total / this.limit));
    const page = Math.floor(this.offset / this.limit) + 1;
    document.getElementById("page-info").textContent = `Page ${page} of ${pages} · ${this.total} trades`;
    document.getElementById("page-prev").disabled = this.offset === 0;
    document.getElementById("page-next").disabled = page >= pages;
  }
}

function tradeRow(t) {
  return row([
    `#${t.id}`, t.symbol, el("td", {}, el("span", { class: `status status-${t.status}` }, t.status)), t.amount,
    t.price, plain(t.exit_price), plain(t.exit_reason),
    el("td", { class: signClass(t.profit_loss) }, usdt(t.profit_loss)),
    el("td", { class: signClass(t.profit_loss_percentage) }, plain(t.profit_loss_percentage)),
    usdt(t.fees, 4), time(t.executed_at), time(t.closed_at),
  ]);
}
