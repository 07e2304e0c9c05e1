// The `extract` view of the run report: the logs on a map, the density histogram, the groups and the examples.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

// Colours of the functions (groups) on the map, cycling.
const PALETTE = 8;

function render(panel, v) {
  if (!viewHead(panel, v, "golden examples from logs")) return;
  const d = v.data, meta = d.meta || {}, map = v.projection;
  const strategy = meta.strategy || (map && map.strategy);
  add(panel, h("div", { class: "totals" },
    card("logs", fmtInt(meta.records)),
    card("distinct", fmtInt(meta.logs)),
    card("successful", fmtInt(meta.successful)),
    card("examples", fmtInt(meta.examples)),
    card("strategy", strategy == null ? dash : valueText(strategy) + (meta.epsilon != null ? " · ε = " + meta.epsilon : ""), "small"),
    meta.dimensions != null ? card("dimensions", fmtInt(meta.dimensions)) : null,
    meta.embedded && meta.embedded.calls ? card("embedded", fmtInt(meta.embedded.texts) + " texts in " + fmtInt(meta.embedded.calls) + (meta.embedded.calls === 1 ? " call" : " calls"), "small") : null));

  let table = null;
  if (!map) {
    add(panel, h("div", { class: "note", text: "No map of the logs: this output was written by a flow from before extract wrote projection.json. `flow run --rerun` writes it." }));
  } else {
    const pts = map.points || [];
    const ex = (map.projection && map.projection.explained_variance) || [];
    add(panel, h("h3", { text: "The logs on a map" }),
      h("div", { class: "sub", text: "Each point is a distinct log, its embedding projected on the two directions along which the logs vary most (PCA" +
        (ex.length === 2 ? ": " + fmtPct(ex[0]) + " and " + fmtPct(ex[1]) + " of the variance" : "") +
        "). Colour: function; hollow: failed or without an answer, never picked; ringed and numbered: picked (" + valueText(strategy) + ", by rank)." }));
    if (map.sampled) {
      add(panel, h("div", { class: "note", text: "The map shows " + fmtInt(map.shown) + " of " + fmtInt(map.logs) + " logs (at most " + fmtInt(map.max_points) +
        "): every pick and a fixed sample of the others. The histogram counts all of them." }));
    }
    const detail = h("div", { class: "map-detail" }, h("span", { class: "muted", text: "Point at a log to see it; a pick opens its example below." }));
    const focus = (p) => {
      if (p.picked && table && table.focusRecord) {
        table.focusRecord(p.id);
        table.scrollIntoView({ block: "nearest" });
      }
    };
    add(panel, h("div", { class: "panel" }, mapLegend(pts), h("div", { class: "graph" }, scatter(pts, detail, focus)), detail));
    add(panel, h("h3", { text: "Density" }),
      h("div", { class: "sub", text: "How many distinct logs have each density (the sum of their similarities to their neighbours, logs at cosine similarity ≥ 1 − ε): successful ones below, failed ones above, the picks marked." }),
      h("div", { class: "panel graph" }, densityHistogram(map.histogram)));
  }
  const groups = meta.groups || [];
  if (groups.length) {
    add(panel, h("h3", { text: "Groups" }), h("div", { class: "panel scroll" }, h("table", null,
      h("thead", null, h("tr", null, ["function", "logs", "distinct", "successful", "examples", "densities of the examples"].map((t, i) => h("th", { class: i && i < 5 ? "num" : null, text: t })))),
      h("tbody", null, groups.map((g) => h("tr", null,
        h("td", null, h("code", { text: g.function == null ? "(none)" : valueText(g.function) })),
        h("td", { class: "num", text: fmtInt(g.records) }), h("td", { class: "num", text: fmtInt(g.logs) }),
        h("td", { class: "num", text: fmtInt(g.successful) }), h("td", { class: "num", text: fmtInt(g.picked) }),
        h("td", { text: g.densities ? fmtNum(g.densities[0]) + (g.densities[1] !== g.densities[0] ? " … " + fmtNum(g.densities[1]) : "") : dash })))))));
  }
  if (v.rows.length) {
    add(panel, h("h3", { text: "Examples" }));
    if (d.records && d.records.truncated) add(panel, h("div", { class: "note", text: "This report keeps the first " + fmtInt(v.rows.length) + " of " + fmtInt(d.records.total) + " examples." }));
    table = recordsTable(v.node, v.rows, []);
    add(panel, table);
  }
}

function mapLegend(pts) {
  const functions = [];
  for (const p of pts) if (!functions.includes(p.function)) functions.push(p.function);
  const swatch = (cls) => s("svg", { width: 14, height: 14, class: "swatch" }, s("circle", { class: cls, cx: 7, cy: 7, r: 5 }));
  return h("div", { class: "legend" },
    functions.map((f, k) => h("span", null, swatch("pt c" + (k % PALETTE)), f == null ? "(no function)" : valueText(f))),
    h("span", null, swatch("pt off"), "not a candidate"),
    h("span", null, swatch("pt picked"), "picked"));
}

// One circle per point, the same scale on both axes (distances mean
// something); candidates over the others, picks on top. One listener for
// all the points.
function scatter(pts, detail, focus) {
  const W = 760, H = 440, PAD = 18;
  if (!pts.length) return h("div", { class: "empty", text: "no logs" });
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of pts) {
    x0 = Math.min(x0, p.x); x1 = Math.max(x1, p.x); y0 = Math.min(y0, p.y); y1 = Math.max(y1, p.y);
  }
  const span = Math.max(x1 - x0, y1 - y0, 1e-9);
  const scale = Math.min((W - 2 * PAD) / Math.max(x1 - x0, span * 1e-3), (H - 2 * PAD) / Math.max(y1 - y0, span * 1e-3));
  const cx = (x) => W / 2 + (x - (x0 + x1) / 2) * scale;
  const cy = (y) => H / 2 - (y - (y0 + y1) / 2) * scale;
  const colour = new Map();
  for (const p of pts) if (!colour.has(p.function)) colour.set(p.function, "c" + (colour.size % PALETTE));
  const svg = s("svg", { class: "map", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "the logs projected on two dimensions" });
  add(svg, s("line", { class: "axis", x1: PAD, x2: W - PAD, y1: cy(0), y2: cy(0) }), s("line", { class: "axis", x1: cx(0), x2: cx(0), y1: PAD, y2: H - PAD }));
  const order = pts.map((_, i) => i);
  const layer = (p) => (p.picked ? 2 : p.success ? 1 : 0);
  order.sort((a, b) => layer(pts[a]) - layer(pts[b]) || a - b);
  const frag = document.createDocumentFragment();
  const labels = pts.filter((p) => p.picked).length <= 60;
  for (const i of order) {
    const p = pts[i];
    const cls = "pt " + colour.get(p.function) + (p.success ? "" : " off") + (p.picked ? " picked" : "");
    frag.append(s("circle", { class: cls, cx: cx(p.x).toFixed(1), cy: cy(p.y).toFixed(1), r: p.picked ? 6.5 : 3.5, "data-i": i }));
    if (p.picked && labels) frag.append(s("text", { class: "rank", x: (cx(p.x) + 8).toFixed(1), y: (cy(p.y) - 7).toFixed(1), text: p.picked.rank }));
  }
  svg.append(frag);
  const at = (e) => {
    const i = e.target && e.target.getAttribute ? e.target.getAttribute("data-i") : null;
    return i == null ? null : pts[Number(i)];
  };
  svg.addEventListener("mouseover", (e) => {
    const p = at(e);
    if (p) detail.replaceChildren(pointText(p));
  });
  svg.addEventListener("click", (e) => {
    const p = at(e);
    if (p) focus(p);
  });
  return svg;
}

function pointText(p) {
  return h("span", null, h("code", { text: valueText(p.id) }), " · ", p.function == null ? "(no function)" : valueText(p.function),
    " · ", pill(p.success ? "pass" : "fail", valueText(p.status === "" ? "(no status)" : p.status)),
    " · density " + fmtNum(p.density),
    p.picked ? h("strong", { text: " · picked, " + valueText(p.picked.strategy) + " #" + p.picked.rank }) : null);
}

// Bins of equal width, successful logs stacked under failed ones, a mark
// over each bin that holds picks.
function densityHistogram(hist) {
  if (!hist || !hist.logs || !hist.logs.length) return h("div", { class: "empty", text: "no logs" });
  const W = 760, H = 230, LEFT = 44, BOTTOM = 34, TOP = 32, RIGHT = 12;
  const n = hist.logs.length, most = Math.max(1, ...hist.logs);
  const bw = (W - LEFT - RIGHT) / n;
  const y = (c) => TOP + (H - TOP - BOTTOM) * (1 - c / most);
  const svg = s("svg", { class: "hist", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "histogram of the densities" });
  add(svg, s("line", { class: "axis", x1: LEFT, x2: W - RIGHT, y1: y(0), y2: y(0) }),
    s("text", { class: "muted", x: LEFT - 6, y: y(most) + 4, "text-anchor": "end", text: fmtInt(most) }),
    s("text", { class: "muted", x: LEFT - 6, y: y(0) + 4, "text-anchor": "end", text: "0" }));
  const width = (hist.to - hist.from) / n;
  for (let b = 0; b < n; b++) {
    const all = hist.logs[b], ok = hist.successful[b], picked = hist.picked[b];
    const x = LEFT + b * bw;
    const from = hist.from + b * width, to = from + width;
    const g = s("g", { class: "bin", "data-logs": all, "data-picked": picked },
      s("title", { text: "density " + fmtNum(from, 2) + " – " + fmtNum(to, 2) + ": " + fmtInt(all) + " logs, " + fmtInt(ok) + " successful" + (picked ? ", " + fmtInt(picked) + " picked" : "") }),
      s("rect", { class: "hit", x: x, y: TOP, width: bw, height: H - TOP - BOTTOM }));
    if (ok) add(g, s("rect", { class: "hbar ok", x: x + 1, y: y(ok), width: Math.max(1, bw - 2), height: y(0) - y(ok) }));
    if (all > ok) add(g, s("rect", { class: "hbar fail", x: x + 1, y: y(all), width: Math.max(1, bw - 2), height: y(ok) - y(all) }));
    if (picked) add(g, s("path", { class: "pick", d: `M ${x + bw / 2 - 5} ${y(all) - 12} h 10 l -5 8 z` }),
      s("text", { class: "pick", x: x + bw / 2, y: y(all) - 15, "text-anchor": "middle", text: picked }));
    add(svg, g);
  }
  for (const [k, anchor] of [[0, "start"], [n / 2, "middle"], [n, "end"]]) {
    add(svg, s("text", { class: "muted", x: LEFT + k * bw, y: H - BOTTOM + 16, "text-anchor": anchor, text: fmtNum(hist.from + k * width, 2) }));
  }
  add(svg, s("text", { class: "muted", x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle", text: "density" }));
  return svg;
}
