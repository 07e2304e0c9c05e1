// The `generate` view of the run report: what it made and dropped, the
// schema, and the generated cases.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
  if (!viewHead(panel, v, "generated test cases")) return;
  const meta = v.data.meta || {};
  const counts = ["cases", "calls", "invalid", "duplicates", "unparsable", "failed_calls"].filter((k) => meta[k] != null);
  add(panel, h("div", { class: "totals" }, counts.map((k) => card(k.replace("_", " "), fmtInt(meta[k]))),
    meta.model != null ? card("backend", valueText(meta.backend) + " (" + valueText(meta.model) + ")", "small") : null));
  const schema = meta.schema || {};
  if (Object.keys(schema).length) {
    add(panel, h("h3", { text: "Schema" }), h("div", { class: "panel scroll" }, h("table", null,
      h("thead", null, h("tr", null, ["field", "type", "description", "enum"].map((t) => h("th", { text: t })))),
      h("tbody", null, Object.keys(schema).map((f) => {
        const x = schema[f] || {};
        return h("tr", null, h("td", null, h("code", { text: f })), h("td", { text: valueText(x.type) }), h("td", { class: "text", text: x.description == null ? "" : valueText(x.description) }), h("td", { class: "text", text: x.enum ? x.enum.map(valueText).join(", ") : "" }));
      })))));
  }
  const seeds = meta.seeds || [];
  if (seeds.length) add(panel, h("h3", { text: "Seeds (" + fmtInt(seeds.length) + ")" }), h("div", { class: "chips" }, seeds.slice(0, DATA.limits.ids).map((x) => h("span", { class: "chip", text: valueText(x) }))));
  const rest = Object.keys(meta).filter((k) => !counts.includes(k) && !["schema", "seeds", "backend", "model"].includes(k));
  if (rest.length) add(panel, h("h3", { text: "More" }), keyValues(meta, rest));
  const rows = v.rows || [];
  if (!v.data.records) return;
  add(panel, h("h3", { text: "Generated cases" }));
  truncatedNote(panel, v, rows, v.data.records);
  // The schema's fields as columns; the rest (provenance) in each case's detail.
  const fields = Object.keys(schema).length ? Object.keys(schema) : Object.keys(rows[0] || {}).filter((k) => k !== "id" && k !== "provenance");
  add(panel, recordsTable(v.node, rows, [], {
    columns: fields.slice(0, 6).map((f) => ({ label: f, get: (r) => (r[f] == null ? "" : valueText(r[f])) })),
  }));
}
