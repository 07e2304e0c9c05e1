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
    let text = report.to_string();
    assert!(text.contains("fail_to_pass"), "{text}");
    assert!(r.stdout.contains("| style | 16 | 0.000 |"), "the plain bot fails the house style: {}", r.stdout);
    assert!(!r.stdout.contains("| style | 16 | 0.000 | 0.000"), "the rules change nothing: {}", r.stdout);

    let again = p.run_ok(&["specs/self-improve.yaml"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));
}
