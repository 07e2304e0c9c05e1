// The `load` view of the run report: the source's fields and its first
// records. Inlined into the report's script, in its scope (the helpers `h`,
// `add`, `card`, `fmt*`, `viewHead`, `recordsTable`, `truncatedNote`): data
// only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
  if (!viewHead(panel, v, "source records")) return;
  const d = v.data, rows = v.rows || [], fields = d.fields || [];
  add(panel, h("div", { class: "totals" },
    card("records", fmtInt(d.records ? d.records.total : rows.length)),
    card("fields", fmtInt(fields.length)),
    d.path != null ? card("file", valueText(d.path), "small") : null));
  if (fields.length) {
    add(panel, h("h3", { text: "Fields" + (d.records && d.records.truncated ? " (of the first " + fmtInt(rows.length) + " records)" : "") }),
      h("div", { class: "panel scroll" }, h("table", { class: "load-fields" },
        h("thead", null, h("tr", null, h("th", { text: "field" }), h("th", { class: "num", text: "records with it" }), h("th", { text: "type" }))),
        h("tbody", null, fields.map((f) => h("tr", { class: "field" }, h("td", null, h("code", { text: f.name })),
          h("td", { class: "num", text: fmtInt(f.count) }), h("td", { text: (f.types || []).join(" | ") })))))));
  }
  add(panel, h("h3", { text: "First records" }));
  truncatedNote(panel, v, rows, d.records);
  const shown = fields.map((f) => f.name).filter((n) => n !== "id").slice(0, 5);
  add(panel, recordsTable(v.node, rows, [], { columns: shown.map((f) => ({ label: f, get: (r) => (r[f] == null ? "" : valueText(r[f])) })) }));
}
