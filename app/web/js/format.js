// Display helpers: money stays a string from the API; only the on-screen rounding goes through Number.

export function usdt(value, digits = 2) {
  if (value == null || value === "") return "–";
  return Number(value).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function plain(value) {
  return value == null || value === "" ? "–" : String(value);
}

export function time(iso) {
  return iso ? iso.replace("T", " ").replace(/:\d\dZ$/, "") : "–";
}

export function signClass(value) {
  if (value == null || value === "" || Number(value) === 0) return "";
  return String(value).startsWith("-") ? "loss" : "gain";
}

export function seconds(iso) {
  return Math.floor(Date.parse(iso) / 1000);
}

/** Builds an element: el("td", {class: "x"}, "text", childNode). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

export function row(cells) {
  return el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
}

export function emptyRow(columns, text) {
  return el("tr", {}, el("td", { colspan: columns, class: "muted" }, text));
}

const STATUS_TEXT = { filled: "open", pending: "pending", closed: "closed" };

/** A trade's status as a reader says it: a filled entry is an open trade. */
export function tradeStatus(status) {
  return STATUS_TEXT[status] ?? String(status ?? "–").toLowerCase();
}

const EXIT_TEXT = {
  TAKE_PROFIT: "take profit", STOP_LOSS: "stop loss", MANUAL: "manual", TIMEOUT: "timeout", EMERGENCY: "emergency",
};

export function exitReason(reason) {
  return reason ? EXIT_TEXT[reason] ?? String(reason).toLowerCase().replaceAll("_", " ") : "–";
}

/** 5400 -> "1 h 30 min"; null -> "–". */
export function duration(totalSeconds) {
  if (totalSeconds == null || totalSeconds === "") return "–";
  const s = Math.round(Number(totalSeconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days) return `${days} d ${hours} h`;
  if (hours) return `${hours} h ${minutes} min`;
  return minutes ? `${minutes} min` : `${s} s`;
}

export function percent(value, digits = 2) {
  return value == null || value === "" ? "–" : `${usdt(value, digits)} %`;
}

export function byId(id) {
  return document.getElementById(id);
}

export function kv(pairs) {
  return el("dl", { class: "kv" }, ...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "–")]));
}
