// The live event feed: one WebSocket per session, reconnecting with exponential backoff after a drop.

import { el, exitReason, time, usdt } from "./format.js";

const MAX_ITEMS = 100;
const MAX_DELAY_MS = 30000;
const POLICY_VIOLATION = 1008;

const TITLES = {
  trade_executed: "Trade opened", position_closed: "Trade closed", signal_rejected: "Signal rejected",
  emergency_exit: "Emergency exit", reconciled: "Repaired", error: "Problem", analysis: "Analysis",
  exchange_keys: "Exchange keys", status: "Trading switched",
};

const money = (v) => usdt(v);
const reasonList = (reasons) => (reasons || []).map((r) => r.replace(/^Value error, /, "")).join("; ");
const tradeRef = (d) => `${d.symbol ?? ""} trade #${d.trade_id}`.trim();

const DESCRIBE = {
  trade_executed: (d) => `Bought ${d.amount} ${d.symbol} at ${d.price} (trade #${d.trade_id}); stop ${d.stop_loss}, ` +
    `target ${d.take_profit}.`,
  position_closed: (d) => `Closed ${tradeRef(d)} by ${exitReason(d.exit_reason)} at ${d.exit_price}: ` +
    `P&L ${money(d.profit_loss)} USDT.`,
  signal_rejected: (d) => `Did not act on ${d.symbol} ${d.signal} (${d.confidence} % confidence): ${reasonList(d.reasons)}.`,
  emergency_exit: (d) => `Emergency exit of ${tradeRef(d)}: ${d.reason}` +
    (d.exit_price ? ` (sold at ${d.exit_price}).` : "; the sale is under way."),
  reconciled: (d) => `${tradeRef(d)}: ${String(d.action).replaceAll("_", " ")}: ${d.detail}`,
  error: (d) => {
    const about = d.symbol ?? (d.trade_id != null ? `Trade #${d.trade_id}` : "");
    return about ? `${about}: ${d.message}` : String(d.message);
  },
  analysis: (d) => (d.signal === "HOLD" ? `${d.symbol}: hold (${d.regime ?? "no"} regime).`
    : `${d.symbol}: ${d.signal} signal at ${d.confidence} % confidence.`),
  exchange_keys: (d) => (d.mode === "paper" ? "Exchange keys removed: you trade on paper."
    : `Exchange keys stored: you trade on ${d.mode}.`),
  status: (d) => (d.is_active ? "You started trading: the engine opens trades for you."
    : "You stopped trading: no new trades; open positions keep their stop and target."),
};

function words(data) {
  return Object.entries(data || {}).map(([k, v]) => `${k.replaceAll("_", " ")} ${Array.isArray(v) ? v.join(", ") : v}`)
    .join(" · ");
}

export function eventTitle(type) {
  return TITLES[type] ?? String(type).replaceAll("_", " ");
}

/** One sentence for a reader: never the event's JSON. */
export function describeEvent(message) {
  const describe = DESCRIBE[message.type];
  try {
    return describe ? describe(message.data || {}) : words(message.data);
  } catch {
    return words(message.data);
  }
}

export function eventItem(message) {
  return el("li", { class: `event event-${message.type}`, "data-type": message.type,
    "data-key": `${message.type}@${message.time}` },
    el("time", { datetime: message.time }, `${time(message.time)} UTC`), " ",
    el("span", { class: "badge" }, eventTitle(message.type)), " ", el("span", {}, describeEvent(message)));
}

export class LiveFeed {
  constructor(onEvent, onRejected) {
    this.onEvent = onEvent;
    this.onRejected = onRejected;
    this.list = document.getElementById("feed");
    this.state = document.getElementById("feed-state");
    this.socket = null;
    this.timer = null;
    this.attempt = 0;
    this.wanted = false;
  }

  connect(userId, token) {
    this.wanted = true;
    this.userId = userId;
    this.token = token;
    this.open();
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/${this.userId}?token=${encodeURIComponent(this.token)}`;
    this.setState("connecting", "connecting…");
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.addEventListener("open", () => { this.attempt = 0; this.setState("open", "connected"); });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.dropped(socket, event.code));
  }

  dropped(socket, code) {
    if (socket !== this.socket || !this.wanted) return;
    if (code === POLICY_VIOLATION) {
      this.setState("closed", "refused: log in again");
      this.onRejected();
      return;
    }
    const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.setState("waiting", `reconnecting in ${Math.round(delay / 1000)} s`);
    this.timer = setTimeout(() => this.open(), delay);
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    this.list.prepend(eventItem(message));
    while (this.list.children.length > MAX_ITEMS) this.list.lastElementChild.remove();
    this.onEvent(message);
  }

  /** The latest stored events (GET /events, newest first) under whatever the socket has already pushed. */
  prime(items) {
    const shown = new Set([...this.list.children].map((li) => li.dataset.key));
    for (const item of items) {
      const key = `${item.type}@${item.time}`;
      if (!shown.has(key)) this.list.append(eventItem(item));
    }
  }

  setState(state, text) {
    this.state.dataset.state = state;
    this.state.textContent = text;
  }

  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
    this.socket = null;
    this.list.replaceChildren();
    this.setState("closed", "off");
  }
}
