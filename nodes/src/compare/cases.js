// The comparison case by case: one row per case with its input, `expected`,
// and each side's output and scores side by side; a word diff of two
// outputs; filters (flipped, pass → fail, fail → pass, regressed on a
// metric, search), sort by any column, pages. Past two sides it is a grid:
// cases × sides, each candidate measured against the baseline (the first).
// Filtering and sorting walk the rows once; only the visible page is drawn.

function casesTable(v, rep) {
  const rows = v.rows || [];
  const sides = v.data.sides || [];
  const grid = sides.length > 2;
  const metrics = [];
  for (const c of rep.candidates || []) for (const m of c.metrics || []) if (!metrics.includes(m.metric)) metrics.push(m.metric);
  const passOf = (side, m) => {
    const sc = side && side.scores && side.scores[m];
    return sc && sc.error == null && typeof sc.pass === "boolean" ? sc.pass : null;
  };
  const scoreOf = (side, m) => {
    const sc = side && side.scores && side.scores[m];
    return sc && sc.error == null && typeof sc.score === "number" ? sc.score : null;
  };
  // Per case: whether a candidate flipped pass → fail or fail → pass on a
  // metric, and the metrics whose score fell.
  const flips = rows.map((r) => {
    const f = { p2f: false, f2p: false, down: new Set() };
    const base = r.sides[0];
    for (let s = 1; s < r.sides.length; s++) {
      for (const m of metrics) {
        const a = passOf(base, m), b = passOf(r.sides[s], m);
        if (a === true && b === false) f.p2f = true;
        if (a === false && b === true) f.f2p = true;
        const x = scoreOf(base, m), y = scoreOf(r.sides[s], m);
        if (x != null && y != null && y < x) f.down.add(m);
      }
    }
    return f;
  });
  const keyAt = new Map(rows.map((r, i) => [String(r.key), i]));
  const count = (p) => flips.reduce((a, f) => a + (p(f) ? 1 : 0), 0);
  const st = { mode: "all", query: "", page: 0, size: 50, sort: null, desc: false };
  let idx = rows.map((_, i) => i);
  let hay = null;
  const open = new Set();

  const search = h("input", { type: "search", class: "cmp-search", placeholder: "search ids, inputs, outputs…", "aria-label": "search cases" });
  const filter = h("select", { class: "cmp-filter", "aria-label": "filter cases" },
    h("option", { value: "all", text: "all cases (" + fmtInt(rows.length) + ")" }),
    h("option", { value: "flipped", text: "flipped (" + fmtInt(count((f) => f.p2f || f.f2p)) + ")" }),
    h("option", { value: "p2f", text: "pass → fail (" + fmtInt(count((f) => f.p2f)) + ")" }),
    h("option", { value: "f2p", text: "fail → pass (" + fmtInt(count((f) => f.f2p)) + ")" }),
    metrics.map((m) => h("option", { value: "down:" + m, text: "regressed on " + m + " (" + fmtInt(count((f) => f.down.has(m))) + ")" })));
  const size = h("select", { class: "cmp-size", "aria-label": "cases per page" }, [25, 50, 100, 250].map((n) => h("option", { value: n, selected: n === st.size, text: n + " per page" })));
  const first = h("button", { class: "cmp-first", text: "«", title: "first page" });
  const prev = h("button", { class: "cmp-prev", text: "‹ prev" });
  const next = h("button", { class: "cmp-next", text: "next ›" });
  const last = h("button", { class: "cmp-last", text: "»", title: "last page" });
  const info = h("span", { class: "info cmp-info" });
  const shown = h("span", { class: "count cmp-count" });
  const tbody = h("tbody");

  // The columns: each with a label, a sort value and a cell.
  const primary = metrics[0];
  const cols = [
    { label: "#", cls: "num", sort: (i) => i, cell: (r, i) => h("td", { class: "num muted", text: i + 1 }) },
    { label: "id", sort: (i) => String(rows[i].key), cell: (r) => h("td", { class: "id cmp-id", text: valueText(r.key) }) },
    { label: "input", sort: (i) => firstText(rows[i].input) || "", cell: (r) => h("td", { class: "clip cmp-input" }, h("div", { text: inputLine(r.input) })) },
    { label: "expected", sort: (i) => (rows[i].expected == null ? "" : valueText(rows[i].expected)), cell: (r) => h("td", { class: "clip cmp-expected", text: r.expected == null ? "" : valueText(r.expected) }) },
  ];
  sides.forEach((name, s) => {
    cols.push({
      label: name + (s === 0 ? " (baseline)" : ""), side: s,
      sort: (i) => { const x = rows[i].sides[s]; return x == null ? "" : x.output == null ? "" : valueText(x.output); },
      cell: (r) => sideCell(r.sides[s], s),
    });
    if (primary != null) cols.push({ label: primary + " · " + name, cls: "num", sort: (i) => scoreOf(rows[i].sides[s], primary), cell: (r) => h("td", { class: "num cmp-score", text: fmtNum(scoreOf(r.sides[s], primary)) }) });
  });
  if (!grid && sides.length === 2) cols.push({ label: "diff", cell: (r) => h("td", { class: "clip cmp-diff" }, diffBlock(outText(r.sides[0]), outText(r.sides[1]))) });
  cols.push({ label: "change", sort: (i) => (flips[i].p2f ? 0 : flips[i].f2p ? 2 : 1), cell: (r, i) => h("td", { class: "cmp-change" }, changePill(flips[i])) });

  const heads = cols.map((c, k) => {
    const th = h("th", { class: (c.cls || "") + (c.sort ? " sortable" : ""), "data-col": k, text: c.label, title: c.sort ? "sort by " + c.label : null });
    if (c.sort) th.addEventListener("click", () => { if (st.sort === k) st.desc = !st.desc; else { st.sort = k; st.desc = false; } refilter(); });
    return th;
  });

  function outText(side) {
    if (side == null) return "";
    return side.output == null ? "" : valueText(side.output);
  }
  function sideCell(side, s) {
    if (side == null) return h("td", { class: "clip cmp-out muted", "data-side": s, text: "not in this side" });
    const pills = metrics.map((m) => { const p = passOf(side, m); return p == null ? null : pill(p ? "pass" : "fail", m); });
    return h("td", { class: "clip cmp-out", "data-side": s },
      side.error != null ? h("div", { class: "err-text", text: "error: " + valueText(side.error) }) : h("div", { class: "cmp-text", text: outText(side) }),
      pills.some(Boolean) ? h("div", { class: "cmp-pills" }, pills) : null);
  }
  function changePill(f) {
    if (f.p2f && f.f2p) return pill("error", "mixed");
    if (f.p2f) return pill("fail", "pass → fail");
    if (f.f2p) return pill("pass", "fail → pass");
    return f.down.size ? h("span", { class: "muted", text: "score down" }) : h("span", { class: "muted", text: "same" });
  }
  function haystack(r) {
    const parts = [valueText(r.key), JSON.stringify(r.input), r.expected == null ? "" : valueText(r.expected)];
    for (const x of r.sides) if (x) parts.push(outText(x), x.error == null ? "" : valueText(x.error));
    return parts.join("\n").toLowerCase();
  }
  function keep(i) {
    const f = flips[i];
    switch (st.mode) {
      case "all": return true;
      case "flipped": return f.p2f || f.f2p;
      case "p2f": return f.p2f;
      case "f2p": return f.f2p;
      default: return st.mode.startsWith("down:") && f.down.has(st.mode.slice(5));
    }
  }
  function refilter(keepPage) {
    const q = st.query.trim().toLowerCase();
    if (q && !hay) hay = rows.map(haystack);
    const out = [];
    for (let i = 0; i < rows.length; i++) if (keep(i) && (!q || hay[i].includes(q))) out.push(i);
    if (st.sort != null) {
      const by = cols[st.sort].sort;
      const val = out.map(by);
      const order = out.map((_, k) => k);
      order.sort((a, b) => {
        const x = val[a], y = val[b];
        const c = x == null ? (y == null ? 0 : 1) : y == null ? -1 : typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return (st.desc && x != null && y != null ? -c : c) || out[a] - out[b];
      });
      idx = order.map((k) => out[k]);
    } else idx = out;
    if (!keepPage) st.page = 0;
    draw();
  }
  const pages = () => Math.max(1, Math.ceil(idx.length / st.size));
  function draw() {
    const from = st.page * st.size, to = Math.min(idx.length, from + st.size);
    const trs = [];
    for (let k = from; k < to; k++) {
      const i = idx[k];
      const r = rows[i];
      const tr = h("tr", { class: "row cmp-row" + (open.has(i) ? " open" : ""), "data-key": String(r.key) }, cols.map((c) => c.cell(r, i)));
      tr.addEventListener("click", () => { if (open.has(i)) open.delete(i); else open.add(i); draw(); });
      trs.push(tr);
      if (open.has(i)) trs.push(detail(r));
    }
    if (!trs.length) trs.push(h("tr", null, h("td", { class: "empty", colspan: cols.length, text: "no cases match" })));
    tbody.replaceChildren(...trs);
    heads.forEach((th, k) => th.setAttribute("aria-sort", st.sort === k ? (st.desc ? "descending" : "ascending") : "none"));
    shown.textContent = idx.length === rows.length ? fmtInt(rows.length) + " cases" : fmtInt(idx.length) + " of " + fmtInt(rows.length) + " cases match";
    info.textContent = idx.length ? "cases " + fmtInt(from + 1) + "–" + fmtInt(to) + " of " + fmtInt(idx.length) + " · page " + fmtInt(st.page + 1) + " of " + fmtInt(pages()) : "";
    first.disabled = prev.disabled = st.page === 0;
    next.disabled = last.disabled = st.page >= pages() - 1;
  }
  // A case opened: every input field, and per side its output, error and
  // each metric's score and reason; past two sides, each candidate's diff
  // against the baseline.
  function detail(r) {
    const dl = h("dl", { class: "fields" });
    for (const k of Object.keys(r.input || {})) dl.append(h("dt", { text: k }), h("dd", { text: valueText(r.input[k]) }));
    if (r.expected != null) dl.append(h("dt", { text: "expected" }), h("dd", { text: valueText(r.expected) }));
    const per = sides.map((name, s) => {
      const x = r.sides[s];
      const sc = (x && x.scores) || {};
      return h("div", { class: "cmp-side" }, h("h3", { text: name + (s === 0 ? " (baseline)" : "") }),
        x == null ? h("div", { class: "muted", text: "not in this side" }) : [
          x.error != null ? h("div", { class: "error-box", text: valueText(x.error) }) : h("pre", { class: "md", text: outText(x) }),
          s > 0 && grid ? h("div", { class: "cmp-diff" }, diffBlock(outText(r.sides[0]), outText(x))) : null,
          h("table", null, h("tbody", null, Object.keys(sc).map((m) => {
            const y = sc[m] || {};
            const note = y.error != null ? "error: " + valueText(y.error) : y.reason != null ? valueText(y.reason) : "";
            return h("tr", null, h("td", null, h("code", { text: m })), h("td", { class: "num", text: fmtNum(y.score) }),
              h("td", null, pill(y.error != null ? "error" : y.pass ? "pass" : "fail", y.error != null ? "error" : y.pass ? "pass" : "fail")), h("td", { class: "text", text: note }));
          })))]);
    });
    return h("tr", { class: "detail" }, h("td", { colspan: cols.length }, h("h3", { text: "input" }), dl, h("div", { class: "cmp-sides" }, per)));
  }

  let timer = 0;
  const searchNow = () => { clearTimeout(timer); st.query = search.value; refilter(); };
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(searchNow, 120); });
  search.addEventListener("keydown", (e) => { if (e.key === "Enter") searchNow(); });
  filter.addEventListener("change", () => { st.mode = filter.value; refilter(); });
  size.addEventListener("change", () => { st.size = Number(size.value); st.page = 0; draw(); });
  first.addEventListener("click", () => { st.page = 0; draw(); });
  prev.addEventListener("click", () => { st.page = Math.max(0, st.page - 1); draw(); });
  next.addEventListener("click", () => { st.page = Math.min(pages() - 1, st.page + 1); draw(); });
  last.addEventListener("click", () => { st.page = pages() - 1; draw(); });
  draw();

  const root = h("div", { class: "panel cases-view" + (grid ? " grid" : ""), "data-cases": v.node },
    h("div", { class: "toolbar" }, search, filter, shown),
    h("div", { class: "scroll" }, h("table", { class: "cases" }, h("thead", null, h("tr", null, heads)), tbody)),
    h("div", { class: "pager" }, first, prev, info, next, last, size));
  return {
    root,
    byKey: (key) => (keyAt.has(key) ? rows[keyAt.get(key)] : null),
    // Opens case `key`: every filter off, its page shown, its row open.
    focus(key) {
      if (!keyAt.has(key)) return false;
      const i = keyAt.get(key);
      search.value = "";
      st.query = "";
      st.mode = filter.value = "all";
      refilter();
      st.page = Math.floor(idx.indexOf(i) / st.size);
      open.add(i);
      draw();
      const tr = tbody.querySelector("tr.cmp-row.open[data-key=\"" + CSS.escape(key) + "\"]");
      if (tr) { tr.classList.add("focused"); tr.scrollIntoView({ block: "center" }); }
      return true;
    },
  };
}

// The first text field of a case's input (its question, most often).
function firstText(input) {
  for (const k of Object.keys(input || {})) if (typeof input[k] === "string" && input[k]) return input[k];
  return null;
}

function inputLine(input) {
  const keys = Object.keys(input || {});
  if (keys.length === 1 && typeof input[keys[0]] === "string") return cut(input[keys[0]], 400);
  return cut(keys.map((k) => k + ": " + (typeof input[k] === "string" ? input[k] : JSON.stringify(input[k]))).join(" · "), 400);
}

// A word-level diff of `a` (the baseline's output) and `b`: words only in
// `a` struck through, words only in `b` marked. The common ends are cut
// first; what is left is a longest common subsequence, or, past a bound,
// all of `a`'s replaced by all of `b`'s.
function diffBlock(a, b) {
  const box = h("div", { class: "diff" });
  if (a === b) return box;
  const A = a.split(/(\s+)/).filter((t) => t !== ""), B = b.split(/(\s+)/).filter((t) => t !== "");
  let p = 0;
  while (p < A.length && p < B.length && A[p] === B[p]) p++;
  let q = 0;
  while (q < A.length - p && q < B.length - p && A[A.length - 1 - q] === B[B.length - 1 - q]) q++;
  const a2 = A.slice(p, A.length - q), b2 = B.slice(p, B.length - q);
  const ops = [];
  if (p) ops.push(["same", A.slice(0, p).join("")]);
  const n = a2.length, m = b2.length;
  if (n * m > 250000) {
    ops.push(["del", a2.join("")], ["ins", b2.join("")]);
  } else {
    const L = new Int32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
      L[i * (m + 1) + j] = a2[i] === b2[j] ? L[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(L[(i + 1) * (m + 1) + j], L[i * (m + 1) + j + 1]);
    let i = 0, j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a2[i] === b2[j]) { ops.push(["same", a2[i]]); i++; j++; }
      else if (i < n && (j === m || L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1])) { ops.push(["del", a2[i]]); i++; }
      else { ops.push(["ins", b2[j]]); j++; }
    }
  }
  if (q) ops.push(["same", A.slice(A.length - q).join("")]);
  // Neighbours of one kind merged: fewer elements, the same text.
  const merged = [];
  for (const [t, text] of ops) {
    if (merged.length && merged[merged.length - 1][0] === t) merged[merged.length - 1][1] += text;
    else merged.push([t, text]);
  }
  for (const [t, text] of merged) add(box, t === "same" ? text : h(t === "del" ? "del" : "ins", { class: "diff-" + t, text }));
  return box;
}
