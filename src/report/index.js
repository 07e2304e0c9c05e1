// The index of a workspace's runs. Reads the JSON block `flow-data` and
// builds the page with DOM calls: every datum reaches the page as text.
// Newest first; a spec filter; pick two runs of a spec to compare them
// (the command that does it, and a link when `flow view --serve` serves it).
(function () {
  "use strict";
  //@include dom

  //@include live

  // Draws the index from `DATA`, over what was there: served, it draws
  // again from the server's data when a run starts or ends.
  function boot(DATA, T0) {
    for (const id of ["top", "views", "foot"]) document.getElementById(id).replaceChildren();
    const runs = DATA.runs || [];
    const picked = [];
    const specs = [...new Set(runs.map((r) => r.spec))].sort();

    function headline(e) {
      const parts = [];
      if (e.pass_rate != null) parts.push(fmtPct(e.pass_rate) + " pass" + (e.passed != null && e.records != null ? " (" + fmtInt(e.passed) + "/" + fmtInt(e.records) + ")" : ""));
      if (e.score != null) parts.push("score " + fmtNum(e.score));
      const ms = Object.keys(e.metrics || {});
      const metrics = ms.map((m) => m + " " + fmtNum(e.metrics[m].mean)).join(" · ");
      return h("div", { class: "headline" }, h("code", { text: e.node }), " " + parts.join(", "), ms.length > 1 ? h("div", { class: "muted", text: metrics }) : null);
    }

    function took(r) {
      const ms = r.finished ? Date.parse(r.finished) - Date.parse(r.started) : NaN;
      return ms > 0 ? fmtMs(ms) : dash;
    }

    const specFilter = h("select", { class: "ix-spec", "aria-label": "runs of one spec" },
      h("option", { value: "", text: "every spec (" + fmtInt(runs.length) + " runs)" }),
      specs.map((s) => h("option", { value: s, text: s + " (" + fmtInt(runs.filter((r) => r.spec === s).length) + ")" })));
    const compareBox = h("div", { class: "panel ix-compare" });
    const tbody = h("tbody");

    function drawCompare() {
      compareBox.replaceChildren();
      if (picked.length < 2) {
        add(compareBox, h("span", { class: "muted", text: picked.length ? "pick one more run of " + picked[0].spec + " to compare" : "pick two runs of a spec to compare them" }));
        return;
      }
      // The older is the baseline.
      const [a, b] = picked.slice().sort((x, y) => (x.run_id < y.run_id ? -1 : 1));
      const cmd = "flow compare " + a.run_id + " " + b.run_id;
      add(compareBox, h("div", null, "compare ", h("code", { text: a.run_id }), " (baseline) with ", h("code", { text: b.run_id }), ": "),
        h("pre", { class: "md ix-command", text: cmd }),
        DATA.served ? h("a", { class: "ix-compare-link", href: "/compare/" + encodeURIComponent(a.run_id) + "/" + encodeURIComponent(b.run_id), text: "open the comparison" }) : null);
    }

    function draw() {
      const spec = specFilter.value;
      const rows = runs.filter((r) => !spec || r.spec === spec).map((r) => {
        const box = h("input", { type: "checkbox", class: "ix-pick", "aria-label": "pick " + r.run_id, checked: picked.includes(r) });
        box.addEventListener("change", () => {
          const at = picked.indexOf(r);
          if (at >= 0) picked.splice(at, 1);
          else {
            // Two runs of one spec: a pick of another spec starts over.
            if (picked.length && picked[0].spec !== r.spec) picked.length = 0;
            picked.push(r);
            if (picked.length > 2) picked.shift();
          }
          draw();
        });
        const c = r.calls;
        const id = r.report ? h("a", { href: r.report, class: "ix-report", text: r.run_id }) : h("code", { text: r.run_id });
        return h("tr", { class: "ix-run", "data-run": r.run_id },
          h("td", null, box), h("td", { class: "mono" }, id),
          h("td", null, h("code", { text: r.spec }), r.shard ? h("span", { class: "muted", text: " shard " + r.shard }) : null),
          h("td", null, pill(r.status), r.gates_tripped ? pill("gate", "gate tripped") : null),
          h("td", { class: "mono", text: r.started }), h("td", { class: "num", text: took(r) }),
          h("td", { class: "num", text: callsText(c) }), h("td", { class: "num", text: c ? fmtCost(c.cost_usd, c.requests) : dash }),
          h("td", { class: "ix-figures" }, (r.evaluates || []).map(headline), r.error ? h("div", { class: "err-text", text: cut(r.error, 200) }) : null));
      });
      if (!rows.length) rows.push(h("tr", null, h("td", { colspan: 9, class: "empty", text: "no runs yet: flow run specs/<spec>.yaml" })));
      tbody.replaceChildren(...rows);
      drawCompare();
    }
    specFilter.addEventListener("change", () => { picked.length = 0; draw(); });

    fill(document.getElementById("top"), null, [
      h("h1", null, h("span", { class: "brand", text: "flow" }), h("span", { text: "runs" })),
      h("div", { class: "sub" }, "workspace ", h("code", { text: DATA.workspace }), " · " + fmtInt(DATA.total) + " runs" + (DATA.total > runs.length ? ", the newest " + fmtInt(runs.length) + " listed" : ""))]);
    add(document.getElementById("views"),
      h("div", { class: "toolbar" }, specFilter),
      compareBox,
      h("div", { class: "panel scroll" }, h("table", { class: "runs" },
        h("thead", null, h("tr", null, ["", "run", "spec", "status", "started", "took", "calls", "cost", "figures"].map((t, i) => h("th", { class: i >= 5 && i <= 7 ? "num" : null, text: t })))),
        tbody)));
    add(document.getElementById("foot"), "written by flow " + DATA.flow_version + (DATA.served ? " · served by flow view --serve: runs are followed as they go" : " · one self-contained file: it fetches nothing · each run's report is a file of its own"));
    draw();
    window.flowIndex = { data: DATA, bootMs: performance.now() - T0 };
  }

  const T0 = performance.now();
  boot(JSON.parse(document.getElementById("flow-data").textContent), T0);
  // Served by `flow view --serve` (live.js is inlined): the runs going now
  // are followed, and the list drawn again as they start and end.
  if (typeof startLive === "function") {
    // One fetch at a time; a change meanwhile fetches again after it.
    let pending = false, again = false;
    const refresh = () => {
      if (pending) {
        again = true;
        return;
      }
      pending = true;
      fetch("/index.json")
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
        .then((d) => boot(d, performance.now()))
        .catch((e) => liveProblem("the list of runs could not be loaded: " + e))
        .finally(() => {
          pending = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    };
    startLive({ run: null, onStart: refresh, onEnd: refresh, onReset: refresh });
  }
})();
