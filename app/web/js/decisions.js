// The decision log: each analysis and what the engine decided for this user, with its reasons.

import { el, emptyRow, plain, row, time } from "./format.js";

/** A hold has no confidence worth showing (the rules give it 0): a dash, and its reason in "Why". */
export function confidenceText(analysis) {
  if (String(analysis.signal).toLowerCase() === "hold" && !analysis.confidence) return el("td", { "aria-label": "no confidence: hold" }, "—");
  return `${analysis.confidence} %`;
}

export function renderDecisions(analyses) {
  const body = document.getElementById("decisions-body");
  if (!analyses.length) {
    body.replaceChildren(emptyRow(8, "No analyses yet: the engine writes one per symbol and cycle."));
    return;
  }
  body.replaceChildren(...analyses.map((a) => {
    const why = (a.reasons || []).map((r) => r.replace(/^Value error, /, ""));
    if (!why.length && a.reasoning) why.push(a.reasoning);
    return row([
      time(a.created_at), a.symbol,
      el("td", {}, el("span", { class: `signal signal-${a.signal}` }, a.signal)),
      confidenceText(a), a.regime, plain(a.confluence_score),
      el("td", {}, el("span", { class: `decision decision-${a.decision || "none"}` }, a.decision || "–")),
      el("td", { class: "why", title: a.reasoning }, why.join("; ") || "–"),
    ]);
  }));
}
