// The `evaluate` view of the run report: the summary, each metric and the scored records.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
  if (!viewHead(panel, v, "scored records")) return;
  const d = v.data, sum = d.summary || {}, rec = d.records, rows = v.rows;
  const cards = h("div", { class: "totals" },
    card("records", fmtInt(sum.records != null ? sum.records : rec.total)),
    card("passed every metric", sum.passed != null ? fmtInt(sum.passed) + " (" + fmtPct(sum.pass_rate) + ")" : dash),
    card("failed", sum.passed != null ? fmtInt((sum.records || 0) - sum.passed) : dash),
    card("mean score", sum.score != null ? fmtNum(sum.score) : dash));
  add(panel, cards);
  const ms = sum.metrics || {};
  if (Object.keys(ms).length) {
    const rows = d.metrics.filter((m) => ms[m]).map((m) => {
      const x = ms[m];
      const bar = h("span", { class: "bar" }, h("span"));
      bar.firstChild.style.width = Math.round((x.pass_rate || 0) * 100) + "%";
      return h("tr", null, h("td", null, h("code", { text: m })), h("td", { class: "num", text: fmtNum(x.mean) }),
        // Mean and pass rate are over the records scored without error.
        h("td", null, bar, fmtPct(x.pass_rate)), h("td", { class: "num", text: fmtInt(x.scored != null ? x.scored : x.count) }),
        h("td", { class: "num" + (x.errors ? " err-text" : ""), text: fmtInt(x.errors) }));
    });
    add(panel, h("div", { class: "panel scroll" }, h("table", null,
      h("thead", null, h("tr", null, h("th", { text: "metric" }), h("th", { class: "num", text: "mean" }), h("th", { text: "pass rate" }), h("th", { class: "num", text: "scored" }), h("th", { class: "num", text: "errors" }))),
      h("tbody", null, rows))));
  }
  add(panel, h("h3", { text: "Records" }));
  if (rec.truncated) {
    const mib = (b) => fmtInt(b / 1048576) + " MiB";
    const why = rec.truncated === "bytes"
      ? mib(DATA.limits.record_bytes) + " of records per node, " + mib(DATA.limits.report_record_bytes) + " in all"
      : fmtInt(DATA.limits.records) + " records per node";
    add(panel, h("div", { class: "note" }, "This report keeps the first " + fmtInt(rows.length) + " of " + fmtInt(rec.total) +
      " records (at most " + why + "). All of them: ", h("code", { text: "flow show " + v.node + " --run " + run.run_id })));
  }
  add(panel, recordsTable(v.node, rows, d.metrics));
}

// A table of records: search, a pass/fail filter, pages. Filtering walks
// the rows once; drawing builds only the current page.
