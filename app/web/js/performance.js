// Performance: profit per day/week/month (bars and table), per pair, exit reasons, profit factor and expectancy.

import { byId, duration, el, emptyRow, exitReason, percent, row, signClass, usdt } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const PERIOD_WORDS = { day: "day", week: "week", month: "month" };

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** Bars oldest to newest, gains up and losses down from a zero line; SVG so the page's CSP needs no inline style. */
export function profitBars(items) {
  const data = [...items].reverse();
  const width = 600;
  const height = 180;
  const most = Math.max(1e-9, ...data.map((i) => Math.abs(Number(i.profit))));
  const zero = height / 2;
  const step = width / Math.max(data.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", "aria-hidden": "true" });
  chart.append(svg("line", { x1: 0, x2: width, y1: zero, y2: zero, class: "axis" }));
  data.forEach((item, i) => {
    const value = Number(item.profit);
    const h = (Math.abs(value) / most) * (zero - 4);
    const bar = svg("rect", {
      x: i * step + step * 0.15, width: step * 0.7, y: value >= 0 ? zero - h : zero, height: Math.max(h, 0.5),
      class: value >= 0 ? "bar-gain" : "bar-loss",
    });
    bar.append(svg("title", {}));
    bar.firstChild.textContent = `${item.start.slice(0, 10)}: ${usdt(item.profit)} USDT`;
    chart.append(bar);
  });
  return chart;
}

export class PerformanceView {
  constructor(api) {
    this.api = api;
    this.period = byId("profit-period");
    this.period.addEventListener("change", () => this.load());
  }

  async load() {
    const period = this.period.value;
    const [profit, pairs, overall] = await Promise.all([
      this.api.optional("/portfolio/profit", { period, limit: 30 }), this.api.optional("/portfolio/pairs"),
      this.api.get("/portfolio/performance"),
    ]);
    this.renderFigures(overall, pairs);
    this.renderProfit(period, profit);
    this.renderPairs(pairs);
  }

  renderFigures(overall, pairs) {
    const figures = [
      ["Closed trades", String(overall.total_trades)], ["Win rate", percent(overall.win_rate, 1)],
      ["Realised P&L (USDT)", usdt(overall.total_realized_pnl)], ["Fees paid (USDT)", usdt(overall.total_fees)],
      ["Profit factor", pairs ? (pairs.profit_factor == null ? "no losing trade yet" : usdt(pairs.profit_factor))
        : "not available"],
      ["Expectancy (USDT per trade)", pairs ? usdt(pairs.expectancy) : "not available"],
      ["Max drawdown", percent(overall.max_drawdown_pct)],
    ];
    byId("performance-figures").replaceChildren(...figures.flatMap(([label, value]) => [
      el("dt", {}, label), el("dd", { "aria-label": label, class: label.includes("P&L") ? signClass(value) : "" },
        value)]));
  }

  renderProfit(period, profit) {
    byId("profit-caption").textContent = `Profit per ${PERIOD_WORDS[period]} (USDT), newest first`;
    const bars = byId("profit-bars");
    if (!profit) {
      bars.replaceChildren(el("p", { class: "notice" }, "Profit per period is not available from this server yet."));
      byId("profit-body").replaceChildren(emptyRow(6, "not available"));
      return;
    }
    const items = profit.items;
    bars.replaceChildren(profitBars(items));
    bars.setAttribute("aria-label", `Profit per ${period}, ${items.length} bars, oldest to newest`);
    byId("profit-body").replaceChildren(...(items.length ? items.map((i) => row([
      i.start.slice(0, 10), String(i.trades), String(i.wins), String(i.losses),
      el("td", { class: signClass(i.profit) }, usdt(i.profit)),
      el("td", { class: signClass(i.profit_pct) }, percent(i.profit_pct)),
    ])) : [emptyRow(6, "No closed trades yet.")]));
  }

  renderPairs(pairs) {
    if (!pairs) {
      byId("pairs-body").replaceChildren(emptyRow(5, "Per-pair figures are not available from this server yet."));
      byId("exits-body").replaceChildren(emptyRow(3, "Exit reasons are not available from this server yet."));
      return;
    }
    byId("pairs-body").replaceChildren(...(pairs.pairs.length ? pairs.pairs.map((p) => row([
      p.symbol, String(p.trades), percent(p.win_rate, 1), el("td", { class: signClass(p.profit) }, usdt(p.profit)),
      duration(p.avg_duration_s),
    ])) : [emptyRow(5, "No closed trades yet.")]));
    const reasons = Object.entries(pairs.exit_reasons || {}).sort((a, b) => b[1] - a[1]);
    const total = reasons.reduce((n, [, count]) => n + count, 0);
    byId("exits-body").replaceChildren(...(reasons.length ? reasons.map(([reason, count]) => row([
      exitReason(reason), String(count), percent((count * 100) / total, 0),
    ])) : [emptyRow(3, "No closed trades yet.")]));
  }
}
