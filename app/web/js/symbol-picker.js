// A searchable multi-select of trading pairs: an ARIA combobox over a multi-select listbox, chips for the chosen.

import { el } from "./format.js";

const TYPED_SYMBOL = /^[A-Z0-9]{2,20}$/;
const EXCHANGE_RULES = new Set(["exchange", "exchange_info.json"]); // the exchange's own filters, live or stored

function day(iso) {
  return iso.slice(0, 10);
}

function coverageText(item) {
  const span = item.coverage.find((c) => c.timeframe === "5m");
  if (!span) return "no 5m candles";
  const gaps = span.gaps ? `, ${span.gaps} gaps (${span.missing} candles missing)` : "";
  return `5m data ${day(span.first)} to ${day(span.last)}${gaps}`;
}

/** Why a pair cannot be chosen, or why it takes no new entries now; null when neither. */
export function optionNote(item) {
  if (!item.selectable) return `cannot be chosen: ${item.note}`;
  return item.note ? `no new entries now: ${item.note}` : null;
}

/** Where its rules come from when they are not the exchange's own, and (paper trading) its 5m candle span. */
export function optionDetails(item, source) {
  const details = [];
  if (!EXCHANGE_RULES.has(item.rules.source)) details.push(`rules ${item.rules.source}`);
  if (source === "candles") details.push(coverageText(item));
  return details.join(" · ");
}

function rankText(item) {
  return item.volume_rank ? `#${item.volume_rank} by volume` : "no volume rank";
}

export class SymbolPicker {
  /** `id` names the input (its label targets it); `chosenLabel` names the chips; at most `max` pairs. */
  constructor({ id, label, chosenLabel, hint, max }) {
    Object.assign(this, { id, chosenLabel, max });
    this.items = [];
    this.source = null;
    this.chosen = [];
    this.shown = [];
    this.active = -1;
    this.build(label, hint);
  }

  build(label, hint) {
    const id = this.id;
    this.chips = el("ul", { class: "chips", "aria-label": this.chosenLabel });
    this.input = el("input", {
      id, type: "text", role: "combobox", autocomplete: "off", spellcheck: "false", autocapitalize: "characters",
      placeholder: "Search pairs, e.g. ETH", "aria-autocomplete": "list", "aria-expanded": "false",
      "aria-controls": `${id}-list`, "aria-describedby": `${id}-hint ${id}-error`,
    });
    this.list = el("ul", { id: `${id}-list`, role: "listbox", class: "options", "aria-multiselectable": "true",
      "aria-labelledby": `${id}-label`, hidden: true });
    this.announcer = el("span", { class: "sr-only", role: "status", "aria-live": "polite" });
    this.error = el("span", { id: `${id}-error`, class: "field-error" });
    this.element = el("div", { class: "field picker" },
      el("label", { for: id, id: `${id}-label` }, label), this.chips,
      el("div", { class: "combo" }, this.input, this.list),
      el("small", { id: `${id}-hint`, class: "muted" }, hint), this.error, this.announcer);
    this.bind();
  }

  bind() {
    this.input.addEventListener("input", () => this.search());
    this.input.addEventListener("focus", () => this.openList());
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    this.element.addEventListener("focusout", (event) => {
      if (!this.element.contains(event.relatedTarget)) this.closeList();
    });
    // a click on an option must not take the focus from the input (the list would close before the click lands)
    this.list.addEventListener("mousedown", (event) => event.preventDefault());
    this.list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.choose(this.shown[Number(option.dataset.index)]);
    });
  }

  get value() {
    return [...this.chosen];
  }

  set value(symbols) {
    this.chosen = [...symbols];
    this.renderChips();
    this.renderOptions();
  }

  /** The pairs GET /market/symbols offers; `source` is "candles" (paper) or "exchange" (live). */
  setItems(items, source) {
    this.items = items;
    this.source = source;
    this.renderOptions();
  }

  setUnavailable(reason) {
    this.items = [];
    this.announce(`The pair list could not be loaded (${reason}); type a pair and press Enter.`);
  }

  setError(message) {
    this.error.textContent = message || "";
    this.input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  get query() {
    return this.input.value.trim().toUpperCase();
  }

  /** The options whose symbol holds the query; when none does, the typed text itself if it looks like a pair
   * (the list may be missing, and the API names an unknown pair's closest matches). */
  matches() {
    const query = this.query;
    const found = this.items.filter((item) => item.symbol.includes(query));
    if (found.length || !TYPED_SYMBOL.test(query)) return found;
    return [{ symbol: query, typed: true, selectable: true }];
  }

  search() {
    this.openList();
    this.active = this.query ? this.shown.findIndex((item) => item.selectable) : -1;
    this.renderOptions();
    this.announce(`${this.shown.length} ${this.shown.length === 1 ? "pair matches" : "pairs match"}`);
  }

  onKey(event) {
    const keys = {
      ArrowDown: () => this.move(1),
      ArrowUp: () => this.move(-1),
      Enter: () => this.enter(),
      Escape: () => this.escape(),
      Backspace: () => this.removeLast(),
    };
    const handle = keys[event.key];
    if (handle && handle() !== false) event.preventDefault();
  }

  move(step) {
    if (this.list.hidden) this.openList();
    if (!this.shown.length) return;
    const count = this.shown.length;
    this.active = this.active < 0 && step < 0 ? count - 1 : (this.active + step + count) % count;
    this.renderOptions();
  }

  /** Enter picks or unpicks the active option; with the list closed and nothing typed it submits the form. */
  enter() {
    if (this.active >= 0 && !this.list.hidden) return this.choose(this.shown[this.active]);
    if (this.query) return this.announce(`No pair matches ${this.query}.`);
    return false;
  }

  escape() {
    if (!this.list.hidden) this.closeList();
    else if (this.input.value) this.input.value = "";
    else return false;
    return true;
  }

  removeLast() {
    if (this.input.value || !this.chosen.length) return false;
    this.remove(this.chosen.at(-1));
    return true;
  }

  choose(item) {
    if (!item.selectable) {
      this.announce(`${item.symbol} ${optionNote(item)}`);
      return;
    }
    if (this.chosen.includes(item.symbol)) {
      this.remove(item.symbol);
      return;
    }
    if (this.chosen.length >= this.max) {
      this.announce(`At most ${this.max} pairs: remove one first.`);
      return;
    }
    this.chosen.push(item.symbol);
    this.input.value = "";
    this.active = -1;
    this.renderChips();
    this.renderOptions();
    this.announce(`${item.symbol} added`);
  }

  remove(symbol) {
    this.chosen = this.chosen.filter((s) => s !== symbol);
    this.renderChips();
    this.renderOptions();
    this.announce(`${symbol} removed`);
  }

  openList() {
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.renderOptions();
  }

  closeList() {
    this.list.hidden = true;
    this.active = -1;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  announce(text) {
    this.announcer.textContent = text;
  }

  renderChips() {
    this.chips.replaceChildren(...this.chosen.map((symbol) => el("li", { class: "chip" }, symbol,
      el("button", { type: "button", class: "small", "aria-label": `Remove ${symbol}`,
        onclick: () => { this.remove(symbol); this.input.focus(); } }, "×"))));
  }

  renderOptions() {
    this.shown = this.matches();
    this.list.replaceChildren(...this.shown.map((item, index) => this.option(item, index)));
    if (!this.shown.length) this.list.append(el("li", { class: "muted empty" }, "No pair matches."));
    const active = this.shown[this.active] ? this.list.children[this.active] : null;
    if (active && !this.list.hidden) {
      this.input.setAttribute("aria-activedescendant", active.id);
      active.scrollIntoView({ block: "nearest" });
    } else {
      this.input.removeAttribute("aria-activedescendant");
    }
  }

  option(item, index) {
    const attrs = { id: `${this.id}-option-${item.symbol}`, role: "option", "data-index": index,
      "aria-selected": String(this.chosen.includes(item.symbol)), "aria-disabled": item.selectable ? null : "true",
      class: index === this.active ? "option active" : "option" };
    if (item.typed) {
      return el("li", attrs, el("span", { class: "symbol" }, item.symbol), " ",
        el("span", { class: "details" }, "not in the list: add it as typed"));
    }
    const note = optionNote(item);
    return el("li", attrs, el("span", { class: "symbol" }, item.symbol), " ",
      el("span", { class: "rank" }, rankText(item)), " ",
      note && el("span", { class: "note" }, note, " "),
      el("span", { class: "details" }, optionDetails(item, this.source)));
  }
}
