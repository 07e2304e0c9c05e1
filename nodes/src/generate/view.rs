//! `generate` in the run report: what it made and dropped (its `meta`), its
//! summary, and the cases it made (capped like any node's records).

use serde_json::json;

use crate::backend::Answer;
use crate::view::{cut, View, ViewCx, ViewData, ViewError};
use flow_engine::node::SUMMARY_MD;

pub const VIEW: View = View { name: "generate", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let summary = cx.node.artifacts.get(SUMMARY_MD).and_then(|h| cx.store.read_object(h).ok());
    let (records, rows) = cx.records()?;
    Ok(ViewData {
        data: json!({
            "meta": cx.meta(),
            "summary_md": summary.map(|b| cut(&String::from_utf8_lossy(&b))),
            "records": records,
        }),
        rows,
        raw: Vec::new(),
    })
}

impl crate::Face for super::Generate {
    const VIEW: Option<&'static View> = Some(&VIEW);
    const SIM_ANSWERS: &'static [Answer] = &[super::sim::SIM_ANSWER];
}
