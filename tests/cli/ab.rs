//! The shipped `specs/ab.yaml` runs offline: a generated test set, two model
//! variants that really differ, a comparison with flips, and a gate that
//! trips when the candidate is made worse.

use crate::common::{node, repo, statuses, Project};

fn ab_project() -> Project {
    let p = Project::empty();
    for f in ["specs/ab.yaml", "specs/data/seeds.jsonl"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    p
}

#[test]
fn ab_spec_compares_two_variants_and_gates() {
    let p = ab_project();
    let r = p.flow(&["run", "specs/ab.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "cases")["records_out"], 60);
    assert_eq!(node(&m, "cases")["meta"]["cases"], 60);
    let report: serde_json::Value =
        serde_json::from_str(&p.read(&format!("specs/.flow/runs/{}/ab/report.json", m["run_id"].as_str().unwrap())))
            .unwrap();
    let text = report.to_string();
    assert!(text.contains("fail_to_pass"), "{text}");
    assert!(r.stdout.contains("gates: none tripped"), "{}", r.stdout);

    let again = p.run_ok(&["specs/ab.yaml"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));

    // A worse candidate: only its answers, its scores and the comparison
    // run again, and the gate trips.
    let worse = p.flow(&["run", "specs/ab.yaml", "--set", "candidate_error_rate=0.3"]);
    assert_eq!(worse.code, 1, "{}", worse.stderr);
    assert!(worse.stderr.contains("a gate tripped"), "{}", worse.stderr);
    assert!(worse.stderr.contains("exact_match dropped"), "{}", worse.stderr);
    let m = p.latest_run("specs/.flow");
    for (n, s) in [("cases", "cached"), ("baseline_answers", "cached"), ("candidate_answers", "ran"), ("ab", "ran")] {
        assert_eq!(node(&m, n)["status"], s, "{n}");
    }
    assert_eq!(m["status"], "failed");
}
