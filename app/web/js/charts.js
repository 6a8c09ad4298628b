// Charts: candles of one symbol with trade markers, stop/target lines and S/R levels; equity and drawdown.

import { createChart, LineStyle } from "../vendor/lightweight-charts.standalone.production.mjs";
import { el, seconds, time, usdt } from "./format.js";

const COLORS = { up: "#26a69a", down: "#ef5350", entry: "#2962ff", level: "#8a8f98" };
const MAX_LEVELS = 6;
const charts = [];

/** Text and grid colours from the page's theme (CSS custom properties). */
function themeOptions() {
  const css = getComputedStyle(document.documentElement);
  const text = css.getPropertyValue("--text").trim() || "#d1d4dc";
  const grid = css.getPropertyValue("--line").trim() || "#2a2e39";
  return {
    layout: { background: { color: "transparent" }, textColor: text },
    grid: { vertLines: { color: grid }, horzLines: { color: grid } },
    rightPriceScale: { borderColor: grid },
  };
}

function baseChart(container) {
  const chart = createChart(container, {
    autoSize: true, ...themeOptions(), timeScale: { timeVisible: true, secondsVisible: false },
  });
  charts.push(chart);
  return chart;
}

/** Repaints every chart in the current theme's colours. */
export function rethemeCharts() {
  for (const chart of charts) chart.applyOptions(themeOptions());
}

/** Time of the last bar opened at or before `t` (markers must sit on a bar); null before the first bar. */
function barAt(barTimes, t) {
  let lo = 0;
  let hi = barTimes.length - 1;
  if (hi < 0 || t < barTimes[0]) return null;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (barTimes[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  return barTimes[lo];
}

function tradeMarkers(trades, barTimes) {
  const markers = [];
  for (const t of trades) {
    const entry = barAt(barTimes, seconds(t.executed_at));
    if (entry != null) {
      markers.push({ time: entry, position: "belowBar", shape: "arrowUp", color: COLORS.entry, id: `entry-${t.id}` });
    }
    const exit = t.closed_at ? barAt(barTimes, seconds(t.closed_at)) : null;
    if (exit != null) {
      const color = String(t.profit_loss).startsWith("-") ? COLORS.down : COLORS.up;
      markers.push({ time: exit, position: "aboveBar", shape: "arrowDown", color, id: `exit-${t.id}` });
    }
  }
  return markers.sort((a, b) => a.time - b.time);
}

export class PriceChart {
  constructor(api) {
    this.api = api;
    this.chart = baseChart(document.getElementById("price-chart"));
    this.series = this.chart.addCandlestickSeries({
      upColor: COLORS.up, downColor: COLORS.down, borderVisible: false, wickUpColor: COLORS.up, wickDownColor: COLORS.down,
      autoscaleInfoProvider: (original) => this.autoscale(original()),
    });
    this.lines = [];
    this.keepInView = [];
    this.shown = "";
  }

  async load(symbol, timeframe, positions) {
    if (!symbol) return;
    const [candles, levels, trades] = await Promise.all([
      this.api.get("/market/candles", { symbol, timeframe, limit: 300 }),
      this.api.get("/market/levels", { symbol }),
      this.api.get("/trading/trades", { symbol, limit: 200 }),
    ]);
    const bars = candles.items.map((c) => ({
      time: seconds(c.time), open: Number(c.open), high: Number(c.high), low: Number(c.low), close: Number(c.close),
    }));
    this.series.setData(bars);
    const markers = tradeMarkers(trades.items, bars.map((b) => b.time));
    this.series.setMarkers(markers);
    const open = positions.filter((p) => p.symbol === symbol);
    this.drawLines(open, levels.items.slice(0, MAX_LEVELS));
    if (this.shown !== `${symbol}/${timeframe}`) this.chart.timeScale().fitContent();
    this.shown = `${symbol}/${timeframe}`;
    this.summarise(symbol, timeframe, candles.items, markers, open, levels.items.length);
  }

  /** Widens the price scale so every open position's stop and target line stays on screen. */
  autoscale(info) {
    if (!info?.priceRange || !this.keepInView.length) return info;
    const { minValue, maxValue } = info.priceRange;
    const priceRange = {
      minValue: Math.min(minValue, ...this.keepInView), maxValue: Math.max(maxValue, ...this.keepInView),
    };
    return { ...info, priceRange };
  }

  drawLines(positions, levels) {
    this.keepInView = positions.flatMap((p) => [Number(p.stop_loss), Number(p.take_profit)]);
    for (const line of this.lines) this.series.removePriceLine(line);
    const specs = [];
    for (const p of positions) {
      specs.push({ price: p.entry_price, color: COLORS.entry, lineStyle: LineStyle.Dotted, title: `entry #${p.trade_id}` });
      specs.push({ price: p.stop_loss, color: COLORS.down, lineStyle: LineStyle.Solid, title: `stop #${p.trade_id}` });
      specs.push({ price: p.take_profit, color: COLORS.up, lineStyle: LineStyle.Solid, title: `target #${p.trade_id}` });
    }
    // levels are drawn without a title or axis label (those piled up on the stop and target labels); the list
    // under the chart names them
    for (const level of levels) {
      specs.push({ price: level.price, color: COLORS.level, lineStyle: LineStyle.Dashed, title: "",
        axisLabelVisible: false });
    }
    this.lines = specs.map((s) => this.series.createPriceLine({ ...s, price: Number(s.price), lineWidth: 1 }));
    document.getElementById("chart-levels").replaceChildren(...levels.map((level) => el("li", {},
      `${level.kind === "support" ? "support" : "resistance"} ${level.price} (price touched it ${level.touches} times)`)));
  }

  describeTrades(markers) {
    this.container ??= document.getElementById("price-chart");
    const ids = markers.map((m) => m.id.replace("-", " #")).join(", ");
    this.container.setAttribute("aria-label", `Candlestick chart${ids ? ` with markers: ${ids}` : ""}`);
  }

  summarise(symbol, timeframe, candles, markers, open, levelCount) {
    const entries = markers.filter((m) => m.position === "belowBar").length;
    const exits = markers.length - entries;
    this.describeTrades(markers);
    const last = candles.length ? ` to ${time(candles.at(-1).time)} UTC` : "";
    document.getElementById("chart-summary").textContent =
      `${symbol} ${timeframe}: ${candles.length} candles${last} · ${entries} entry and ${exits} exit markers · ` +
      `${open.length} open position(s) with stop and target lines · ${levelCount} support/resistance levels`;
  }
}

/** Equity marked to market and realised P&L from GET /portfolio/equity, or realised only from the performance
 * answer while that route is not there; drawdown below the peak in its own chart. */
export class EquityChart {
  constructor() {
    this.chart = baseChart(document.getElementById("equity-chart"));
    this.equity = this.chart.addLineSeries({ color: COLORS.entry, lineWidth: 2, title: "" });
    this.realised = this.chart.addLineSeries({ color: COLORS.level, lineWidth: 1, lineStyle: LineStyle.Dashed });
    this.drawdownChart = baseChart(document.getElementById("drawdown-chart"));
    // filled between the curve and zero, so a drawdown reads as a dip below the peak
    this.drawdown = this.drawdownChart.addBaselineSeries({
      baseValue: { type: "price", price: 0 }, lineWidth: 1,
      bottomLineColor: COLORS.down, bottomFillColor1: "rgba(239,83,80,0.05)", bottomFillColor2: "rgba(239,83,80,0.4)",
      topLineColor: COLORS.down, topFillColor1: "rgba(0,0,0,0)", topFillColor2: "rgba(0,0,0,0)",
      priceFormat: { type: "custom", formatter: (v) => `${v.toFixed(2)} %` },
    });
    this.count = -1;
  }

  render(equity, performance) {
    // realised equity: the start balance plus the cumulative realised P&L (the fallback's curve is that already)
    const start = equity ? Number(equity.start_balance) : 0;
    const points = equity
      ? equity.points.map((p) => ({ time: p.time, equity: p.equity, realised: start + Number(p.realised) }))
      : performance.equity_curve.map((p) => ({ time: p.time, realised: p.equity }));
    this.equity.setData(equity ? series(points, "equity") : []);
    this.realised.setData(series(points, "realised"));
    const drawdown = equity ? equity.drawdown.map((d) => ({ time: d.time, value: -Math.abs(Number(d.pct)) })) : [];
    this.drawdown.setData(series(drawdown, "value"));
    if (points.length !== this.count) {
      this.chart.timeScale().fitContent();
      this.drawdownChart.timeScale().fitContent();
    }
    this.count = points.length;
    this.summarise(equity, performance, points);
  }

  summarise(equity, performance, points) {
    const last = points.at(-1);
    const maxDd = equity ? equity.max_drawdown_pct : performance.max_drawdown_pct;
    let text = "No closed trades yet.";
    if (last && equity) {
      text = `Equity ${usdt(last.equity)} USDT with open positions at market (${usdt(equity.open_value)} USDT in ` +
        `them, unrealised ${usdt(equity.unrealized_pnl)}) · realised equity ${usdt(last.realised)} USDT · started ` +
        `with ${usdt(equity.start_balance)} USDT`;
    } else if (last) {
      text = `${points.length} closed trades · realised equity ${usdt(last.realised)} USDT (open positions at ` +
        "market: not available from this server)";
    }
    document.getElementById("equity-summary").textContent = text;
    document.getElementById("drawdown-summary").textContent = equity
      ? `Max drawdown ${usdt(maxDd)} % below the peak.`
      : `Max drawdown ${usdt(maxDd)} % of realised equity; the drawdown curve is not available from this server.`;
  }
}

/** [{time, key}] to chart points: one value per second, in time order. */
function series(points, key) {
  const byTime = new Map();
  for (const point of points) byTime.set(seconds(point.time), Number(point[key]));
  return [...byTime].sort((a, b) => a[0] - b[0]).map(([t, value]) => ({ time: t, value }));
}
