// The trading config form: sends only the changed fields (PUT is a partial update) and shows 422s per field.

import { ApiError } from "./api.js";
import { el } from "./format.js";
import { SymbolSettings } from "./symbol-settings.js";

const asInteger = (v) => (/^-?\d+$/.test(v.trim()) ? Number(v) : v);
const asDecimalString = (v) => v.trim();
const asTime = (v) => (v ? v : null);

// a text box, not type=time: the browser's time input shows a 12-hour clock in some locales, and these are UTC
const HHMM = { type: "text", pattern: "([01][0-9]|2[0-3]):[0-5][0-9]", placeholder: "HH:MM", inputmode: "numeric",
  maxlength: 5 };

const FIELDS = [
  { name: "risk_per_trade_pct", label: "Risk per trade (%)", type: "number", step: "0.1", hint: "0.1 to 2",
    toApi: asDecimalString },
  { name: "max_open_positions", label: "Max open positions", type: "number", hint: "1 to 10", toApi: asInteger },
  { name: "daily_trade_limit", label: "Daily trade limit", type: "number", hint: "1 to 50", toApi: asInteger },
  { name: "min_signal_confidence", label: "Min signal confidence (%)", type: "number", hint: "50 to 95",
    toApi: asInteger },
  { name: "max_balance_trade_ratio", label: "Max balance per trade (ratio)", type: "number", step: "0.01",
    hint: "above 0, at most 1", toApi: asDecimalString },
  { name: "trading_hours_start", label: "Trading hours start (UTC, 24-hour HH:MM)", hint: "e.g. 08:00; empty: all day",
    ...HHMM, toApi: asTime },
  { name: "trading_hours_end", label: "Trading hours end (UTC, 24-hour HH:MM)", hint: "e.g. 20:30; empty: all day",
    ...HHMM, toApi: asTime },
  { name: "position_timeout_minutes", label: "Position timeout (minutes)", type: "number", hint: "5 to 1440",
    toApi: asInteger },
  { name: "analyzer", label: "Analyzer", options: ["rules", "gemini", "openai"], toApi: (v) => v },
];
const NAMES = FIELDS.map((f) => f.name);
const PAIR_FIELDS = ["symbols", "exclude_symbols"];

function control(field) {
  const common = { id: `cfg-${field.name}`, name: field.name,
    "aria-describedby": `cfg-${field.name}-hint cfg-${field.name}-error` };
  if (field.options) return el("select", common, ...field.options.map((o) => el("option", { value: o }, o)));
  return el("input", { ...common, type: field.type || "text", step: field.step, autocomplete: "off",
    pattern: field.pattern, placeholder: field.placeholder, inputmode: field.inputmode, maxlength: field.maxlength });
}

export class SettingsForm {
  constructor(api) {
    this.api = api;
    this.form = document.getElementById("settings-form");
    this.config = null;
    const rows = FIELDS.map((f) => el("div", { class: "field" },
      el("label", { for: `cfg-${f.name}` }, f.label), control(f),
      el("small", { id: `cfg-${f.name}-hint`, class: "muted" }, f.hint || ""),
      el("span", { id: `cfg-${f.name}-error`, class: "field-error" })));
    this.status = el("p", { class: "form-status", role: "status", "aria-label": "Settings status" });
    this.formError = el("p", { class: "form-error", role: "alert" });
    this.pairs = new SymbolSettings(api);
    this.form.replaceChildren(this.pairs.element, ...rows, this.formError, this.status,
      el("button", { type: "submit" }, "Save settings"));
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.save(); });
  }

  async load() {
    const [config] = await Promise.all([this.api.get("/trading/config"), this.pairs.loadChoices()]);
    this.fill(config);
  }

  /** The pairs the saved config trades or may trade (for the chart and the history filter). */
  tradedSymbols() {
    return this.pairs.tradedSymbols(this.config);
  }

  fill(config) {
    this.config = config;
    this.pairs.fill(config);
    for (const f of FIELDS) {
      const value = config[f.name];
      this.form.elements[f.name].value = f.fromApi ? f.fromApi(value) : (value ?? "");
    }
  }

  changes() {
    const changed = this.pairs.changes(this.config);
    for (const f of FIELDS) {
      const current = this.form.elements[f.name].value;
      const original = f.fromApi ? f.fromApi(this.config[f.name]) : (this.config[f.name] ?? "");
      if (current !== String(original)) changed[f.name] = f.toApi(current);
    }
    return changed;
  }

  async save() {
    const changed = this.changes();
    const problems = this.pairs.problems();
    this.showErrors(problems);
    if (Object.keys(problems).length) {
      this.status.textContent = "Not saved: fix the marked fields.";
      return;
    }
    if (!Object.keys(changed).length) {
      this.status.textContent = "Nothing to save.";
      return;
    }
    try {
      this.fill(await this.api.put("/trading/config", changed));
      document.dispatchEvent(new CustomEvent("trdbot:settings-saved", { detail: this.config }));
      this.status.textContent = `Settings saved (${Object.keys(changed).join(", ")}).`;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      this.status.textContent = "Not saved: fix the marked fields.";
      this.showErrors(e.status === 422 ? e.fieldErrors([...PAIR_FIELDS, ...NAMES]) : { _form: e.message });
    }
  }

  showErrors(errors) {
    this.pairs.showErrors(errors);
    for (const name of NAMES) {
      const message = errors[name] || "";
      this.form.elements[name].setAttribute("aria-invalid", message ? "true" : "false");
      document.getElementById(`cfg-${name}-error`).textContent = message;
    }
    this.formError.textContent = errors._form || "";
  }
}
