//! `flow plan` formats: text is covered with the cache tests; here DOT must
//! be accepted by Graphviz and Mermaid must be flowchart syntax.

use crate::common::{node, Project};

#[test]
fn dot_is_accepted_by_graphviz() {
    let p = Project::demo();
    let r = p.flow(&["plan", "specs/demo.yaml", "--format", "dot"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("digraph \"demo\" {"), "{}", r.stdout);
    let dot = match std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the Graphviz check: `dot` is not installed ({e}); .ci/run installs it");
            return;
        }
        Err(e) => panic!("`dot` is required in CI: {e}"),
    };
    use std::io::Write;
    let mut child = dot;
    child.stdin.take().unwrap().write_all(r.stdout.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "dot rejected the plan:\n{}\n{}", String::from_utf8_lossy(&out.stderr), r.stdout);
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("answers") && svg.contains("scores") && svg.contains("data/answers.jsonl"));
}

#[test]
fn mermaid_is_flowchart_syntax() {
    let p = Project::demo();
    let r = p.flow(&["plan", "specs/demo.yaml", "--format", "mermaid"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next(), Some("flowchart LR"));
    let node = regex_lite(r#"^  [A-Za-z0-9]+(\["[^"]*"\]|\[/"[^"]*"/\])(:::[a-z]+)?$"#);
    let edge = regex_lite(r"^  [A-Za-z0-9]+ --> [A-Za-z0-9]+$");
    let class = regex_lite(r"^  classDef [a-z]+ fill:#[0-9a-f]{6}$");
    let mut edges = 0;
    for l in lines {
        assert!(node(l) || edge(l) || class(l), "not flowchart syntax: {l:?}\n{}", r.stdout);
        edges += edge(l) as usize;
    }
    assert_eq!(edges, 2, "file → answers and answers → scores");
}

fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
    let re = regex::Regex::new(pattern).unwrap();
    move |s| re.is_match(s)
}

#[test]
fn json_plan_has_statuses_and_keys() {
    let p = Project::demo();
    p.run_ok(&["specs/demo.yaml"]);
    let r = p.flow(&["plan", "specs/demo.yaml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["nodes"][0]["name"], "answers");
    assert_eq!(v["nodes"][0]["status"], "cached");
    assert_eq!(v["nodes"][1]["status"], "cached");
    assert_eq!(v["nodes"][1]["inputs"][0], "answers");
    assert_eq!(v["nodes"][0]["key"].as_str().unwrap().len(), 64);
}

/// A `sim` backend answering each case's question, then a score.
const CALLS_SPEC: &str = "flow: 1
name: t
backends:
  bot: {provider: sim}
nodes:
  cases: {kind: load, path: data/cases.jsonl}
  answers:
    kind: run
    input: cases
    backend: bot
    prompt: \"{{question}}\"
  scores:
    kind: evaluate
    input: answers
    metrics:
      - type: exact_match
        expected: \"{{expected}}\"
";

/// JSONL cases `c{from}` .. `c{to - 1}`.
fn cases(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"what is {i}+1?\", \"expected\": \"{}\"}}\n", i + 1))
        .collect()
}

/// The plan's line for `node`.
fn plan_line<'a>(plan: &'a str, node: &str) -> &'a str {
    plan.lines().find(|l| l.starts_with(&format!("{node} "))).unwrap_or_else(|| panic!("no line for {node}:\n{plan}"))
}

#[test]
fn plan_counts_the_calls_a_run_will_make() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases(0, 5));
    p.write("specs/t.yaml", CALLS_SPEC);

    let plan = p.flow(&["plan", "specs/t.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let text = &plan.stdout;
    assert!(text.lines().next().unwrap().ends_with("; 5 backend calls"), "{text}");
    let header: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(header, ["NODE", "KIND", "INPUTS", "CALLS", "STATUS"], "{text}");
    assert!(plan_line(text, "answers").contains("  5  "), "{text}");
    assert!(plan_line(text, "cases").contains("  -  "), "nodes that call nothing show no calls:\n{text}");
    assert!(!p.path("specs/.flow").exists(), "plan created .flow");
    let mermaid = p.flow(&["plan", "specs/t.yaml", "--format", "mermaid"]).stdout;
    assert!(mermaid.contains("answers<br/>run<br/>unknown<br/>5 calls\"]"), "{mermaid}");
    let dot = p.flow(&["plan", "specs/t.yaml", "--format", "dot"]).stdout;
    assert!(dot.contains("label=\"answers\\nrun\\nunknown\\n5 calls\""), "{dot}");

    let run = p.run_ok(&["specs/t.yaml"]);
    assert_eq!(node(&run, "answers")["calls"]["requests"], 5);

    // Two more cases: the plan reads the file, finds five answers in the
    // call memo, and the run makes exactly the other two calls.
    p.write("specs/data/cases.jsonl", &cases(0, 7));
    let plan = p.flow(&["plan", "specs/t.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let text = &plan.stdout;
    assert!(plan_line(text, "answers").contains("  2 (5 memoized)  "), "{text}");
    assert!(text.lines().next().unwrap().ends_with("; 2 backend calls (5 memoized)"), "{text}");
    let json = p.flow(&["plan", "specs/t.yaml", "--format", "json"]).stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let calls = &v["nodes"][1]["calls"];
    assert_eq!(v["nodes"][1]["name"], "answers");
    assert_eq!((&calls["expected"], &calls["memo_hits"], &calls["per_record"]), (&2.into(), &5.into(), &1.into()));
    assert_eq!(v["nodes"][0]["calls"], serde_json::Value::Null, "{json}");

    let run = p.run_ok(&["specs/t.yaml"]);
    let answers = node(&run, "answers");
    assert_eq!((&answers["calls"]["requests"], &answers["calls"]["memo_hits"]), (&2.into(), &5.into()), "{run}");

    // All cached: nothing to call.
    let plan = p.flow(&["plan", "specs/t.yaml"]).stdout;
    assert!(plan_line(&plan, "answers").contains("  0  "), "{plan}");
}

#[test]
fn plan_counts_samples_and_skips_records_that_cannot_be_sent() {
    let p = Project::empty();
    // One case has no question: it gets an error, not a call.
    p.write("specs/data/cases.jsonl", &format!("{}{{\"id\": \"c9\", \"expected\": \"x\"}}\n", cases(0, 4)));
    let spec = CALLS_SPEC.replace("    prompt:", "    repeat: 3\n    max_errors: 3\n    prompt:");
    p.write("specs/t.yaml", &spec);
    let plan = p.flow(&["plan", "specs/t.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(plan_line(&plan.stdout, "answers").contains("  12  "), "{}", plan.stdout);
    let run = p.run_ok(&["specs/t.yaml"]);
    assert_eq!(node(&run, "answers")["calls"]["requests"], 12);
    // A changed prompt misses the memo for every case; `--no-cache` reads
    // no memoized answer at all.
    p.write("specs/t.yaml", &spec.replace("\"{{question}}\"", "\"Q: {{question}}\""));
    let plan = p.flow(&["plan", "specs/t.yaml"]).stdout;
    assert!(plan_line(&plan, "answers").contains("  12  "), "{plan}");
    p.write("specs/t.yaml", &spec);
    let plan = p.flow(&["plan", "specs/t.yaml"]).stdout;
    assert!(plan_line(&plan, "answers").contains("  0  "), "{plan}");
    let plan = p.flow(&["plan", "specs/t.yaml", "--no-cache"]).stdout;
    assert!(plan_line(&plan, "answers").contains("  12  "), "{plan}");
}
