// The `synthesize` view of the run report: the rules with their support, the contradictions, the prompt block, the post-processing and the hook.
// Inlined into the report's script, in its scope (the helpers `h`, `s`,
// `add`, `card`, `pill`, `fmt*`, `viewHead`, `recordsTable`, `keyValues`):
// data only ever becomes text. `render(panel, v)` draws the view.

function render(panel, v) {
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
