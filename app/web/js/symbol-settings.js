// The pairs part of the settings: the chosen pairs, the volume-ranked "top N" rule, and the pairs that rule skips.

import { ApiError } from "./api.js";
import { el } from "./format.js";
import { SymbolPicker } from "./symbol-picker.js";

const TOP_RULE = /^top:(\d+)$/i;
const MAX_TOP = 50;
const DEFAULT_TOP = 10;

/** A config's `symbols` split into the named pairs and the N of its `top:N` rule (null without one). */
export function splitSymbols(symbols) {
  const rule = symbols.map((s) => TOP_RULE.exec(s)).find(Boolean);
  return { named: symbols.filter((s) => !TOP_RULE.test(s)), top: rule ? Number(rule[1]) : null };
}

const sameList = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

export class SymbolSettings {
  constructor(api) {
    this.api = api;
    this.listed = [];
    this.symbols = new SymbolPicker({ id: "cfg-symbols", label: "Symbols", chosenLabel: "Chosen symbols", max: 20,
      hint: "Type to search; ↑ ↓ move, Enter picks or unpicks, Esc closes. Leave empty to trade only the top N." });
    this.exclude = new SymbolPicker({ id: "cfg-exclude_symbols", label: "Never pick (exclude)",
      chosenLabel: "Excluded symbols", max: 50, hint: "Pairs the top N rule skips." });
    this.topOn = el("input", { id: "cfg-top-on", type: "checkbox", "aria-controls": "cfg-top-n",
      onchange: () => this.syncTop() });
    this.topN = el("input", { id: "cfg-top-n", type: "number", min: 1, max: MAX_TOP, step: 1, inputmode: "numeric",
      autocomplete: "off", "aria-describedby": "cfg-top-n-hint cfg-top-n-error" });
    this.topError = el("span", { id: "cfg-top-n-error", class: "field-error" });
    this.element = el("fieldset", { class: "pairs" }, el("legend", {}, "Pairs"), this.symbols.element,
      el("div", { class: "field top-rule" },
        el("label", { class: "check" }, this.topOn, " Trade the top N most traded pairs"),
        el("label", { for: "cfg-top-n" }, "Top N"), this.topN,
        el("small", { id: "cfg-top-n-hint", class: "muted" }, `1 to ${MAX_TOP}: the N most traded USDT pairs by ` +
          "24 h quote volume, refreshed hourly, besides the pairs above; stablecoin pairs and leveraged tokens " +
          "are never picked."),
        this.topError),
      this.exclude.element);
  }

  /** Fills both pickers from GET /market/symbols; without it they still take typed pairs. */
  async loadChoices() {
    try {
      const answer = await this.api.get("/market/symbols");
      this.listed = answer.items;
      for (const picker of [this.symbols, this.exclude]) picker.setItems(answer.items, answer.source);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      for (const picker of [this.symbols, this.exclude]) picker.setUnavailable(e.message);
    }
  }

  fill(config) {
    const { named, top } = splitSymbols(config.symbols);
    this.symbols.value = named;
    this.exclude.value = config.exclude_symbols;
    this.topOn.checked = top !== null;
    this.topN.value = String(top ?? DEFAULT_TOP);
    this.syncTop();
  }

  syncTop() {
    this.topN.disabled = !this.topOn.checked;
  }

  /** The `symbols` the form now says: the named pairs, then the rule when it is on. */
  chosenSymbols() {
    return this.topOn.checked ? [...this.symbols.value, `top:${this.topN.value.trim()}`] : this.symbols.value;
  }

  changes(config) {
    const changed = {};
    if (!sameList(this.chosenSymbols(), config.symbols)) changed.symbols = this.chosenSymbols();
    if (!sameList(this.exclude.value, config.exclude_symbols)) changed.exclude_symbols = this.exclude.value;
    return changed;
  }

  /** What the API would refuse, said before asking it: {symbols, top} messages. */
  problems() {
    const problems = {};
    const n = this.topN.value.trim();
    if (this.topOn.checked && !(/^\d+$/.test(n) && Number(n) >= 1 && Number(n) <= MAX_TOP)) {
      problems.top = `Top N must be a whole number from 1 to ${MAX_TOP}.`;
    }
    if (!this.topOn.checked && !this.symbols.value.length) {
      problems.symbols = "Pick at least one pair, or turn on the top N rule.";
    }
    return problems;
  }

  /** Errors keyed by field: symbols and exclude_symbols from the API, top from problems(). */
  showErrors(errors) {
    this.symbols.setError(errors.symbols);
    this.exclude.setError(errors.exclude_symbols);
    this.topError.textContent = errors.top || "";
    this.topN.setAttribute("aria-invalid", errors.top ? "true" : "false");
  }

  /** The pairs a config trades or may trade: the named ones and, with a top N rule (the engine resolves it each
   * hour), every selectable listed pair it does not exclude, most traded first. */
  tradedSymbols(config) {
    const { named, top } = splitSymbols(config.symbols);
    if (top === null) return named;
    const ranked = this.listed.filter((item) => item.selectable && !config.exclude_symbols.includes(item.symbol));
    return [...new Set([...named, ...ranked.map((item) => item.symbol)])];
  }
}
