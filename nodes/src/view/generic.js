// The generic view of the run report, for a kind without a view of its own:
// its meta, its text artifacts and its records. Inlined into the report's
// script, in its scope; data only ever becomes text.

// A kind without a view of its own: its meta, text artifacts, records.
function render(panel, v) {
  if (!viewHead(panel, v, "output")) return;
  const d = v.data, meta = d.meta;
  if (meta && typeof meta === "object" && Object.keys(meta).length) {
    const counts = Object.keys(meta).filter((k) => typeof meta[k] === "number");
    add(panel, h("div", { class: "totals" }, counts.map((k) => card(k.replace(/_/g, " "), fmtNum(meta[k])))));
    const rest = Object.keys(meta).filter((k) => !counts.includes(k));
    if (rest.length) add(panel, h("h3", { text: "Meta" }), keyValues(meta, rest));
  }
  artifactBlocks(panel, d.artifacts);
  const rec = d.records;
  if (v.rows.length) {
    add(panel, h("h3", { text: "Records" }));
    if (rec.truncated) add(panel, h("div", { class: "note", text: "This report keeps the first " + fmtInt(v.rows.length) + " of " + fmtInt(rec.total) + " records." }));
    add(panel, recordsTable(v.node, v.rows, []));
  }
}
