//! `run` in the run report: its summary (backend, calls, latency).

use serde_json::json;

use crate::view::{View, ViewCx, ViewData, ViewError, SUMMARY_JSON};

pub const VIEW: View = View { name: "run", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    Ok(ViewData::of(json!({"summary": cx.artifact(SUMMARY_JSON)?})))
}

impl crate::Face for super::Run {
    const VIEW: Option<&'static View> = Some(&VIEW);
}
