  // ---- extract, synthesize, train ------------------------------------------
  // Inlined into page.js where it names this file, in its scope:
  // the same helpers, the same rule that data only ever becomes text.

  // Colours of the functions (groups) on the map, cycling.
  const PALETTE = 8;

  function renderExtract(panel, v) {
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

  function renderSynthesize(panel, v) {
    if (!viewHead(panel, v, "rules from feedback")) return;
    const rep = v.data.report || {}, rules = rep.rules || [], conflicts = rep.contradictions || [];
    const active = rules.filter((r) => r.active).length;
    add(panel, h("div", { class: "totals" },
      card("feedback pairs", fmtInt(rep.pairs)),
      card("rules", fmtInt(rules.length)),
      card("active", fmtInt(active)),
      card("enforced on outputs", fmtInt(rules.filter((r) => r.active && r.enforced).length)),
      card("contradictions", fmtInt(conflicts.length), conflicts.length ? "err-text" : ""),
      card("mean similarity", fmtNum(rep.mean_similarity, 2)),
      card("mean length ratio", fmtNum(rep.mean_length_ratio, 2))));
    if (rep.reword) {
      const r = rep.reword;
      add(panel, h("div", { class: "sub", text: "reworded by `" + valueText(r.backend) + "` (" + valueText(r.model) + "): " + fmtInt(r.reworded) + " of " + fmtInt(active) + " rules" +
        (r.unusable ? "; the answer was not usable (" + valueText(r.unusable) + "), so the induced texts stand" : "") }));
    }
    add(panel, h("h3", { text: "Rules" }));
    if (!rules.length) add(panel, h("div", { class: "empty", text: "no rule: no change was backed by enough pairs (min_support)" }));
    else {
      const most = Math.max(1, rep.pairs || 0, ...rules.map((r) => r.support || 0));
      const rows = rules.map((r) => {
        const bar = h("span", { class: "bar support" }, h("span"));
        bar.firstChild.style.width = Math.round(((r.support || 0) / most) * 100) + "%";
        const total = r.pairs_total || (r.pairs || []).length;
        const shown = (r.pairs || []).slice(0, 6);
        return h("tr", { class: "rule" + (r.active ? "" : " inactive"), "data-rule": r.id },
          h("td", null, h("code", { text: r.id })),
          h("td", { text: r.kind }),
          h("td", { class: "text", text: r.text }, r.reworded ? h("div", { class: "muted", text: "induced: " + r.induced_text }) : null),
          h("td", { class: "num support", text: fmtInt(r.support) }),
          h("td", null, bar),
          h("td", null, h("div", { class: "chips" }, shown.map((id) => h("span", { class: "chip", text: valueText(id) })),
            total > shown.length ? h("span", { class: "muted", text: "+" + fmtInt(total - shown.length) }) : null)),
          h("td", { class: "num", text: fmtInt(r.against_total || (r.against || []).length) }),
          h("td", null, ruleStatus(r)));
      });
      add(panel, h("div", { class: "panel scroll" }, h("table", { class: "rules" },
        h("thead", null, h("tr", null, ["rule", "kind", "instruction", "support", "", "backing pairs", "against", "status"].map((t, i) => h("th", { class: i === 3 || i === 6 ? "num" : null, text: t })))),
        h("tbody", null, rows))));
    }
    if (conflicts.length) {
      add(panel, h("h3", { text: "Contradictions" }), h("div", { class: "panel scroll" }, h("table", { class: "conflicts" },
        h("thead", null, h("tr", null, ["rules", "kept", "why"].map((t) => h("th", { text: t })))),
        h("tbody", null, conflicts.map((c) => h("tr", null,
          h("td", null, h("div", { class: "chips" }, (c.rules || []).map((id) => h("span", { class: "chip", text: valueText(id) })))),
          h("td", null, c.winner == null ? pill("tie", "none (a tie)") : h("code", { text: valueText(c.winner) })),
          h("td", { class: "text", text: valueText(c.reason) })))))));
    }
    if (rep.prompt_block) {
      add(panel, h("h3", { text: "Prompt block" }), h("div", { class: "sub", text: "What a `run` node with `rules:` (and the hook's intercept_prompt) appends to the prompt." }),
        h("div", { class: "panel" }, h("pre", { class: "md", text: valueText(rep.prompt_block) })));
    }
    const ops = rep.post_processing || [];
    if (ops.length) {
      add(panel, h("h3", { text: "Post-processing" }), h("div", { class: "sub", text: "Applied to every output, in this order." }),
        h("div", { class: "panel scroll" }, h("table", null,
          h("thead", null, h("tr", null, ["#", "step", "rule", "parameters"].map((t, i) => h("th", { class: i ? null : "num", text: t })))),
          h("tbody", null, ops.map((o, i) => {
            const params = {};
            for (const k of Object.keys(o)) if (k !== "op" && k !== "rule") params[k] = o[k];
            return h("tr", null, h("td", { class: "num muted", text: i + 1 }), h("td", null, h("code", { text: valueText(o.op) })),
              h("td", null, h("code", { text: valueText(o.rule) })), h("td", { class: "text mono", text: Object.keys(params).length ? JSON.stringify(params) : "" }));
          })))));
    }
    const hook = v.data.hook || {};
    if (hook.text != null) {
      add(panel, h("h3", null, "Hook script ", h("code", { text: valueText(hook.name) })),
        h("div", { class: "sub", text: "Carries the rules into a service that does not run flow (standard library only)." }),
        h("div", { class: "panel" }, h("pre", { class: "code hook", text: hook.text })));
    }
    if (rep.settings) add(panel, h("h3", { text: "Settings" }), keyValues(rep.settings, Object.keys(rep.settings)));
  }

  function ruleStatus(r) {
    if (r.active) return pill("active", r.enforced ? "active, enforced" : "active");
    const c = r.conflict;
    if (c && c.winner != null) return pill("inactive", "overridden by " + valueText(c.winner));
    if (c) return pill("tie", "not applied (tie)");
    return pill("inactive", "inactive");
  }

  function renderTrain(panel, v) {
    if (!viewHead(panel, v, "fine-tuning")) return;
    const d = v.data, meta = d.meta || {}, job = v.rows[0] || {};
    const status = job.provider_status || job.status || meta.status;
    const exported = job.export != null || meta.export != null;
    add(panel, h("div", { class: "totals" },
      h("div", { class: "card" }, h("div", { class: "k", text: exported ? "exported for" : "job status" }),
        h("div", { class: "v" }, exported ? valueText(job.export || meta.export) : pill(String(status || "unknown"), valueText(status || "unknown")))),
      card(exported ? "base model" : "fine-tuned model", valueText(exported ? job.model || meta.model : job.fine_tuned_model || meta.fine_tuned_model || dash), "small mono"),
      exported ? null : card("base model", valueText(job.model || meta.model || dash), "small mono"),
      card("examples", fmtInt(job.examples != null ? job.examples : meta.examples)),
      job.trained_tokens != null ? card("trained tokens", fmtInt(job.trained_tokens)) : null,
      meta.polls != null ? card("polls", fmtInt(meta.polls) + (meta.resumed ? " (resumed)" : ""), "small") : null));
    const ids = ["job_id", "training_file", "backend"].filter((k) => job[k] != null);
    if (ids.length) add(panel, keyValues(job, ids));

    const events = Array.isArray(job.events) ? job.events : [];
    const curve = lossPoints(events);
    if (curve.length) {
      add(panel, h("h3", { text: "Loss" }),
        h("div", { class: "sub", text: "From the job's metrics events: " + fmtInt(curve.length) + " steps" + (curve.some((p) => p.valid != null) ? "; validation loss dashed" : "") + "." }),
        h("div", { class: "panel graph" }, lossChart(curve)));
    }
    if (!exported) {
      add(panel, h("h3", { text: "Events (" + fmtInt(events.length) + ")" }));
      if (!events.length) add(panel, h("div", { class: "empty", text: "the provider listed no events" }));
      else {
        const shown = events.slice(-500);
        add(panel, h("div", { class: "panel scroll" },
          events.length > shown.length ? h("div", { class: "muted", text: "the last " + fmtInt(shown.length) + " shown" }) : null,
          h("table", { class: "events" },
            h("thead", null, h("tr", null, ["time", "level", "type", "message"].map((t) => h("th", { text: t })))),
            h("tbody", null, shown.map((e) => h("tr", { class: "event" },
              h("td", { class: "mono", text: eventTime(e.created_at) }),
              h("td", null, pill(e.level === "error" ? "fail" : e.level === "warn" ? "error" : "pass", valueText(e.level || "info"))),
              h("td", { class: "muted", text: e.type == null ? "" : valueText(e.type) }),
              h("td", { class: "text", text: valueText(e.message == null ? "" : e.message) })))))));
      }
    }
    for (const a of d.artifacts || []) {
      add(panel, h("details", { class: "panel artifact", open: a.name === "summary.md" },
        h("summary", null, h("code", { text: a.name })), h("pre", { class: "md", text: a.text })));
    }
  }

  // Seconds since the epoch as a UTC time; a provider's small counters
  // (the sim's) as they are.
  function eventTime(t) {
    if (typeof t !== "number") return t == null ? "" : valueText(t);
    return t > 1e9 ? new Date(t * 1000).toISOString().replace("T", " ").replace(".000Z", "Z") : String(t);
  }

  // `{step, loss, valid}` of each metrics event with a training loss, by step.
  function lossPoints(events) {
    const out = [];
    for (const e of events) {
      const m = e && e.data;
      if (!m || typeof m !== "object" || typeof m.train_loss !== "number" || !isFinite(m.train_loss)) continue;
      const step = typeof m.step === "number" ? m.step : out.length + 1;
      out.push({ step, loss: m.train_loss, valid: typeof m.valid_loss === "number" && isFinite(m.valid_loss) ? m.valid_loss : null });
    }
    return out.sort((a, b) => a.step - b.step);
  }

  function lossChart(curve) {
    const W = 640, H = 260, LEFT = 52, RIGHT = 16, TOP = 14, BOTTOM = 36;
    const steps = curve.map((p) => p.step), values = curve.flatMap((p) => (p.valid != null ? [p.loss, p.valid] : [p.loss]));
    const s0 = Math.min(...steps), s1 = Math.max(...steps), lo = Math.min(0, ...values), hi = Math.max(...values) || 1;
    const x = (st) => LEFT + (s1 > s0 ? (st - s0) / (s1 - s0) : 0.5) * (W - LEFT - RIGHT);
    const y = (l) => TOP + (1 - (l - lo) / (hi - lo || 1)) * (H - TOP - BOTTOM);
    const svg = s("svg", { class: "loss", width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "training loss by step" });
    for (const t of [lo, (lo + hi) / 2, hi]) {
      add(svg, s("line", { class: "grid", x1: LEFT, x2: W - RIGHT, y1: y(t), y2: y(t) }),
        s("text", { class: "muted", x: LEFT - 6, y: y(t) + 4, "text-anchor": "end", text: fmtNum(t, 2) }));
    }
    add(svg, s("text", { class: "muted", x: LEFT, y: H - BOTTOM + 16, "text-anchor": "start", text: "step " + s0 }),
      s("text", { class: "muted", x: W - RIGHT, y: H - BOTTOM + 16, "text-anchor": "end", text: "step " + s1 }),
      s("text", { class: "muted", x: (LEFT + W - RIGHT) / 2, y: H - 4, "text-anchor": "middle", text: "training loss by step" }));
    const line = (key, cls) => {
      const pts = curve.filter((p) => p[key] != null);
      if (pts.length > 1) add(svg, s("polyline", { class: cls, points: pts.map((p) => x(p.step).toFixed(1) + "," + y(p[key]).toFixed(1)).join(" ") }));
      return pts;
    };
    line("valid", "valid-line");
    const pts = line("loss", "loss-line");
    if (pts.length <= 200) {
      for (const p of pts) add(svg, s("circle", { class: "loss-pt", cx: x(p.step), cy: y(p.loss), r: 3.5 }, s("title", { text: "step " + p.step + ": loss " + fmtNum(p.loss, 4) })));
    }
    return svg;
  }
