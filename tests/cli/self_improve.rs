//! The shipped `specs/self-improve.yaml` runs offline: golden examples from
//! logs train a (simulated) fine-tuned model, and rules synthesized from
//! feedback make the bot's answers pass the house style.

use crate::common::{node, repo, statuses, Project};

#[test]
fn self_improve_spec_closes_both_loops_offline() {
    let p = Project::empty();
    for f in [
        "specs/self-improve.yaml",
        "specs/data/logs.jsonl",
        "specs/data/feedback.jsonl",
        "specs/data/questions.jsonl",
        "specs/metrics/style.py",
    ] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    let r = p.flow(&["run", "specs/self-improve.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    assert!(node(&m, "golden")["records_out"].as_u64().unwrap() >= 10, "enough examples to fine-tune");
    assert!(r.stdout.contains("fine-tuned model `ft:gpt-4o-mini:support:"), "{}", r.stdout);
    let run_id = m["run_id"].as_str().unwrap();
    let hook = p.read(&format!("specs/.flow/runs/{run_id}/rules/generated_prompt_hook.py"));
    assert!(hook.contains("def intercept_prompt(") && hook.contains("def intercept_output("), "{hook}");
    let report: serde_json::Value =
        serde_json::from_str(&p.read(&format!("specs/.flow/runs/{run_id}/better/report.json"))).unwrap();
    let style = &report["candidates"][0]["metrics"][0];
    assert_eq!(style["metric"], "style");
    assert_eq!(style["baseline_mean"], 0.0, "the plain bot fails the house style");
    assert!(style["candidate_mean"].as_f64().unwrap() >= 0.5, "the rules make most answers pass: {style}");
    assert!(style["pass_to_fail"].as_array().unwrap().is_empty(), "{style}");
    assert!(style["fail_to_pass"].as_array().unwrap().len() >= 8, "{style}");

    let again = p.run_ok(&["specs/self-improve.yaml"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));

    // The embedding model is part of extract's key: another one re-runs it.
    let spec = p.read("specs/self-improve.yaml").replace("text-embedding-3-small", "text-embedding-3-large");
    p.write("specs/self-improve.yaml", &spec);
    let plan = p.flow(&["plan", "specs/self-improve.yaml"]);
    let golden = plan.stdout.lines().find(|l| l.starts_with("golden ")).unwrap_or_default();
    assert!(golden.contains("will run (backend changed: embedder.model)"), "{}", plan.stdout);
}
