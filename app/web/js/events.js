// The user's event log (GET /events), newest first, filtered by type and UTC dates, older pages on demand.

import { eventItem, eventTitle } from "./feed.js";
import { byId, el } from "./format.js";

const PAGE = 50;
const TYPES = ["analysis", "trade_executed", "position_closed", "signal_rejected", "emergency_exit", "reconciled", "error",
  "status", "exchange_keys"];

export class EventsView {
  constructor(api) {
    this.api = api;
    this.type = byId("events-type");
    this.type.replaceChildren(el("option", { value: "" }, "All"),
      ...TYPES.map((t) => el("option", { value: t }, eventTitle(t))));
    this.since = byId("events-since");
    this.until = byId("events-until");
    this.list = byId("events-list");
    this.more = byId("events-more");
    for (const control of [this.type, this.since, this.until]) control.addEventListener("change", () => this.load());
    this.more.addEventListener("click", () => this.load(this.oldestId));
  }

  query(beforeId) {
    return {
      type: this.type.value, limit: PAGE, before_id: beforeId,
      since: this.since.value ? `${this.since.value}T00:00:00Z` : "",
      until: this.until.value ? `${this.until.value}T23:59:59Z` : "",
    };
  }

  async load(beforeId = null) {
    const answer = await this.api.optional("/events", this.query(beforeId));
    const note = byId("events-unavailable");
    note.hidden = answer !== null;
    note.textContent = answer === null ? "Your event log is not available from this server yet; the live events " +
      "on the Overview still arrive." : "";
    const items = answer === null ? [] : Array.isArray(answer) ? answer : answer.items;
    const rows = items.map(eventItem);
    if (beforeId == null) {
      this.list.replaceChildren(...(rows.length || answer === null ? rows
        : [el("li", { class: "muted" }, "No events match.")]));
    } else {
      this.list.append(...rows);
    }
    this.oldestId = answer?.next_before_id ?? items.at(-1)?.id;
    this.more.hidden = answer === null || (answer.next_before_id === undefined ? items.length < PAGE
      : answer.next_before_id === null);
  }
}
