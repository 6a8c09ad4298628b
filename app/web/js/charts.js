// Charts: candles of one symbol with trade markers, stop/target lines and S/R levels; the equity curve.

import { createChart, LineStyle } from "../vendor/lightweight-charts.standalone.production.mjs";
import { seconds, time, usdt } from "./format.js";

const COLORS = { up: "#26a69a", down: "#ef5350", entry: "#2962ff", level: "#8a8f98", text: "#d1d4dc", grid: "#2a2e39" };
const MAX_LEVELS = 6;
const EXIT_LABELS = { TAKE_PROFIT: "TP", STOP_LOSS: "SL", TIMEOUT: "timeout", MANUAL: "manual", EMERGENCY: "emergency" };

function baseChart(container) {
  return createChart(container, {
    autoSize: true,
    layout: { background: { color: "transparent" }, textColor: COLORS.text },
    grid: { vertLines: { color: COLORS.grid }, horzLines: { color: COLORS.grid } },
    timeScale: { timeVisible: true, secondsVisible: false },
    rightPriceScale: { borderColor: COLORS.grid },
  });
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
      markers.push({ time: entry, position: "belowBar", shape: "arrowUp", color: COLORS.entry, text: `#${t.id} buy` });
    }
    const exit = t.closed_at ? barAt(barTimes, seconds(t.closed_at)) : null;
    if (exit != null) {
      const color = String(t.profit_loss).startsWith("-") ? COLORS.down : COLORS.up;
      markers.push({ time: exit, position: "aboveBar", shape: "arrowDown", color, text: `#${t.id} ${EXIT_LABELS[t.exit_reason] ?? t.exit_reason}` });
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
    for (const level of levels) {
      const title = `${level.kind === "support" ? "S" : "R"} ×${level.touches}`;
      specs.push({ price: level.price, color: COLORS.level, lineStyle: LineStyle.Dashed, title });
    }
    this.lines = specs.map((s) => this.series.createPriceLine({ ...s, price: Number(s.price), lineWidth: 1 }));
  }

  summarise(symbol, timeframe, candles, markers, open, levelCount) {
    const entries = markers.filter((m) => m.position === "belowBar").length;
    const exits = markers.length - entries;
    const last = candles.length ? ` to ${time(candles.at(-1).time)} UTC` : "";
    document.getElementById("chart-summary").textContent =
      `${symbol} ${timeframe}: ${candles.length} candles${last} · ${entries} entry and ${exits} exit markers · ` +
      `${open.length} open position(s) with stop and target lines · ${levelCount} support/resistance levels`;
  }
}

export class EquityChart {
  constructor() {
    this.chart = baseChart(document.getElementById("equity-chart"));
    this.series = this.chart.addLineSeries({ color: COLORS.entry, lineWidth: 2 });
    this.count = -1;
  }

  render(performance) {
    const byTime = new Map();
    for (const point of performance.equity_curve) byTime.set(seconds(point.time), Number(point.equity));
    const data = [...byTime].sort((a, b) => a[0] - b[0]).map(([t, value]) => ({ time: t, value }));
    this.series.setData(data);
    if (data.length !== this.count) this.chart.timeScale().fitContent();
    this.count = data.length;
    const last = performance.equity_curve.at(-1);
    document.getElementById("equity-summary").textContent = last
      ? `${performance.equity_curve.length} closed trades · equity ${usdt(last.equity)} USDT · ` +
        `max drawdown ${usdt(performance.max_drawdown_pct)} %`
      : "No closed trades yet.";
  }
}
