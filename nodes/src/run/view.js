// The `run` view of the run report: what was asked and of whom (templates,
// backend, sampling), the calls and latency, and every record with its
// input, output, error text, latency and tokens; a filter shows failures.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`,
// `inputText`, `truncatedNote`): data only ever becomes text.

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
  context(panel, v.data.context);
  batches(panel, sum.batches);
  const rest = Object.keys(sum).filter((k) => !["backend", "model", "calls", "errors", "latency_ms", "batches"].includes(k));
  if (rest.length) add(panel, h("details", { class: "panel" }, h("summary", { text: "Summary" }), keyValues(sum, rest)));
  const rows = v.rows || [];
  if (!v.data.records) return;
  add(panel, h("h3", { text: "Records" }));
  truncatedNote(panel, v, rows, v.data.records);
  const own = v.data.fields || [];
  const skip = own.concat(["id", "provenance", "raw_output", "rules_applied", "tool_calls", "finish_reason", "truncated"]);
  const tok = (r) => (r.usage ? fmtInt(r.usage.prompt_tokens) + " / " + fmtInt(r.usage.completion_tokens) : dash);
  add(panel, recordsTable(v.node, rows, [], {
    columns: [
      { label: "input", get: (r) => inputText(r, skip) },
      rows.some((r) => r.variant != null) ? { label: "variant", get: (r) => (r.variant == null ? "" : valueText(r.variant)) } : null,
      { label: "latency", num: true, get: (r) => fmtMs(r.latency_ms) },
      { label: "tokens in / out", num: true, get: tok },
    ].filter(Boolean),
  }));
}

// What was sent and to whom: the backend and its sampling settings, then
// each template as written in the spec.
function context(panel, ctx) {
  if (!ctx) return;
  add(panel, h("h3", { text: "What is asked" }));
  const box = h("div", { class: "panel context" });
  const b = ctx.backend;
  if (b) {
    const line = ["backend ", h("code", { text: valueText(b.name) })];
    if (b.provider != null) line.push(": " + valueText(b.provider) + " ", h("code", { text: valueText(b.model) }));
    if (b.base_url != null) line.push(" at ", h("code", { text: valueText(b.base_url) }));
    add(box, h("div", { class: "backend" }, line));
    const sampling = Object.keys(b).filter((k) => !["name", "provider", "model", "base_url"].includes(k));
    if (sampling.length) add(box, h("div", { class: "chips sampling" }, sampling.map((k) => h("span", { class: "chip", text: k + ": " + valueText(b[k]) }))));
  }
  const templates = [];
  if (ctx.system != null) templates.push(["system", ctx.system]);
  if (ctx.prompt != null) templates.push(["prompt", ctx.prompt]);
  if (ctx.prompt_file != null) templates.push(["prompt_file", ctx.prompt_file]);
  if (ctx.prompts && typeof ctx.prompts === "object") for (const k of Object.keys(ctx.prompts)) templates.push(["prompts: " + k, ctx.prompts[k]]);
  for (const m of ctx.messages || []) templates.push(["message (" + valueText(m.role) + ")", m.content]);
  for (const [label, text] of templates) add(box, h("div", { class: "template" }, h("div", { class: "k", text: label }), h("pre", { class: "md", text: valueText(text) })));
  const more = ["repeat", "json", "tools", "rules", "max_errors"].filter((k) => ctx[k] != null);
  if (more.length) add(box, h("dl", { class: "fields" }, more.map((k) => [h("dt", { text: k }), h("dd", { text: valueText(ctx[k]) })])));
  add(panel, box);
}

// The provider batches the node's calls went through (`batch:` backends):
// each batch's id, size, last state and how long its results took.
function batches(panel, list) {
  if (!Array.isArray(list) || !list.length) return;
  add(panel, h("h3", { text: "Batches" }));
  const head = h("tr", {}, ["batch", "requests", "state", "waited", "created by"].map((t) => h("th", { text: t })));
  const body = list.map((b) => h("tr", { class: "batch" },
    h("td", {}, h("code", { text: valueText(b.id) })),
    h("td", { class: "num", text: fmtInt(b.requests) }),
    h("td", { text: valueText(b.state) }),
    h("td", { class: "num", text: b.waited_s == null ? dash : fmtMs(Math.round(b.waited_s * 1000)) }),
    h("td", { text: b.resumed ? "an earlier run" : "this run" })));
  add(panel, h("table", { class: "records batches" }, h("thead", {}, head), h("tbody", {}, body)));
}
