// The live event feed: one WebSocket per session, reconnecting with exponential backoff after a drop.

import { el, time } from "./format.js";

const MAX_ITEMS = 100;
const MAX_DELAY_MS = 30000;
const POLICY_VIOLATION = 1008;

const DESCRIBE = {
  trade_executed: (d) => `BUY ${d.amount} ${d.symbol} @ ${d.price} · stop ${d.stop_loss} · target ${d.take_profit}`,
  position_closed: (d) => `${d.symbol} #${d.trade_id} closed by ${d.exit_reason} @ ${d.exit_price} · P&L ${d.profit_loss}`,
  signal_rejected: (d) => `${d.symbol} ${d.signal} ${d.confidence} % rejected: ${(d.reasons || []).join("; ")}`,
  emergency_exit: (d) => `${d.symbol} #${d.trade_id} emergency exit: ${d.reason}`,
  reconciled: (d) => `${d.symbol} #${d.trade_id} ${d.action}: ${d.detail}`,
  error: (d) => `${d.symbol ?? (d.trade_id != null ? `#${d.trade_id}` : "")} ${d.message}`.trim(),
  analysis: (d) => `${d.symbol} ${d.signal} ${d.confidence ?? ""} %`,
  exchange_keys: (d) => (d.mode === "paper" ? "exchange keys removed: paper trading" : `exchange keys stored (${d.mode})`),
};

export function describeEvent(message) {
  const describe = DESCRIBE[message.type];
  try {
    return describe ? describe(message.data || {}) : JSON.stringify(message.data);
  } catch {
    return JSON.stringify(message.data);
  }
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
    const item = el("li", { class: `event event-${message.type}` },
      el("time", { datetime: message.time }, time(message.time)), " ",
      el("span", { class: "badge" }, message.type), " ", describeEvent(message));
    this.list.prepend(item);
    while (this.list.children.length > MAX_ITEMS) this.list.lastElementChild.remove();
    this.onEvent(message);
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
