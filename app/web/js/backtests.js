// Backtests from the browser: a form (pairs, span, settings), progress while one runs, its report when done, the
// list of runs and two runs side by side.

import { ApiError } from "./api.js";
import { byId, duration, el, emptyRow, kv, percent, row, time, usdt } from "./format.js";
import { SymbolPicker } from "./symbol-picker.js";

const POLL_MS = 1000;
const FIELDS = ["symbols", "start", "end", "balance", "analyzer", "risk_per_trade_pct", "min_signal_confidence",
  "max_open_positions"];
const DONE = new Set(["done", "finished", "completed", "succeeded"]);
const FAILED = new Set(["failed", "error", "cancelled"]);

const KEY_FIGURES = [
  ["Start balance (USDT)", (r) => usdt(r.start_balance)], ["Final balance (USDT)", (r) => usdt(r.final_balance_rounded ?? r.final_balance)],
  ["Return", (r) => percent(r.total_return_pct)], ["Max drawdown", (r) => percent(r.max_drawdown_pct)],
  ["Closed trades", (r) => r.trades ?? "–"], ["Win rate", (r) => percent(r.win_rate_pct, 1)],
  ["Profit factor", (r) => r.profit_factor ?? "–"], ["Expectancy (USDT per trade)", (r) => usdt(r.expectancy)],
  ["Fees paid (USDT)", (r) => usdt(r.fees_paid)], ["Average duration", (r) => duration(r.avg_duration_s)],
  ["Sharpe", (r) => r.sharpe ?? "–"],
];

function field(id, label, input, hint = "") {
  return el("div", { class: "field" }, el("label", { for: id }, label), input,
    el("small", { id: `${id}-hint`, class: "muted" }, hint), el("span", { id: `${id}-error`, class: "field-error" }));
}

function input(id, attrs) {
  return el("input", { id, name: id.replace("bt-", ""), autocomplete: "off", "aria-describedby": `${id}-hint ${id}-error`,
    ...attrs });
}

const progressPct = (p) => (p == null ? 0 : Number(p) <= 1 ? Number(p) * 100 : Number(p));
const isDone = (run) => DONE.has(String(run.status).toLowerCase());
const isFailed = (run) => FAILED.has(String(run.status).toLowerCase());
const reportOf = (run) => run.report ?? run.summary ?? {};

function spanText(run) {
  const span = run.start ? { start: run.start, end: run.end } : run.span ?? reportOf(run).span;
  if (!span) return "–";
  if (typeof span === "string") return span;
  return `${String(span.start).slice(0, 10)} to ${String(span.end).slice(0, 10)}`;
}

export class BacktestsView {
  constructor(api) {
    this.api = api;
    this.form = byId("backtest-form");
    this.runs = [];
    this.polling = null;
    this.build();
    byId("compare-form").addEventListener("submit", (event) => { event.preventDefault(); this.compare(); });
  }

  build() {
    this.picker = new SymbolPicker({ id: "bt-symbols", label: "Pairs to test", chosenLabel: "Pairs in the backtest",
      max: 10, hint: "Type to search; ↑ ↓ move, Enter picks, Esc closes." });
    this.status = el("p", { class: "form-status", role: "status", "aria-label": "Backtest status" });
    this.formError = el("p", { class: "form-error", role: "alert" });
    this.form.replaceChildren(this.picker.element,
      field("bt-start", "Start (UTC date)", input("bt-start", { type: "date", required: true })),
      field("bt-end", "End (UTC date)", input("bt-end", { type: "date", required: true }),
        "the last decision is at 00:00 UTC that day"),
      field("bt-balance", "Start balance (USDT)", input("bt-balance", { type: "number", min: 10, step: 1, value: 1000 })),
      field("bt-analyzer", "Analyst", el("select", { id: "bt-analyzer", name: "analyzer",
        "aria-describedby": "bt-analyzer-hint bt-analyzer-error" },
      el("option", { value: "rules" }, "rules"), el("option", { value: "gemini" }, "gemini (recorded answers)")),
      "LLM analysts replay recorded answers; none is asked about the past"),
      field("bt-risk_per_trade_pct", "Risk per trade (%)", input("bt-risk_per_trade_pct",
        { type: "number", step: "0.1", value: "1" }), "0.1 to 2"),
      field("bt-min_signal_confidence", "Min signal confidence (%)", input("bt-min_signal_confidence",
        { type: "number", value: "70" }), "50 to 95"),
      field("bt-max_open_positions", "Max open positions", input("bt-max_open_positions",
        { type: "number", value: "3" }), "1 to 10"),
      this.formError, this.status, el("button", { type: "submit", class: "primary" }, "Run backtest"));
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.start(); });
  }

  /** Pairs for the picker and a default span: the last week of the stored candles. */
  async prepare() {
    if (this.prepared) return;
    this.prepared = true;
    try {
      const answer = await this.api.get("/market/symbols");
      this.picker.setItems(answer.items, answer.source);
      const spans = answer.items.flatMap((i) => (i.coverage || []).filter((c) => c.timeframe === "5m"));
      const last = spans.map((c) => c.last).sort().at(-1);
      if (last) {
        const end = new Date(last);
        byId("bt-end").value = last.slice(0, 10);
        byId("bt-start").value = new Date(end.getTime() - 7 * 86400000).toISOString().slice(0, 10);
      }
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.picker.setUnavailable(e.message);
    }
  }

  body() {
    const value = (name) => byId(`bt-${name}`).value.trim();
    return {
      symbols: this.picker.value, start: value("start"), end: value("end"), balance: value("balance"),
      config: { analyzer: value("analyzer"), risk_per_trade_pct: value("risk_per_trade_pct"),
        min_signal_confidence: Number(value("min_signal_confidence")),
        max_open_positions: Number(value("max_open_positions")) },
    };
  }

  showErrors(errors) {
    for (const name of FIELDS) {
      const error = byId(`bt-${name}-error`);
      if (!error) continue;
      error.textContent = errors[name] || "";
      byId(`bt-${name}`).setAttribute("aria-invalid", errors[name] ? "true" : "false");
    }
    this.formError.textContent = errors._form || "";
  }

  async start() {
    const body = this.body();
    if (!body.symbols.length) {
      this.showErrors({ symbols: "Pick at least one pair." });
      return;
    }
    try {
      const run = await this.api.post("/backtests", body);
      this.showErrors({});
      this.status.textContent = `Backtest #${run.id} started.`;
      location.hash = `#/backtests/${run.id}`;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.status.textContent = "Not started: fix the marked fields.";
      this.showErrors(e.status === 422 ? e.fieldErrors(FIELDS)
        : { _form: e.status === 404 || e.status === 405 ? "Backtests are not available from this server yet."
          : e.message });
    }
  }

  async load(id) {
    this.forget(id);
    await this.prepare();
    const list = await this.api.optional("/backtests");
    const note = byId("backtests-unavailable");
    note.hidden = list !== null;
    note.textContent = list === null ? "Backtests are not available from this server yet (GET /backtests)." : "";
    this.runs = list === null ? [] : Array.isArray(list) ? list : list.items;
    this.renderList();
    this.showRun(id);
  }

  renderList() {
    byId("backtest-list").replaceChildren(...(this.runs.length ? this.runs.map((run) => row([
      el("td", {}, el("a", { href: `#/backtests/${run.id}`, "aria-label": `Backtest ${run.id} report` }, `#${run.id}`)),
      String(run.status), (run.symbols || []).join(", "), spanText(run), percent(reportOf(run).total_return_pct),
      String(reportOf(run).trades ?? "–"), time(run.created_at ?? run.created),
      el("td", {}, el("button", { type: "button", class: "small", "aria-label": `Delete backtest ${run.id}`,
        onclick: () => this.remove(run.id) }, "Delete")),
    ])) : [emptyRow(8, "No backtests yet.")]));
    // two different finished runs, the reader's choice kept while it still stands
    const done = this.runs.filter(isDone).map((r) => String(r.id));
    const a = byId("compare-a");
    const b = byId("compare-b");
    const keep = (select, fallback) => (done.includes(select.value) ? select.value : fallback);
    const first = keep(a, done[1] ?? done[0] ?? "");
    const second = keep(b, done[0] ?? "");
    for (const select of [a, b]) {
      select.replaceChildren(...this.runs.filter(isDone).map((r) =>
        el("option", { value: r.id }, `#${r.id} ${(r.symbols || []).join(" ")}`)));
    }
    a.value = first;
    b.value = second === first ? done.find((id) => id !== first) ?? second : second;
  }

  async remove(id) {
    await this.api.delete(`/backtests/${id}`);
    if (location.hash === `#/backtests/${id}`) location.hash = "#/backtests";
    else await this.load(null);
  }

  /** Another run's report must not stand under this run's title while this one loads. */
  forget(id) {
    const title = byId("backtest-run-title");
    byId("backtest-run").hidden = id == null;
    if (id == null || title.textContent === `Backtest #${id}`) return;
    title.textContent = `Backtest #${id}`;
    byId("backtest-run-body").replaceChildren(el("p", { class: "muted" }, "Loading…"));
  }

  stopPolling() {
    clearTimeout(this.polling);
    this.polling = null;
  }

  async showRun(id) {
    this.stopPolling();
    if (id == null) return;
    let run;
    try {
      run = await this.api.get(`/backtests/${id}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      byId("backtest-run-body").replaceChildren(el("p", { class: "notice" }, e.status === 404
        ? `There is no backtest #${id} of yours.` : `Could not load backtest #${id}: ${e.message}`));
      return;
    }
    if (isDone(run)) await this.renderReport(run);
    else if (isFailed(run)) this.renderFailure(run);
    else {
      this.renderProgress(run);
      this.polling = setTimeout(() => { if (location.hash === `#/backtests/${id}`) this.load(id); }, POLL_MS);
    }
  }

  renderProgress(run) {
    const pct = progressPct(run.progress);
    byId("backtest-run-body").replaceChildren(
      el("p", { role: "status", "aria-label": "Backtest progress" }, `${String(run.status)}: ${pct.toFixed(0)} % done`),
      el("progress", { class: "progress", max: 100, value: pct.toFixed(1), "aria-label": "Backtest progress bar" }),
      kv([["Pairs", (run.symbols || []).join(", ")], ["Span", spanText(run)], ["Started (UTC)", time(run.created_at ?? run.created)]]));
  }

  renderFailure(run) {
    byId("backtest-run-body").replaceChildren(el("p", { class: "notice", role: "status",
      "aria-label": "Backtest progress" }, `This backtest did not finish: ${run.error ?? run.status}.`));
  }

  async renderReport(run) {
    const report = reportOf(run);
    const figures = KEY_FIGURES.flatMap(([label, value]) => [el("dt", {}, label),
      el("dd", { "aria-label": label }, String(value(report)))]);
    const link = el("button", { type: "button", onclick: () => this.api.download(`/backtests/${run.id}/files/report.html`,
      `backtest-${run.id}-report.html`) }, "Download report.html");
    const charts = el("div", { class: "report-charts" });
    byId("backtest-run-body").replaceChildren(
      el("p", { role: "status", "aria-label": "Backtest progress" },
        `Finished ${time(run.finished_at ?? run.finished)} UTC · ${(run.symbols || []).join(", ")} · ${spanText(run)}`),
      el("dl", { class: "figures" }, ...figures), link, el("h4", {}, "Charts"), charts);
    for (const name of run.files?.filter((f) => f.endsWith(".png")) ?? ["equity.png", "entries_by_hour.png"]) {
      this.image(run.id, name).then((img) => img && charts.append(img));
    }
  }

  /** The PNG as a data: URL (the CSP allows img-src 'self' data:, and the file needs the bearer token). */
  async image(id, name) {
    const response = await fetch(`/backtests/${id}/files/${name}`, {
      headers: { Authorization: `Bearer ${this.api.token}` } });
    if (!response.ok) return null;
    const blob = await response.blob();
    const url = await new Promise((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.readAsDataURL(blob);
    });
    return el("img", { src: url, alt: `${name.replace(".png", "").replaceAll("_", " ")} chart`, loading: "lazy" });
  }

  async compare() {
    const ids = [byId("compare-a").value, byId("compare-b").value].filter(Boolean);
    const target = byId("compare-result");
    if (ids.length < 2 || ids[0] === ids[1]) {
      target.replaceChildren(el("p", { class: "muted" }, "Choose two different finished runs."));
      return;
    }
    const runs = await Promise.all(ids.map((id) => this.api.get(`/backtests/${id}`)));
    const rows = [["Pairs", (r) => (r.symbols || []).join(", ")], ["Span", spanText], ...KEY_FIGURES.map(([label, f]) =>
      [label, (r) => String(f(reportOf(r)))])];
    target.replaceChildren(el("table", {}, el("caption", {}, `Backtest #${ids[0]} and #${ids[1]} side by side`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Figure"),
        ...runs.map((r) => el("th", { scope: "col" }, `#${r.id}`)))),
      el("tbody", {}, ...rows.map(([label, f]) => el("tr", {}, el("th", { scope: "row" }, label),
        ...runs.map((r) => el("td", {}, f(r))))))));
  }
}
