// The `train` view of the run report: the job, its loss curve and its events, or the export.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
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
  artifactBlocks(panel, d.artifacts);
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
