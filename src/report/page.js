// The flow run report. Reads the JSON block `flow-data` and builds the page
// with DOM calls. Every piece of data reaches the page through text nodes,
// `textContent` or attribute values: never as markup. Views are rendered
// when their tab is first shown; a table renders only its visible page.
(function () {
  "use strict";

  // The tab named in the URL (`#golden`); a malformed one (`#%`) names none.
  function hashTab() {
    try {
      return decodeURIComponent(location.hash.slice(1));
    } catch (_) {
      return "";
    }
  }

  //@include dom

  //@include live

  // Draws the whole page from `DATA`, over what was there: a served page
  // draws again with its run's final data when the run ends.
  function boot(DATA, T0) {
    for (const id of ["top", "tabs", "views", "foot"]) document.getElementById(id).replaceChildren();

    // ---- header -------------------------------------------------------------

    const run = DATA.run;
    const byName = new Map(DATA.nodes.map((n) => [n.name, n]));
    const viewByNode = new Map(DATA.views.map((v) => [v.node, v]));

    // The head of a comparison's page: the node and the two runs.
    function renderComparisonHeader() {
      const cmp = DATA.comparison;
      const runLink = (r) => (r.report ? h("a", { href: r.report, class: "cmp-run", text: r.run_id }) : h("code", { class: "cmp-run", text: r.run_id }));
      fill(document.getElementById("top"), null, [
        h("h1", null, h("span", { class: "brand", text: "flow" }), h("span", { text: "compare " + cmp.node }), run.spec ? h("span", { class: "muted", text: run.spec }) : null),
        h("div", { class: "sub" }, "baseline ", runLink(cmp.baseline), " (started " + (cmp.baseline.started || dash) + ") · candidate ", runLink(cmp.candidate),
          " (started " + (cmp.candidate.started || dash) + ")")]);
    }

    function renderHeader() {
      if (DATA.comparison) return renderComparisonHeader();
      const top = document.getElementById("top");
      const count = (st) => DATA.nodes.filter((n) => n.status === st).length;
      const c = run.calls;
      // Times have whole seconds: a run shorter than one shows no duration.
      const took = run.finished ? Date.parse(run.finished) - Date.parse(run.started) : NaN;
      fill(top, null, [
        h("h1", null, h("span", { class: "brand", text: "flow" }), h("span", { text: run.spec }), pill(run.status)),
        h("div", { class: "sub" }, "run ", h("code", { text: run.run_id }), " · ", h("code", { text: run.spec_path }),
          " · started " + run.started + (took > 0 ? " · took " + fmtMs(took) : "")),
        h("div", { class: "totals" },
          card("nodes", String(DATA.nodes.length)),
          card("ran", String(count("ran"))),
          card("cached", String(count("cached"))),
          count("failed") ? card("failed", String(count("failed"))) : null,
          count("cancelled") ? card("cancelled", String(count("cancelled"))) : null,
          c ? card("calls", callsText(c), "small") : null,
          c ? card("tokens in / out", fmtInt(c.prompt_tokens) + " / " + fmtInt(c.completion_tokens), "small") : null,
          c ? card("cost", fmtCost(c.cost_usd, c.requests)) : null),
        run.error ? h("div", { class: "error-box", text: run.error }) : null,
        Object.keys(run.params || {}).length ? paramsBlock(run.params) : null]);
    }

    function paramsBlock(params) {
      const rows = Object.keys(params).map((k) => h("tr", null, h("td", null, h("code", { text: k })), h("td", { class: "text", text: valueText(params[k]) })));
      return h("details", { class: "params" }, h("summary", { text: "params (" + rows.length + ")" }),
        h("table", null, h("tbody", null, rows)));
    }

    // ---- views --------------------------------------------------------------

    // The renderer of each view by name (`v.view`): the generic one and each
    // kind's, every one in its own function scope, inlined here.
    const VIEWS = {};
    //@include views

    // ---- tabs ---------------------------------------------------------------

    // Tab ids: `pipeline`, and `node:<name>` for a node's view.
    const tabId = (node) => "node:" + node;
    // A comparison's page (`flow compare A B`) has its view only.
    const tabs = DATA.comparison ? [] : [{ id: "pipeline", label: "Pipeline", render: renderPipeline }];
    for (const v of DATA.views) {
      const render = VIEWS[v.view];
      if (render) tabs.push({ id: tabId(v.node), label: v.node, kind: v.kind, render: (panel) => render(panel, v) });
    }
    const state = new Map();

    function renderTabs() {
      const nav = document.getElementById("tabs");
      const main = document.getElementById("views");
      for (const t of tabs) {
        const button = h("button", { role: "tab", "data-tab": t.id, "aria-selected": "false", onclick: () => show(t.id) },
          t.label, t.kind ? h("span", { class: "kind", text: t.kind }) : null);
        const panel = h("section", { class: "view", role: "tabpanel", "data-view": t.id, hidden: true });
        add(nav, button);
        add(main, panel);
        state.set(t.id, { tab: t, button, panel, rendered: false });
      }
    }

    // Shows a tab: `pipeline`, a tab id, or a node's name.
    function show(id) {
      const target = state.has(id) ? id : state.has(tabId(id)) ? tabId(id) : tabs[0].id;
      for (const [key, st] of state) {
        const on = key === target;
        st.button.setAttribute("aria-selected", on ? "true" : "false");
        st.panel.hidden = !on;
        if (on && !st.rendered) {
          st.rendered = true;
          try {
            st.tab.render(st.panel);
          } catch (e) {
            add(st.panel, h("div", { class: "error-box", text: "this view failed to render: " + e }));
            throw e;
          }
        }
      }
      if (hashTab() !== target) {
        try {
          history.replaceState(null, "", "#" + encodeURIComponent(target));
        } catch (e) {
          // Some browsers refuse history on file:// pages; the tab still shows.
        }
      }
      return state.get(target);
    }

    // ---- pipeline -----------------------------------------------------------

    function renderPipeline(panel) {
      add(panel, h("h2", { text: "Pipeline" }),
        h("div", { class: "sub", text: DATA.graph ? "Each node with its status, time, records and calls; a node with a view opens it." : "Nodes in the order they ran (this report was written after the run, without its graph)." }),
        h("div", { class: "panel graph" }, graph()),
        h("div", { class: "panel scroll" }, nodeTable()));
    }

    function graph() {
      const W = 196, H = 92, GX = 44, GY = 20, PAD = 14;
      const nodes = DATA.nodes;
      if (!nodes.length) return h("div", { class: "empty", text: "no node ran" });
      const depth = new Map();
      for (const n of nodes) {
        let d = 0;
        for (const i of n.inputs || []) if (depth.has(i)) d = Math.max(d, depth.get(i) + 1);
        depth.set(n.name, d);
      }
      const columns = [];
      for (const n of nodes) (columns[depth.get(n.name)] = columns[depth.get(n.name)] || []).push(n);
      // Order each column by where its inputs sit (fewer crossings).
      const row = new Map();
      columns.forEach((col, ci) => {
        if (ci > 0) {
          const mean = (n) => {
            const ys = (n.inputs || []).filter((i) => row.has(i)).map((i) => row.get(i));
            return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
          };
          col.sort((a, b) => mean(a) - mean(b));
        }
        col.forEach((n, k) => row.set(n.name, k));
      });
      const tallest = Math.max(...columns.map((c) => c.length));
      const pos = new Map();
      columns.forEach((col, ci) => {
        const offset = ((tallest - col.length) * (H + GY)) / 2;
        col.forEach((n, k) => pos.set(n.name, { x: PAD + ci * (W + GX), y: PAD + offset + k * (H + GY) }));
      });
      const width = PAD * 2 + columns.length * W + (columns.length - 1) * GX;
      const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
      const svg = s("svg", { width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "the pipeline graph" });
      add(svg, s("defs", null, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));
      for (const n of nodes) {
        const to = pos.get(n.name);
        for (const i of n.inputs || []) {
          const from = pos.get(i);
          if (!from) continue;
          const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x - 2, y2 = to.y + H / 2, dx = Math.max(24, (x2 - x1) / 2);
          const side = (n.side_inputs || []).includes(i);
          add(svg, s("path", { class: "edge" + (side ? " side" : ""), d: `M ${x1} ${y1} C ${x1 + dx} ${y1}, ${x2 - dx} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)" }));
        }
      }
      for (const n of nodes) {
        const p = pos.get(n.name);
        const linked = state.has(tabId(n.name));
        const c = n.calls;
        const statusText = n.gate_failed ? n.status + " · gate tripped" : n.status;
        const lines = [
          [n.kind + " · " + statusText, "muted"],
          [fmtInt(n.records_in) + " → " + fmtInt(n.records_out) + " records · " + fmtMs(n.wall_ms), ""],
          [c ? callsText(c) + " calls · " + fmtInt(tokens(c)) + " tok · " + fmtCost(c.cost_usd, c.requests) : n.error ? "error: " + n.error : "", c ? "" : "muted"],
        ];
        const g = s("g", { class: "node st-" + n.status + (n.gate_failed ? " gate" : "") + (linked ? " linked" : ""), transform: `translate(${p.x},${p.y})`, "data-node": n.name },
          s("title", { text: n.name + (n.error ? "\n" + n.error : "") + (n.gate_failed ? "\n" + n.gate_failed : "") }),
          s("rect", { class: "box", width: W, height: H, rx: 8 }),
          s("rect", { class: "band", width: 5, height: H - 16, x: 0, y: 8, rx: 2 }),
          s("text", { class: "name", x: 14, y: 22, text: cut(n.name, 23) }),
          lines.map(([t, cls], k) => s("text", { class: cls, x: 14, y: 42 + k * 17, text: cut(t, 28) })));
        if (linked) g.addEventListener("click", () => show(n.name));
        add(svg, g);
      }
      return svg;
    }

    function nodeTable() {
      const head = ["node", "kind", "status", "in", "out", "time", "calls", "tokens in / out", "cost", "note"];
      const rows = DATA.nodes.map((n) => {
        const c = n.calls;
        const note = [n.error, n.gate_failed && "gate: " + n.gate_failed].filter(Boolean).join("\n");
        const name = state.has(tabId(n.name))
          ? h("button", { class: "chip", onclick: () => show(n.name), text: n.name })
          : h("code", { text: n.name });
        return h("tr", null, h("td", null, name), h("td", { text: n.kind }), h("td", null, pill(n.gate_failed ? "gate" : n.status, n.gate_failed ? n.status + " (gate)" : n.status)),
          h("td", { class: "num", text: fmtInt(n.records_in) }), h("td", { class: "num", text: fmtInt(n.records_out) }),
          h("td", { class: "num", text: fmtMs(n.wall_ms) }), h("td", { class: "num", text: callsText(c) }),
          h("td", { class: "num", text: c ? fmtInt(c.prompt_tokens) + " / " + fmtInt(c.completion_tokens) : dash }),
          h("td", { class: "num", text: c ? fmtCost(c.cost_usd, c.requests) : dash }),
          h("td", { class: "text err-text", text: note }));
      });
      return h("table", null, h("thead", null, h("tr", null, head.map((t, i) => h("th", { class: i >= 3 && i <= 8 ? "num" : null, text: t })))), h("tbody", null, rows));
    }

    // ---- what views share ---------------------------------------------------

    // A view's title line; false (and the problem shown) when its data could
    // not be read.
    function viewHead(panel, v, what) {
      const n = byName.get(v.node);
      add(panel, h("h2", null, v.node + " ", h("span", { class: "muted", text: "(" + v.kind + ")" })),
        h("div", { class: "sub", text: n ? what + " · " + (n.status || "") + " · " + fmtInt(n.records_out) + " records · " + fmtMs(n.wall_ms) : what }));
      if (v.data && v.data.problem) {
        add(panel, h("div", { class: "error-box", text: v.data.problem }));
        return false;
      }
      return true;
    }

    // `opts.columns`: more columns before the output, each `{label, get(r), num}`
    // (`get` returns text); `opts.filterLabel`: what the failures filter says.
    function recordsTable(node, rows, metrics, opts) {
      const extra = (opts && opts.columns) || [];
      // Scored records (evaluate) have `pass`; others are filtered by `error`.
      const scored = rows.some((r) => typeof r.pass === "boolean");
      const bad = (r) => (scored ? r.pass !== true : r.error != null);
      const st = { mode: "all", query: "", page: 0, size: 50 };
      let hay = null;
      let idx = rows.map((_, i) => i);
      const open = new Set();
      const failures = rows.reduce((a, r) => a + (bad(r) ? 1 : 0), 0);
      const count = h("span", { class: "count" });
      const search = h("input", { type: "search", class: "rt-search", placeholder: "search ids, fields, output…", "aria-label": "search records" });
      const filter = h("select", { class: "rt-filter", "aria-label": "filter records" },
        h("option", { value: "all", text: "all records (" + fmtInt(rows.length) + ")" }),
        h("option", { value: "fail", text: (scored ? "failures (" : "with an error (") + fmtInt(failures) + ")" }),
        h("option", { value: "pass", text: (scored ? "passes (" : "without error (") + fmtInt(rows.length - failures) + ")" }),
        metrics.map((m) => h("option", { value: "metric:" + m, text: "failed " + m })));
      const size = h("select", { class: "rt-size", "aria-label": "records per page" }, [25, 50, 100, 250].map((n) => h("option", { value: n, selected: n === st.size, text: n + " per page" })));
      const first = h("button", { class: "rt-first", text: "«", title: "first page" });
      const prev = h("button", { class: "rt-prev", text: "‹ prev" });
      const next = h("button", { class: "rt-next", text: "next ›" });
      const last = h("button", { class: "rt-last", text: "»", title: "last page" });
      const info = h("span", { class: "info rt-info" });
      const tbody = h("tbody");
      const head = h("tr", null, h("th", { class: "num", text: "#" }), h("th", { text: "id" }), scored ? h("th", { text: "pass" }) : null,
        metrics.map((m) => h("th", { class: "num", text: m })),
        extra.map((c) => h("th", { class: c.num ? "num" : null, text: c.label })),
        h("th", { class: "out", text: scored || rows.some((r) => "output" in r) ? "output" : "record" }));
      const cols = 3 + (scored ? 1 : 0) + metrics.length + extra.length;

      function haystack(r) {
        const parts = [];
        (function walk(v) {
          if (v == null) return;
          if (typeof v === "object") for (const k in v) walk(v[k]);
          else parts.push(String(v));
        })(r);
        return parts.join("\n").toLowerCase();
      }
      function refilter() {
        const q = st.query.trim().toLowerCase();
        if (q && !hay) hay = rows.map(haystack);
        const metric = st.mode.startsWith("metric:") ? st.mode.slice(7) : null;
        const out = [];
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i];
          if (st.mode === "fail" && !bad(r)) continue;
          if (st.mode === "pass" && bad(r)) continue;
          if (metric) {
            const sc = r.scores && r.scores[metric];
            if (!sc || sc.pass !== false) continue;
          }
          if (q && !hay[i].includes(q)) continue;
          out.push(i);
        }
        idx = out;
        st.page = 0;
        draw();
      }
      function pages() {
        return Math.max(1, Math.ceil(idx.length / st.size));
      }
      function draw() {
        const from = st.page * st.size, to = Math.min(idx.length, from + st.size);
        const trs = [];
        for (let k = from; k < to; k++) {
          const i = idx[k];
          trs.push(recordRow(i));
          if (open.has(i)) trs.push(detailRow(i));
        }
        if (!trs.length) trs.push(h("tr", null, h("td", { class: "empty", colspan: cols, text: "no records match" })));
        tbody.replaceChildren(...trs);
        count.textContent = idx.length === rows.length ? fmtInt(rows.length) + " records" : fmtInt(idx.length) + " of " + fmtInt(rows.length) + " records match";
        info.textContent = idx.length ? "records " + fmtInt(from + 1) + "–" + fmtInt(to) + " of " + fmtInt(idx.length) + " · page " + fmtInt(st.page + 1) + " of " + fmtInt(pages()) : "";
        first.disabled = prev.disabled = st.page === 0;
        next.disabled = last.disabled = st.page >= pages() - 1;
      }
      function recordRow(i) {
        const r = rows[i];
        const tr = h("tr", { class: "row rt-row" + (open.has(i) ? " open" : ""), "data-index": i },
          h("td", { class: "num muted", text: i + 1 }),
          h("td", { class: "id rt-id", text: r.id == null ? "" : valueText(r.id) }),
          scored ? h("td", null, pill(r.pass === true ? "pass" : "fail", r.pass === true ? "pass" : "fail")) : null,
          metrics.map((m) => scoreCell(r.scores && r.scores[m])),
          extra.map((c) => h("td", { class: c.num ? "num" : "clip", title: c.title ? c.title(r) : null }, c.num ? c.get(r) : h("div", { text: c.get(r) }))),
          outputCell(r));
        tr.addEventListener("click", () => {
          if (open.has(i)) open.delete(i);
          else open.add(i);
          draw();
        });
        return tr;
      }
      function scoreCell(sc) {
        if (!sc) return h("td", { class: "score muted", text: dash });
        if (sc.error != null) return h("td", { class: "score err", title: valueText(sc.error), text: "error" });
        const tip = sc.reason != null ? valueText(sc.reason) : sc.value != null ? "value: " + valueText(sc.value) : null;
        return h("td", { class: "score " + (sc.pass ? "pass" : "fail"), title: tip, text: fmtNum(sc.score) });
      }
      function outputCell(r) {
        if (r.error != null && r.output == null) return h("td", { class: "clip" }, h("div", { class: "err-text", text: "error: " + valueText(r.error) }));
        let out = "output" in r ? r.output : null;
        if (!("output" in r)) {
          // No `output` field: the rest of the record, on one line.
          const rest = {};
          for (const k of Object.keys(r)) if (k !== "id") rest[k] = r[k];
          out = cut(JSON.stringify(rest), 400);
        }
        return h("td", { class: "clip" }, h("div", { text: out == null ? "" : valueText(out) }));
      }
      function detailRow(i) {
        const r = rows[i];
        const dl = h("dl", { class: "fields" });
        for (const k of Object.keys(r)) {
          if (k === "scores") continue;
          dl.append(h("dt", { text: k }), h("dd", { text: valueText(r[k]) }));
        }
        const sc = r.scores || {};
        const scoreRows = Object.keys(sc).map((m) => {
          const x = sc[m] || {};
          const note = x.error != null ? "error: " + valueText(x.error) : [x.reason != null ? valueText(x.reason) : null, x.value != null ? "value: " + valueText(x.value) : null].filter(Boolean).join(" · ");
          return h("tr", null, h("td", null, h("code", { text: m })), h("td", { class: "num", text: fmtNum(x.score) }),
            h("td", null, pill(x.error != null ? "error" : x.pass ? "pass" : "fail", x.error != null ? "error" : x.pass ? "pass" : "fail")),
            h("td", { class: "text", text: note }));
        });
        return h("tr", { class: "detail" }, h("td", { colspan: cols },
          scoreRows.length === 0 ? null : h("div", { class: "scroll" }, h("table", null, h("thead", null, h("tr", null, h("th", { text: "metric" }), h("th", { class: "num", text: "score" }), h("th", { text: "pass" }), h("th", { text: "reason" }))), h("tbody", null, scoreRows))),
          h("h3", { text: "fields" }), dl));
      }

      let timer = 0;
      search.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          st.query = search.value;
          refilter();
        }, 120);
      });
      search.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          clearTimeout(timer);
          st.query = search.value;
          refilter();
        }
      });
      filter.addEventListener("change", () => {
        st.mode = filter.value;
        refilter();
      });
      size.addEventListener("change", () => {
        st.size = Number(size.value);
        st.page = 0;
        draw();
      });
      first.addEventListener("click", () => { st.page = 0; draw(); });
      prev.addEventListener("click", () => { st.page = Math.max(0, st.page - 1); draw(); });
      next.addEventListener("click", () => { st.page = Math.min(pages() - 1, st.page + 1); draw(); });
      last.addEventListener("click", () => { st.page = pages() - 1; draw(); });
      draw();

      const root = h("div", { class: "panel records-view", "data-records": node },
        h("div", { class: "toolbar" }, search, filter, count),
        h("div", { class: "scroll" }, h("table", { class: "records" }, h("thead", null, head), tbody)),
        h("div", { class: "pager" }, first, prev, info, next, last, size));
      // Lets another view (a compare flip) show one record.
      root.focusRecord = (id) => {
        search.value = id;
        st.query = id;
        st.mode = "all";
        filter.value = "all";
        refilter();
        if (idx.length === 1) {
          open.add(idx[0]);
          draw();
        }
      };
      return root;
    }

    // A record's input fields as one line (`question: … · expected: …`),
    // without the fields named in `skip`.
    function inputText(r, skip) {
      const parts = [];
      for (const k of Object.keys(r)) {
        if (skip.includes(k) || r[k] == null) continue;
        parts.push(k + ": " + (typeof r[k] === "string" ? r[k] : JSON.stringify(r[k])));
      }
      return cut(parts.join(" · "), 400);
    }

    // Says that a view keeps only the first of a node's records, and why.
    function truncatedNote(panel, v, rows, rec) {
      if (!rec || !rec.truncated) return;
      const mib = (b) => fmtInt(b / 1048576) + " MiB";
      const why = rec.truncated === "bytes"
        ? mib(DATA.limits.record_bytes) + " of records per node, " + mib(DATA.limits.report_record_bytes) + " in all"
        : rec.shown < DATA.limits.records ? fmtInt(rec.shown) + " records for this view" : fmtInt(DATA.limits.records) + " records per node";
      add(panel, h("div", { class: "note" }, "This report keeps the first " + fmtInt(rows.length) + " of " + fmtInt(rec.total) +
        " records (at most " + why + "). All of them: ", h("code", { text: "flow show " + v.node + " --run " + run.run_id })));
    }

    // A node's text artifacts (a summary, a generated script), each folded
    // but the summary.
    function artifactBlocks(panel, artifacts) {
      for (const a of artifacts || []) {
        add(panel, h("details", { class: "panel artifact", open: a.name === "summary.md" },
          h("summary", null, h("code", { text: a.name })), h("pre", { class: "md", text: a.text })));
      }
    }

    function keyValues(obj, keys) {
      return h("div", { class: "panel" }, h("dl", { class: "fields" }, keys.map((k) => [h("dt", { text: k }), h("dd", { text: valueText(obj[k]) })])));
    }

    // ---- boot ---------------------------------------------------------------

    renderHeader();
    renderTabs();
    add(document.getElementById("foot"),
      "written by flow " + DATA.flow_version + " · one self-contained file: it fetches nothing · model output is shown as text · at most " +
        fmtInt(DATA.limits.records) + " records per node, strings cut at " + fmtInt(DATA.limits.string_chars) + " characters");
    show(hashTab() || tabs[0].id);
    window.flowReport = { data: DATA, show, bootMs: performance.now() - T0 };
  }

  const T0 = performance.now();
  boot(JSON.parse(document.getElementById("flow-data").textContent), T0);
  window.addEventListener("hashchange", () => window.flowReport.show(hashTab()));
  // Served by `flow view --serve` (live.js is inlined): a run that is still
  // going is followed, and drawn again from its final report when it ends.
  if (typeof startLive === "function" && window.flowReport.data.run.status === "running") {
    const id = window.flowReport.data.run.run_id;
    startLive({
      run: id,
      onEnd: () => fetch("/runs/" + encodeURIComponent(id) + "/data.json")
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
        .then((d) => boot(d, performance.now()))
        .catch((e) => liveProblem("the final report could not be loaded: " + e)),
    });
  }
})();
