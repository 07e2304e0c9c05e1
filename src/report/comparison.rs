//! The page of `flow compare A B`: the `compare` kind's report view (the
//! figures, the flips, the comparison case by case) of one node's outputs
//! in two stored runs, in the report's frame with no other tab. Written
//! into the candidate run's folder, `runs/<B>/compare-<A>-<node>.html`, so
//! it goes when that run is collected; `flow view --serve` serves it at
//! `/compare/<A>/<B>`. One self-contained file like a run's report.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use flow_engine::cache::{write_replaceable, Store};
use flow_nodes::view::MAX_REPORT_RECORD_BYTES;

use super::{data, page, REPORT_HTML};
use crate::compare::Compared;

/// The page's file name in run `b`'s folder.
pub fn file_name(c: &Compared) -> String {
    format!("compare-{}-{}.html", c.a, c.node.replace(['/', '\\'], "_"))
}

/// Writes the page of `c` and returns its path.
pub fn write(store: &Store, c: &Compared) -> anyhow::Result<PathBuf> {
    let html = render(store, c, "../", "");
    let path = store.run_dir(&c.b).join(file_name(c));
    write_replaceable(&path, html.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The page of `c`; `runs` is where the runs' folders are from the page
/// (`../` from a run folder, `/runs/` when served), `connect` as the
/// report's.
pub fn render(store: &Store, c: &Compared, runs: &str, connect: &str) -> String {
    let mut budget = MAX_REPORT_RECORD_BYTES;
    let view = flow_nodes::compare::view::of_sides(
        &c.comparison,
        &c.sides,
        &flow_nodes::compare::Settings::default().key,
        &mut budget,
    );
    let run = |id: &str| -> Value {
        let m = store.run_manifest(id).ok();
        let has_report = store.run_dir(id).join(REPORT_HTML).is_file();
        json!({
            "run_id": id,
            "started": m.as_ref().map(|m| m.started.clone()),
            "status": m.as_ref().map(|m| m.status),
            "spec": m.as_ref().map(|m| m.spec.clone()),
            "report": has_report.then(|| format!("{runs}{id}/{REPORT_HTML}")),
        })
    };
    let head = json!({
        "format": 1,
        "flow_version": env!("CARGO_PKG_VERSION"),
        "run": {
            "run_id": format!("{} → {}", c.a, c.b),
            "spec": c.spec,
            "status": "compared",
            "started": "",
        },
        "comparison": {"node": c.node, "baseline": run(&c.a), "candidate": run(&c.b)},
        "graph": false,
        "limits": data::limits(),
        "nodes": [],
    });
    let view_head = json!({"node": c.node, "kind": "compare", "view": "compare", "data": view.data});
    let data = data::ReportData::single(head, view_head, view.rows);
    let title = format!("compare {} · {} → {}", c.node, c.a, c.b);
    page::render_page(&title, &data.to_json(), &super::nonce(&c.b), connect)
}
