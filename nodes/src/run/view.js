// The `run` view of the run report: the backend, its calls and latency.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
  if (!viewHead(panel, v, "backend answers")) return;
  const sum = v.data.summary || {};
  const n = byName.get(v.node) || {};
  const c = n.calls;
  add(panel, h("div", { class: "totals" },
    sum.model != null ? card("backend", valueText(sum.backend) + " (" + valueText(sum.model) + ")", "small") : null,
    sum.calls != null ? card("calls", fmtInt(sum.calls)) : null,
    sum.errors != null ? card("failed records", fmtInt(sum.errors)) : null,
    sum.latency_ms ? card("latency p50 / p95", fmtMs(sum.latency_ms.p50) + " / " + fmtMs(sum.latency_ms.p95), "small") : null,
    c ? card("this run: sent", callsText(c), "small") : null,
    c ? card("tokens in / out", fmtInt(c.prompt_tokens) + " / " + fmtInt(c.completion_tokens), "small") : null,
    c ? card("cost", fmtCost(c.cost_usd, c.requests)) : null));
  const rest = Object.keys(sum).filter((k) => !["backend", "model", "calls", "errors", "latency_ms"].includes(k));
  if (rest.length) add(panel, h("h3", { text: "Summary" }), keyValues(sum, rest));
}
