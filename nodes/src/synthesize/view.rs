//! `synthesize` in the run report: its `rules.json` without the per-pair
//! measurements (the rules with their support, the contradictions, the
//! prompt block, the post-processing), long pair lists shortened, and the
//! hook script.

use serde_json::json;

use super::hook::HOOK_FILE;
use super::RULES_JSON;
use crate::backend::Answer;
use crate::view::{cut_strings, shorten_ids, View, ViewCx, ViewData, ViewError};

pub const VIEW: View = View { name: "synthesize", data, script: include_str!("view.js") };

fn data(cx: &mut ViewCx<'_>) -> Result<ViewData, ViewError> {
    let mut report = cx.artifact(RULES_JSON)?;
    if let Some(fields) = report.as_object_mut() {
        fields.remove("analysis");
    }
    for rule in report["rules"].as_array_mut().into_iter().flatten() {
        shorten_ids(rule, &["pairs", "against"]);
    }
    cut_strings(&mut report);
    let hook = cx.text_artifact(HOOK_FILE);
    Ok(ViewData::of(json!({"report": report, "hook": {"name": HOOK_FILE, "text": hook}})))
}

impl crate::Face for super::Synthesize {
    const VIEW: Option<&'static View> = Some(&VIEW);
    const SIM_ANSWERS: &'static [Answer] = &[super::reword::SIM_ANSWER];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{show, test_store, MAX_IDS};
    use flow_engine::cache::{NodeOutcome, NodeStatus};

    #[test]
    fn rules_lose_their_measurements_and_long_pair_lists() {
        let (_dir, store) = test_store();
        let mut n = NodeOutcome::new("rules".into(), "synthesize".into(), NodeStatus::Cached, None);
        let pairs: Vec<String> = (0..MAX_IDS + 2).map(|i| format!("fb-{i}")).collect();
        let rules = json!({"pairs": 9, "rules": [{"id": "max_words", "support": MAX_IDS + 2, "pairs": pairs, "against": []}],
                           "contradictions": [], "analysis": [{"id": "fb-0"}]});
        n.artifacts.insert(RULES_JSON.into(), store.put_bytes(rules.to_string().as_bytes()).unwrap());
        n.artifacts
            .insert(HOOK_FILE.into(), store.put_bytes(b"def intercept_prompt(p, c):\n    return '<b>' + p\n").unwrap());
        let (v, _, _) =
            show(&VIEW, &mut ViewCx { store: &store, node: &n, config: None, plan: None, run: &[], budget: &mut 0 });
        assert_eq!(v["view"], "synthesize");
        let report = &v["data"]["report"];
        assert!(report.get("analysis").is_none(), "the per-pair measurements stay in rules.json");
        assert_eq!(report["rules"][0]["pairs"].as_array().unwrap().len(), MAX_IDS);
        assert_eq!(report["rules"][0]["pairs_total"], MAX_IDS + 2);
        assert_eq!(v["data"]["hook"]["name"], HOOK_FILE);
        assert!(v["data"]["hook"]["text"].as_str().unwrap().contains("return '<b>' + p"));
    }
}
