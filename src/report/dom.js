// What the report's pages share (the run report and the index of runs):
// DOM helpers that only ever write data as text, and the formatting of
// numbers, times and costs. Inlined into each page's script, in its scope.

  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- DOM helpers: data is only ever text --------------------------------

  function h(tag, props, ...kids) {
    return fill(document.createElement(tag), props, kids);
  }
  function s(tag, props, ...kids) {
    return fill(document.createElementNS(SVG_NS, tag), props, kids);
  }
  // Appends children, skipping null and false (Element.append would write "null").
  const add = (e, ...kids) => fill(e, null, kids);
  function fill(e, props, kids) {
    if (props) {
      for (const k of Object.keys(props)) {
        const v = props[k];
        if (v == null || v === false) continue;
        if (k === "text") e.textContent = String(v);
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of kids.flat(Infinity)) {
      if (c == null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // ---- formatting ---------------------------------------------------------

  const dash = "–";
  const fmtInt = (n) => (n == null ? dash : Number(n).toLocaleString("en-US"));
  const fmtNum = (x, d = 3) => (x == null ? dash : Number.isInteger(x) ? String(x) : x.toFixed(d));
  const fmtPct = (x) => (x == null ? dash : (x * 100).toFixed(1) + "%");
  const fmtSigned = (x) => (x == null ? dash : (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(3));
  function fmtMs(ms) {
    if (ms == null) return dash;
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }
  function fmtCost(c, requests) {
    if (c == null) return requests ? "unknown" : "$0";
    if (c === 0) return "$0";
    return c < 0.01 ? "$" + c.toPrecision(2) : "$" + c.toFixed(2);
  }
  const tokens = (c) => (c ? (c.prompt_tokens || 0) + (c.completion_tokens || 0) : 0);
  function callsText(c) {
    if (!c) return dash;
    const extra = [];
    if (c.memo_hits) extra.push("+" + fmtInt(c.memo_hits) + " memo");
    if (c.retries) extra.push(fmtInt(c.retries) + " retries");
    if (c.errors) extra.push(fmtInt(c.errors) + " failed");
    return fmtInt(c.requests) + (extra.length ? " (" + extra.join(", ") + ")" : "");
  }
  function valueText(v) {
    if (v == null) return "null";
    return typeof v === "string" ? v : JSON.stringify(v, null, 2);
  }
  function cut(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }
  const pill = (status, label) => h("span", { class: "pill st-" + status, text: label || status });
  const card = (k, v, cls) => h("div", { class: "card" }, h("div", { class: "k", text: k }), h("div", { class: "v " + (cls || ""), text: v }));
