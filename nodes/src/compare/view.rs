//! `compare` in the run report: its `report.json`, with long id lists
//! shortened.

use serde_json::json;

use super::REPORT_JSON;
use crate::view::{shorten_ids, View, ViewCx, ViewData, ViewError};

pub const VIEW: View = View { name: "compare", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let mut report = cx.artifact(REPORT_JSON)?;
    for c in report["candidates"].as_array_mut().into_iter().flatten() {
        shorten_ids(c, &["only_in_baseline", "only_in_candidate"]);
        for m in c["metrics"].as_array_mut().into_iter().flatten() {
            shorten_ids(m, &["pass_to_fail", "fail_to_pass"]);
        }
    }
    Ok(ViewData::of(json!({"report": report})))
}

impl crate::Face for super::Compare {
    const VIEW: Option<&'static View> = Some(&VIEW);
}
