// The `compare` view of the run report: each candidate against the baseline,
// the flips and the gates, then the comparison case by case (`cases.js`: the
// sides' outputs side by side, a word diff, filters, sort, a grid past two).
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
  if (!viewHead(panel, v, "candidate against baseline")) return;
  const rep = v.data.report || {};
  const cases = casesTable(v, rep);
  const conf = rep.confidence != null ? Math.round(rep.confidence * 100) + "%" : "";
  add(panel, h("div", { class: "sub", text: "joined by `" + (rep.key || "id") + "`; CI: paired bootstrap (" + fmtInt(rep.resamples) + " resamples, seed " + rep.seed + "); p: exact McNemar for pass/fail metrics, paired bootstrap otherwise." }));
  for (const c of rep.candidates || []) {
    const base = rep.baseline || {};
    add(panel, h("h3", null, h("code", { text: c.name }), " vs baseline ", h("code", { text: base.name })));
    add(panel, h("div", { class: "sub", text: fmtInt(c.matched) + " matched · only in baseline: " + fmtInt(c.only_in_baseline_total || (c.only_in_baseline || []).length) + " · only in candidate: " + fmtInt(c.only_in_candidate_total || (c.only_in_candidate || []).length) }));
    const metrics = c.metrics || [];
    add(panel, h("div", { class: "panel graph" }, forest(metrics, conf)));
    const rows = metrics.map((m) => h("tr", null,
      h("td", null, h("code", { text: m.metric })), h("td", { class: "num", text: fmtInt(m.pairs) }),
      h("td", { class: "num", text: fmtNum(m.baseline_mean) }), h("td", { class: "num", text: fmtNum(m.candidate_mean) }),
      h("td", { class: "num " + (m.delta < 0 ? "err-text" : ""), text: fmtSigned(m.delta) }),
      h("td", { class: "num", text: m.ci ? "[" + fmtNum(m.ci[0]) + ", " + fmtNum(m.ci[1]) + "]" : dash }),
      h("td", { class: "num", text: fmtNum(m.p) + (m.test ? " (" + m.test + ")" : "") }),
      h("td", { class: "num", text: fmtInt(m.pass_to_fail_total || (m.pass_to_fail || []).length) }),
      h("td", { class: "num", text: fmtInt(m.fail_to_pass_total || (m.fail_to_pass || []).length) })));
    add(panel, h("div", { class: "panel scroll" }, h("table", null,
      h("thead", null, h("tr", null, ["metric", "n", "baseline", "candidate", "delta", conf + " CI", "p", "pass → fail", "fail → pass"].map((t, i) => h("th", { class: i ? "num" : null, text: t })))),
      h("tbody", null, rows))));
    for (const m of metrics) {
      for (const [field, label] of [["pass_to_fail", "pass → fail"], ["fail_to_pass", "fail → pass"]]) {
        const ids = m[field] || [];
        if (!ids.length) continue;
        const total = m[field + "_total"] || ids.length;
        add(panel, h("div", { class: "panel flips" }, h("strong", { text: m.metric + ": " + label + " (" + fmtInt(total) + ")" }),
          total > ids.length ? h("span", { class: "muted", text: " · the first " + fmtInt(ids.length) + " shown" }) : null,
          h("div", { class: "chips" }, ids.map((id) => flipChip(cases, id)))));
      }
    }
  }
  const gates = rep.gates || [];
  if (gates.length) {
    add(panel, h("h3", { text: "Gates" }), h("div", { class: "panel scroll" }, h("table", null,
      h("thead", null, h("tr", null, ["rule", "candidate", "metric", "result", "message"].map((t) => h("th", { text: t })))),
      h("tbody", null, gates.map((g) => h("tr", null, h("td", null, h("code", { text: g.rule })), h("td", { text: g.candidate }), h("td", { text: g.metric }),
        h("td", null, pill(g.tripped ? "fail" : "pass", g.tripped ? "tripped" : "passed")), h("td", { class: "text", text: g.message || "" })))))));
  }
  add(panel, h("h3", { text: "Case by case" }));
  const cm = v.data.cases;
  if (!cm) return;
  if ((v.data.missing_sides || []).length) add(panel, h("div", { class: "note", text: "Not in this run, so not shown case by case: " + v.data.missing_sides.join(", ") + "." }));
  truncatedNote(panel, v, v.rows, cm);
  add(panel, cases.root);
}

// A flipped case: its id and its question (the first text of its input);
// a click opens its row of the case-by-case table.
function flipChip(cases, id) {
  const text = valueText(id);
  const row = cases.byKey(text);
  const question = row ? firstText(row.input) : null;
  return h("button", {
    class: "chip flip", title: row ? "show this case side by side" : "not in the case-by-case table",
    "data-key": text, disabled: !row,
    onclick: () => cases.focus(text),
  }, h("span", { class: "flip-id", text }), question ? h("span", { class: "flip-q", text: cut(question, 60) }) : null);
}

// Each metric's delta as a dot and its confidence interval as a bar,
// against a dashed zero line.
function forest(metrics, conf) {
  const W = 640, ROW = 30, LEFT = 150, RIGHT = 110, TOP = 24;
  const height = TOP + metrics.length * ROW + 12;
  let span = 0.05;
  for (const m of metrics) for (const x of [m.delta, ...(m.ci || [])]) if (x != null) span = Math.max(span, Math.abs(x));
  span *= 1.1;
  const x = (vv) => LEFT + ((vv + span) / (2 * span)) * (W - LEFT - RIGHT);
  const svg = s("svg", { class: "forest", width: W, height, viewBox: "0 0 " + W + " " + height, role: "img", "aria-label": "deltas with " + conf + " confidence intervals" });
  add(svg, s("line", { class: "zero", x1: x(0), x2: x(0), y1: TOP - 8, y2: height - 6 }),
    s("text", { class: "muted", x: x(-span), y: 14, text: fmtSigned(-span) }),
    s("text", { class: "muted", x: x(0) - 4, y: 14, text: "0" }),
    s("text", { class: "muted", x: x(span) - 40, y: 14, text: fmtSigned(span) }));
  metrics.forEach((m, k) => {
    const y = TOP + k * ROW + ROW / 2;
    const dir = m.ci && m.ci[0] > 0 ? "up" : m.ci && m.ci[1] < 0 ? "down" : m.delta < 0 && m.significant_drop ? "down" : "flat";
    add(svg, s("text", { x: 0, y: y + 4, text: cut(m.metric, 22) }), s("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: y, y2: y }));
    if (m.ci) add(svg, s("line", { class: "ci " + dir, x1: x(m.ci[0]), x2: x(m.ci[1]), y1: y, y2: y }));
    if (m.delta != null) add(svg, s("circle", { class: dir, cx: x(m.delta), cy: y, r: 5 }));
    add(svg, s("text", { x: W - RIGHT + 10, y: y + 4, text: fmtSigned(m.delta) }));
  });
  return svg;
}
