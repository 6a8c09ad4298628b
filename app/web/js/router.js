// Hash routes, one per view: #/overview, #/trades, #/trades/123, #/backtests/7 ...; back and forward just work.

export const VIEWS = ["overview", "trades", "performance", "decisions", "backtests", "events", "settings"];
const TITLES = {
  overview: "Overview", trades: "Trades", performance: "Performance", decisions: "Decisions", backtests: "Backtests",
  events: "Events", settings: "Settings",
};

/** "#/trades/12" -> {view: "trades", id: "12"}; anything unknown is the overview. */
export function parseRoute(hash) {
  const [view, id] = hash.replace(/^#\/?/, "").split("/");
  return VIEWS.includes(view) ? { view, id: id || null } : { view: "overview", id: null };
}

/** Shows the route's view, marks its link for screen readers and names the page after it. */
export function showRoute(route) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== route.view;
  for (const link of document.querySelectorAll("#main-nav a")) {
    if (link.dataset.view === route.view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const detail = route.id ? ` #${route.id}` : "";
  document.title = `${TITLES[route.view]}${detail} · TRD Bot`;
}
