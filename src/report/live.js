  // ---- live: only in a page `flow view --serve` serves ----------------------
  //
  // Follows runs as they go, from the server's `/events`: Server-Sent Events
  // that carry each run's event log (`events.jsonl`, the `flow run --json`
  // events and the first records each node writes). A strip above the page
  // shows each run going: a row per node with its status, done/total, rate,
  // errors and cost, and the latest records as they are written. Every
  // datum reaches the page as text. A connection starts with `reset` and
  // the log of each run still going, so a reconnect draws the same strip.

  // Records kept in the strip, newest first.
  const LIVE_RECORDS = 20;
  // A run's latest notes kept (a backend's news: a batch and its state).
  const LIVE_NOTES = 5;

  let liveStrip = null;

  // Says on the strip what went wrong with the server.
  function liveProblem(text) {
    if (!liveStrip) return;
    let box = liveStrip.querySelector(".live-problem");
    if (!box) {
      box = h("div", { class: "error-box live-problem" });
      liveStrip.prepend(box);
    }
    box.textContent = text;
  }

  // `opts.run`: the one run to follow (a report), or null for every run (the
  // index); `opts.onStart(id)`, `opts.onEnd(id, event)`: a run started or
  // ended; `opts.onReset()`: the server (re)connected.
  function startLive(opts) {
    liveStrip = h("section", { id: "live", class: "live", "aria-live": "polite" });
    document.body.insertBefore(liveStrip, document.getElementById("tabs"));
    const runs = new Map();
    let timer = 0;
    const dirty = new Set();

    function runOf(id) {
      let r = runs.get(id);
      if (!r) {
        r = { id, spec: "", status: "running", nodes: new Map(), records: [], notes: [], el: h("div", { class: "panel live-run", "data-run": id }) };
        runs.set(id, r);
        liveStrip.prepend(r.el);
      }
      return r;
    }
    function nodeOf(r, name) {
      let n = r.nodes.get(name);
      if (!n) {
        n = { name, kind: "", status: "waiting", done: 0, total: null, rate: null, errors: 0, cost: null, backoff: null };
        r.nodes.set(name, n);
      }
      return n;
    }

    function on(id, e) {
      const r = runOf(id);
      const n = e.node != null && typeof e.node === "string" ? nodeOf(r, e.node) : null;
      switch (e.event) {
        case "run_started":
          r.spec = e.spec || "";
          break;
        case "node_started":
          n.kind = e.kind || "";
          n.status = e.cached ? "cached" : "running";
          if (e.total != null) n.total = e.total;
          break;
        case "progress":
          n.done = e.records;
          if (e.total != null) n.total = e.total;
          n.rate = e.rate;
          n.errors = e.errors || 0;
          n.cost = e.cost_usd;
          n.backoff = e.backing_off;
          break;
        case "total":
          n.total = e.total;
          break;
        case "node_finished": {
          const o = e.node || {};
          const m = nodeOf(r, String(o.name));
          m.kind = o.kind || m.kind;
          m.status = o.status;
          m.done = o.records_out;
          m.backoff = null;
          if (o.calls) {
            m.errors = o.calls.errors || 0;
            m.cost = o.calls.cost_usd;
          }
          if (o.wall_ms > 200 && o.status === "ran") m.rate = Math.round((o.records_out / o.wall_ms) * 100000) / 100;
          break;
        }
        case "records":
          for (const rec of e.records || []) r.records.unshift({ node: String(e.node), rec });
          r.records.length = Math.min(r.records.length, LIVE_RECORDS);
          break;
        case "run_finished":
          r.status = e.status;
          r.error = e.error;
          break;
        case "note":
          // A backend's news (a batch created, its state): the latest few.
          r.notes.push(String(e.text));
          if (r.notes.length > LIVE_NOTES) r.notes.shift();
          break;
      }
      dirty.add(r);
      if (!timer) timer = setTimeout(drawDirty, 50);
      if (e.event === "run_started" && opts.onStart) opts.onStart(id, e);
      if (e.event === "run_finished" && opts.onEnd) {
        drawDirty();
        opts.onEnd(id, e);
      }
    }

    function drawDirty() {
      clearTimeout(timer);
      timer = 0;
      for (const r of dirty) draw(r);
      dirty.clear();
    }

    function draw(r) {
      const link = opts.run ? h("code", { text: r.id }) : h("a", { href: "runs/" + encodeURIComponent(r.id) + "/report.html", class: "live-link", text: r.id });
      const rows = [...r.nodes.values()].map((n) => {
        const count = n.total != null ? fmtInt(n.done) + "/" + fmtInt(n.total) : fmtInt(n.done);
        const bar = h("progress", { max: n.total || 1, value: n.total ? Math.min(n.done, n.total) : n.status === "running" ? null : 1 });
        const wait = n.backoff ? "backing off (" + (n.backoff.status || "timeout") + ", retry in " + fmtMs(n.backoff.retry_in_ms) + ")" : "";
        return h("tr", { class: "live-node", "data-node": n.name, "data-status": n.status, "data-done": n.done, "data-total": n.total == null ? "" : n.total },
          h("td", null, h("code", { text: n.name })), h("td", { class: "muted", text: n.kind }), h("td", null, pill(n.status)),
          h("td", null, bar), h("td", { class: "num live-done", text: count }),
          h("td", { class: "num live-rate", text: n.rate != null ? fmtNum(n.rate, 1) + "/s" : dash }),
          h("td", { class: "num live-errors", text: fmtInt(n.errors) }),
          h("td", { class: "num live-cost", text: n.cost != null ? fmtCost(n.cost, 1) : dash }),
          h("td", { class: "text muted", text: wait }));
      });
      const recs = r.records.map(({ node, rec }) => {
        const out = rec.error != null ? "error: " + valueText(rec.error) : "output" in rec ? valueText(rec.output) : cut(JSON.stringify(rec), 300);
        const mark = typeof rec.pass === "boolean" ? pill(rec.pass ? "pass" : "fail") : rec.error != null ? pill("error") : null;
        return h("li", { class: "live-record", "data-node": node },
          h("code", { class: "live-record-node", text: node }), " ", h("code", { class: "live-record-id", text: valueText(rec.id) }), " ", mark, " ",
          h("span", { class: "live-record-text", text: cut(out, 300) }));
      });
      // `add`, not `replaceChildren`: it skips what is null.
      r.el.replaceChildren();
      add(r.el,
        h("div", { class: "live-head" }, h("strong", { text: r.status === "running" ? "running " : "run " }), link, r.spec ? " · " + r.spec + " " : " ", pill(r.status)),
        r.error ? h("div", { class: "err-text", text: r.error }) : null,
        r.notes.length ? h("ul", { class: "live-notes muted" }, r.notes.map((t) => h("li", { class: "live-note", text: t }))) : null,
        h("div", { class: "scroll" }, h("table", { class: "live-nodes" },
          h("thead", null, h("tr", null, ["node", "kind", "status", "", "records", "rate", "errors", "cost", ""].map((t, i) => h("th", { class: i >= 4 && i <= 7 ? "num" : null, text: t })))),
          h("tbody", null, rows))),
        recs.length ? h("details", { class: "live-records", open: true }, h("summary", { text: "latest records" }), h("ul", null, recs)) : null);
    }

    function connect() {
      const es = new EventSource("/events" + (opts.run ? "?run=" + encodeURIComponent(opts.run) : ""));
      es.addEventListener("reset", () => {
        runs.clear();
        dirty.clear();
        for (const el of [...liveStrip.querySelectorAll(".live-run, .live-problem")]) el.remove();
        if (opts.onReset) opts.onReset();
      });
      es.addEventListener("message", (m) => {
        let msg;
        try {
          msg = JSON.parse(m.data);
        } catch (_) {
          return;
        }
        if (msg && typeof msg.run === "string" && msg.e && typeof msg.e.event === "string") on(msg.run, msg.e);
      });
      // The browser reconnects by itself; say so while it cannot.
      es.addEventListener("error", () => {
        if (es.readyState !== EventSource.OPEN) liveProblem("the connection to flow view --serve is lost; retrying");
      });
      es.addEventListener("open", () => {
        const box = liveStrip.querySelector(".live-problem");
        if (box) box.remove();
      });
      window.flowLive = { runs, source: es };
    }
    connect();
  }
