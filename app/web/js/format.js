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
