//! `extract` in the run report: its counts (`meta`) and the examples, and in
//! `raw` the map of the logs (`projection.json`: a point per log, at most
//! 20,000, and the density histogram; `null` for an output from before it
//! was written) as the view's `projection`.

use serde_json::{json, Value};

use super::map::PROJECTION_JSON;
use crate::view::{cut_strings, longest_string, View, ViewCx, ViewData, ViewError, MAX_STRING_CHARS};

pub const VIEW: View = View { name: "extract", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let projection = match cx.node.artifacts.get(PROJECTION_JSON) {
        Some(hash) => {
            let bytes = cx.store.read_object(hash)?;
            super::map::check(&bytes).map_err(|e| cx.unreadable(PROJECTION_JSON, e))?;
            match String::from_utf8(bytes) {
                // As it is, unless a string needs cutting.
                Ok(text) if longest_string(text.as_bytes()) <= MAX_STRING_CHARS => text,
                other => {
                    let bytes = other.map_or_else(|e| e.into_bytes(), String::into_bytes);
                    let mut map: Value =
                        serde_json::from_slice(&bytes).map_err(|e| cx.unreadable(PROJECTION_JSON, e))?;
                    cut_strings(&mut map);
                    map.to_string()
                }
            }
        }
        None => "null".to_string(),
    };
    let (records, rows) = cx.records()?;
    Ok(ViewData { data: json!({"meta": cx.meta(), "records": records}), rows, raw: vec![("projection", projection)] })
}

impl crate::Face for super::Extract {
    const VIEW: Option<&'static View> = Some(&VIEW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{show, test_store};
    use flow_engine::cache::{NodeOutcome, NodeStatus};

    #[test]
    fn the_map_goes_in_as_it_is_unless_a_string_needs_cutting() {
        let (_dir, store) = test_store();
        let mut n = NodeOutcome::new("golden".into(), "extract".into(), NodeStatus::Ran, None);
        n.output = Some(store.put_bytes(b"{\"id\":\"l1\",\"rank\":1}\n").unwrap());
        n.records_out = 1;
        let long = "x".repeat(MAX_STRING_CHARS + 1);
        let map = json!({"logs": 2, "points": [{"id": "l1", "x": 0.5, "y": 0, "picked": {"rank": 1}}, {"id": long, "x": 0, "y": 1, "picked": null}]});
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(map.to_string().as_bytes()).unwrap());
        let view = |n: &NodeOutcome| {
            show(
                &VIEW,
                &mut ViewCx {
                    store: &store,
                    node: n,
                    config: None,
                    plan: None,
                    run: &[],
                    budget: &mut usize::MAX.clone(),
                },
            )
        };
        let (v, rows, raw) = view(&n);
        assert_eq!(v["view"], "extract");
        assert_eq!(raw[0].0, "projection");
        let cut: Value = serde_json::from_str(&raw[0].1).unwrap();
        assert_eq!(cut["points"][0], map["points"][0]);
        assert!(cut["points"][1]["id"].as_str().unwrap().ends_with("[1 more characters not in the report]"));
        assert_eq!(rows, [r#"{"id":"l1","rank":1}"#]);
        // Without a long string, the file goes in as it is.
        let text = "{\"points\": [{\"id\": \"l\\u00e9\", \"x\": 0.5}]}";
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(text.as_bytes()).unwrap());
        assert_eq!(view(&n).2, [("projection", text.to_string())]);
        // A broken one is the view's problem; an output from before the map
        // has none, and the view says so.
        n.artifacts.insert(PROJECTION_JSON.into(), store.put_bytes(b"{\"points\": [").unwrap());
        let (v, _, _) = view(&n);
        assert!(v["data"]["problem"].as_str().unwrap().contains("projection.json of node `golden` is unreadable"));
        n.artifacts.clear();
        let (v, _, raw) = view(&n);
        assert_eq!((&raw[0].1[..], v["data"].get("problem")), ("null", None));
    }
}
