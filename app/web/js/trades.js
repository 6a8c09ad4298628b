// Trades: the history (server-side symbol/status filters and paging, exit reason on the loaded page), one trade's
// detail, and the CSV export.

import { ApiError } from "./api.js";
import {
  byId, duration, el, emptyRow, exitReason, kv, plain, row, signClass, time, tradeStatus, usdt,
} from "./format.js";

export class HistoryView {
  constructor(api, notify) {
    this.api = api;
    this.offset = 0;
    this.total = 0;
    this.trades = [];
    this.controls = {
      symbol: byId("filter-symbol"), status: byId("filter-status"), exit: byId("filter-exit"), size: byId("page-size"),
    };
    for (const control of Object.values(this.controls)) {
      control.addEventListener("change", () => { this.offset = 0; this.load(); });
    }
    byId("page-prev").addEventListener("click", () => this.turn(-1));
    byId("page-next").addEventListener("click", () => this.turn(1));
    byId("trades-csv").addEventListener("click", () => this.exportCsv().catch((e) => notify(
      `Could not download the trades: ${e.message}`)));
  }

  get limit() {
    return Number(this.controls.size.value);
  }

  get query() {
    const { symbol, status, exit } = this.controls;
    // an exit reason only exists on closed trades, so ask the server for those when filtering by it
    return { symbol: symbol.value, status: status.value || (exit.value ? "closed" : "") };
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
    const page = await this.api.get("/trading/trades", { ...this.query, limit: this.limit, offset: this.offset });
    this.total = page.total;
    this.trades = page.items;
    this.render();
  }

  exportCsv() {
    const params = new URLSearchParams(Object.entries(this.query).filter(([, v]) => v));
    return this.api.download(`/trading/trades.csv${params.size ? `?${params}` : ""}`, "trades.csv");
  }

  render() {
    const exit = this.controls.exit.value;
    const shown = exit ? this.trades.filter((t) => t.exit_reason === exit) : this.trades;
    byId("history-body").replaceChildren(...(shown.length ? shown.map(tradeRow) : [emptyRow(12, "No trades match.")]));
    const pages = Math.max(1, Math.ceil(this.total / this.limit));
    const page = Math.floor(this.offset / this.limit) + 1;
    byId("page-info").textContent = `Page ${page} of ${pages} · ${this.total} trades`;
    byId("page-prev").disabled = this.offset === 0;
    byId("page-next").disabled = page >= pages;
  }
}

function statusCell(status) {
  return el("td", {}, el("span", { class: `status status-${tradeStatus(status)}` }, tradeStatus(status)));
}

function tradeRow(t) {
  return row([
    el("td", {}, el("a", { href: `#/trades/${t.id}`, "aria-label": `Trade ${t.id} details` }, `#${t.id}`)),
    t.symbol, statusCell(t.status), t.amount, t.price, plain(t.exit_price), exitReason(t.exit_reason),
    el("td", { class: signClass(t.profit_loss) }, usdt(t.profit_loss)),
    el("td", { class: signClass(t.profit_loss_percentage) }, plain(t.profit_loss_percentage)),
    usdt(t.fees, 4), time(t.executed_at), time(t.closed_at),
  ]);
}

const PURPOSES = { entry: "entry", protect: "OCO (stop and target)", exit: "exit", adopted: "adopted" };
const LEG_KINDS = { take_profit: "target leg", stop_loss: "stop leg" };
const lower = (v) => (v == null ? "–" : String(v).toLowerCase().replaceAll("_", " "));

/** One row per order, and under an OCO one row per leg with its price and state. */
function orderRows(order) {
  const filled = Number(order.executed_qty) ? `${order.executed_qty} at ${plain(order.average_price)}` : "nothing";
  const fee = Number(order.commission) ? `${order.commission} ${order.commission_asset ?? ""}`.trim() : "–";
  const main = row([
    PURPOSES[order.purpose] ?? order.purpose, `${lower(order.side)} ${lower(order.type)}`, order.quantity,
    plain(order.price ?? order.stop_price), lower(order.status), filled, fee, time(order.transact_time ?? order.created_at),
  ]);
  const legs = (order.legs || []).map((leg) => row([
    `↳ ${LEG_KINDS[leg.kind] ?? leg.kind}`, "", "", plain(leg.price),
    leg.status ? lower(leg.status) : `as the list: ${lower(order.status)}`, "", "", "",
  ]));
  return [main, ...legs];
}

function ordersTable(orders) {
  if (!orders?.length) return el("p", { class: "muted" }, "No orders recorded.");
  const heads = ["Order", "Side and type", "Quantity", "Price or stop", "State", "Filled", "Fee", "Time (UTC)"];
  return el("div", { class: "table-wrap" }, el("table", {},
    el("caption", { class: "sr-only" }, "Orders of this trade: entry, OCO legs and exits"),
    el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...orders.flatMap(orderRows))));
}

function decisionPart(decision) {
  if (!decision) return el("p", { class: "muted" }, "The decision that opened it is not recorded.");
  const reasons = (decision.reasons || []).join("; ");
  return kv([
    ["Signal", decision.signal], ["Confidence", `${decision.confidence} %`], ["Analyst", plain(decision.analyzer)],
    ["Regime", plain(decision.regime)], ["Confluence", plain(decision.confluence_score)],
    ["Analysed (UTC)", time(decision.created_at)], ["Decision", plain(decision.decision)],
    ["Reasoning", plain(decision.reasoning)], ["Reasons", reasons || "–"],
  ]);
}

export class TradeDetail {
  constructor(api) {
    this.api = api;
  }

  async load(id) {
    const title = byId("trade-detail-title");
    const body = byId("trade-detail-body");
    title.textContent = `Trade #${id}`;
    try {
      const detail = await this.api.optional(`/trading/trades/${id}/detail`);
      const trade = detail?.trade ?? (await this.api.get(`/trading/trades/${id}`));
      title.textContent = `Trade #${trade.id} · ${trade.symbol} · ${tradeStatus(trade.status)}`;
      body.replaceChildren(...this.parts(trade, detail));
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      body.replaceChildren(el("p", { class: "notice" }, e.status === 404 ? `There is no trade #${id} of yours.`
        : `Could not load trade #${id}: ${e.message}`));
    }
  }

  parts(trade, detail) {
    const seconds = detail?.duration_seconds ?? trade.duration_seconds;
    const held = trade.closed_at ? duration(seconds) : `${duration(seconds)} so far`;
    const entry = el("section", { "aria-label": "Entry and exit" }, el("h3", {}, "Entry and exit"), kv([
      ["Status", tradeStatus(trade.status)], ["Bought (gross)", `${trade.amount} ${trade.symbol}`],
      ["Entry price", trade.price], ["Stop", trade.stop_loss], ["Target", trade.take_profit],
      ["Opened (UTC)", time(trade.executed_at)], ["Exit price", plain(trade.exit_price)],
      ["Exit reason", exitReason(trade.exit_reason)], ["Closed (UTC)", time(trade.closed_at)],
      ["Duration", seconds == null ? "–" : held],
      ["P&L (USDT, net of fees)", el("span", { class: signClass(trade.profit_loss) }, usdt(trade.profit_loss))],
      ["P&L %", plain(trade.profit_loss_percentage)], ["Fees (USDT)", usdt(trade.fees, 4)],
    ]));
    const decision = el("section", { "aria-label": "Opening decision" }, el("h3", {}, "The decision that opened it"),
      decisionPart(detail?.decision));
    const grid = el("div", { class: "detail-grid" }, entry, decision);
    if (!detail) {
      return [grid, el("p", { class: "notice" }, "Orders, OCO legs and fills are not available from this server yet.")];
    }
    const fees = el("section", { "aria-label": "Fees" }, el("h3", {}, "Fees (USDT)"), kv([
      ["Entry fee", detail.fees.entry_fee], ["Exit fee", plain(detail.fees.exit_fee)], ["Total", detail.fees.total],
    ]));
    grid.append(fees);
    return [grid, el("h3", {}, "Orders and fills"), ordersTable(detail.orders)];
  }
}
