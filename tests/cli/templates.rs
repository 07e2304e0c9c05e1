//! Templates and matrices: the shipped `specs/templated.yaml` uses one
//! template twice and compares the two, offline; namespaced and matrix
//! names work in plans, runs, `flow show` and `--rerun`; templates nest, and
//! a template cycle is an error naming the chain. Rejected template uses
//! are snapshotted with the other invalid specs (tests/fixtures/invalid).

use crate::common::{node, repo, statuses, Project};

fn templated_project() -> Project {
    let p = Project::empty();
    for f in ["specs/templated.yaml", "specs/templates/eval.yaml", "specs/data/cases.jsonl"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    p
}

/// The NODE column of a text plan.
fn plan_nodes(plan: &str) -> Vec<String> {
    plan.lines().skip(3).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn shipped_spec_uses_one_template_twice_and_compares() {
    let p = templated_project();
    let plan = p.flow(&["plan", "specs/templated.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan_nodes(&plan.stdout),
        ["cases", "baseline.answers", "baseline.scores", "candidate.answers", "candidate.scores", "ab"],
        "{}",
        plan.stdout
    );
    let ab = plan.stdout.lines().find(|l| l.starts_with("ab ")).unwrap();
    assert!(ab.contains("baseline.scores, candidate.scores"), "{ab}");

    let r = p.flow(&["run", "specs/templated.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "baseline.scores")["records_out"], 24);
    assert_eq!(node(&m, "candidate.answers")["calls"]["requests"], 24);
    assert!(r.stdout.contains("gates: none tripped"), "{}", r.stdout);
    // The two instances really differ: each calls its own backend.
    let run_id = m["run_id"].as_str().unwrap();
    let report = p.read(&format!("specs/.flow/runs/{run_id}/ab/report.json"));
    assert!(report.contains("baseline.scores") && report.contains("candidate.scores"), "{report}");
    assert!(p.path(&format!("specs/.flow/runs/{run_id}/baseline.scores/summary.md")).is_file());
    let shown = p.flow(&["show", "candidate.scores", "--limit", "1"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let first: serde_json::Value = serde_json::from_str(shown.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["model"], "gpt-4.1-mini", "{first}");

    // Run again: everything is cached and no call is made.
    let again = p.run_ok(&["specs/templated.yaml"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));

    // --rerun takes a namespaced name.
    let forced = p.run_ok(&["specs/templated.yaml", "--rerun", "baseline.scores"]);
    assert_eq!(node(&forced, "baseline.scores")["status"], "ran");
    assert_eq!(node(&forced, "candidate.scores")["status"], "cached");

    // A node key does not depend on the namespace: renaming the instance
    // finds the same cache entries.
    let spec = p.read("specs/templated.yaml");
    p.write(
        "specs/templated.yaml",
        &spec.replace("  baseline:\n    uses:", "  base:\n    uses:").replace("[baseline.scores,", "[base.scores,"),
    );
    let renamed = p.run_ok(&["specs/templated.yaml"]);
    assert!(statuses(&renamed).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&renamed));
    assert_eq!(node(&renamed, "base.answers")["status"], "cached");

    // A different value in `with:` re-runs only that instance.
    let spec = p.read("specs/templated.yaml");
    p.write(
        "specs/templated.yaml",
        &spec.replace("      backend: candidate\n", "      backend: candidate\n      similarity_threshold: 0.9\n"),
    );
    let changed = p.run_ok(&["specs/templated.yaml"]);
    for (n, s) in [("base.scores", "cached"), ("candidate.answers", "cached"), ("candidate.scores", "ran")] {
        assert_eq!(node(&changed, n)["status"], s, "{n}");
    }
}

#[test]
fn plan_diagrams_stay_valid_with_namespaced_names() {
    let p = templated_project();
    let mermaid = p.flow(&["plan", "specs/templated.yaml", "--format", "mermaid"]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    let node = regex::Regex::new(r#"^  [A-Za-z0-9]+(\["[^"\[\]]*"\]|\[/"[^"]*"/\])(:::[a-z]+)?$"#).unwrap();
    let edge = regex::Regex::new(r"^  [A-Za-z0-9]+ --> [A-Za-z0-9]+$").unwrap();
    let class = regex::Regex::new(r"^  classDef [a-z]+ fill:#[0-9a-f]{6}$").unwrap();
    for l in mermaid.stdout.lines().skip(1) {
        assert!(node.is_match(l) || edge.is_match(l) || class.is_match(l), "not flowchart syntax: {l:?}");
    }
    assert!(mermaid.stdout.contains("[\"baseline.scores<br/>evaluate"), "{}", mermaid.stdout);
    let dot = p.flow(&["plan", "specs/templated.yaml", "--format", "dot"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    assert!(dot.stdout.contains("label=\"candidate.answers\\nrun"), "{}", dot.stdout);
    let json = p.flow(&["plan", "specs/templated.yaml", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["nodes"][5]["inputs"], serde_json::json!(["baseline.scores", "candidate.scores"]));
}

const MATRIX_SPEC: &str = r#"flow: 1
backends:
  gpt-4o: {provider: sim, model: gpt-4o, sim: {error_rate: 0.3}}
  gpt-4o-mini: {provider: sim, model: gpt-4o-mini}
nodes:
  cases: {kind: load, path: data/cases.jsonl}
  answers:
    kind: run
    matrix:
      model: [gpt-4o, gpt-4o-mini]
      temperature: [0, 0.5]
    input: cases
    backend: ${matrix.model}
    prompt: "{{question}}"
    system: "temperature ${matrix.temperature}"
  scores:
    kind: evaluate
    matrix:
      model: [gpt-4o, gpt-4o-mini]
    input: "answers[model=${matrix.model}, temperature=0]"
    metrics: [{type: exact_match, expected: "{{expected}}"}]
  ab:
    kind: compare
    inputs: [scores]
"#;

#[test]
fn matrix_expands_with_readable_names() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &std::fs::read_to_string(repo().join("specs/data/cases.jsonl")).unwrap());
    p.write("specs/m.yaml", MATRIX_SPEC);
    let plan = p.flow(&["plan", "specs/m.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        plan_nodes(&plan.stdout),
        [
            "cases",
            "answers[model=gpt-4o,temperature=0]",
            "answers[model=gpt-4o,temperature=0.5]",
            "answers[model=gpt-4o-mini,temperature=0]",
            "answers[model=gpt-4o-mini,temperature=0.5]",
            "scores[model=gpt-4o]",
            "scores[model=gpt-4o-mini]",
            "ab",
        ],
        "{}",
        plan.stdout
    );
    let ab = plan.stdout.lines().find(|l| l.starts_with("ab ")).unwrap();
    assert!(
        ab.contains("scores[model=gpt-4o], scores[model=gpt-4o-mini]"),
        "`inputs: [scores]` reads every copy: {ab}"
    );
    let scores = plan.stdout.lines().find(|l| l.starts_with("scores[model=gpt-4o-mini] ")).unwrap();
    assert!(scores.contains("answers[model=gpt-4o-mini,temperature=0] "), "{scores}");

    let m = p.run_ok(&["specs/m.yaml"]);
    assert_eq!(node(&m, "answers[model=gpt-4o,temperature=0.5]")["records_out"], 24);
    let shown = p.flow(&["show", "answers[model=gpt-4o-mini,temperature=0.5]", "--limit", "1"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(shown.stdout.contains("\"model\":\"gpt-4o-mini\""), "{}", shown.stdout);
    let again = p.run_ok(&["specs/m.yaml"]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "cached"), "{:?}", statuses(&again));

    // Reading a matrix node where one node is expected says how to pick.
    p.write(
        "specs/m.yaml",
        &format!("{MATRIX_SPEC}  one:\n    kind: evaluate\n    input: answers\n    metrics: [{{type: json_valid}}]\n"),
    );
    let r = p.flow(&["validate", "specs/m.yaml"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("node `one` reads `answers`, a matrix of 4 nodes"), "{}", r.stderr);
    assert!(r.stderr.contains("`answers[model=${matrix.model},temperature=${matrix.temperature}]`"), "{}", r.stderr);
}

/// Model names hold `:` and `/` (`llama3:8b`, `org/model`): a copy's name
/// shows them as `_`, and a reference may write the value as it is, by
/// hand or through `${matrix.model}`.
#[test]
fn matrix_values_with_colons_and_slashes_are_read_as_written() {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &std::fs::read_to_string(repo().join("specs/data/cases.jsonl")).unwrap());
    p.write(
        "specs/m.yaml",
        r#"flow: 1
backends:
  bot: {provider: sim, model: gpt-4o-mini}
nodes:
  cases: {kind: load, path: data/cases.jsonl}
  answers:
    kind: run
    matrix:
      model: ["llama3:8b", org/model]
    input: cases
    backend: bot
    system: "you are ${matrix.model}"
    prompt: "{{question}}"
  scores:
    kind: evaluate
    matrix:
      model: ["llama3:8b", org/model]
    input: answers[model=${matrix.model}]
    metrics: [{type: exact_match, expected: "{{expected}}"}]
  ab:
    kind: compare
    inputs:
      - scores[model=llama3:8b]
      - scores[model = org/model]
"#,
    );
    let plan = p.flow(&["plan", "specs/m.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let line = |name: &str| {
        plan.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {}", plan.stdout))
            .to_string()
    };
    assert!(line("scores[model=llama3_8b] ").contains(" answers[model=llama3_8b] "), "{}", plan.stdout);
    assert!(line("scores[model=org_model] ").contains(" answers[model=org_model] "), "{}", plan.stdout);
    assert!(line("ab ").contains("scores[model=llama3_8b], scores[model=org_model]"), "{}", plan.stdout);
    let m = p.run_ok(&["specs/m.yaml"]);
    assert_eq!(node(&m, "ab")["records_in"], 48, "{m}");
}

#[test]
fn templates_nest_and_resolve_paths_in_their_own_folder() {
    let p = Project::empty();
    p.write("specs/data/answers.jsonl", &std::fs::read_to_string(repo().join("specs/data/answers.jsonl")).unwrap());
    // The inner template reads its own data file, next to it.
    p.write("specs/templates/lib/extra.jsonl", "{\"id\": \"x1\", \"output\": \"Paris\", \"expected\": \"Paris\"}\n");
    p.write(
        "specs/templates/lib/score.yaml",
        "flow: 1
inputs:
  answers: {type: node}
  metric: {type: enum, values: [exact_match, similarity], default: similarity}
nodes:
  extra: {kind: load, path: extra.jsonl}
  scores:
    kind: evaluate
    input: answers
    metrics: [{type: '${inputs.metric}', expected: '{{expected}}'}]
",
    );
    p.write(
        "specs/templates/outer.yaml",
        "flow: 1
inputs:
  answers: {type: node}
nodes:
  inner:
    uses: lib/score.yaml
    with: {answers: '${inputs.answers}', metric: exact_match}
  report:
    kind: evaluate
    input: inner.scores
    metrics: [{type: json_valid, field: id}]
",
    );
    p.write(
        "specs/nested.yaml",
        "flow: 1
nodes:
  answers: {kind: load, path: data/answers.jsonl}
  a:
    uses: templates/outer.yaml
    with: {answers: answers}
  total:
    kind: evaluate
    input: a.inner.scores
    metrics: [{type: json_valid, field: id}]
",
    );
    let plan = p.flow(&["plan", "specs/nested.yaml"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(plan_nodes(&plan.stdout), ["answers", "a.inner.extra", "a.inner.scores", "a.report", "total"]);
    let scores = plan.stdout.lines().find(|l| l.starts_with("a.inner.scores ")).unwrap();
    assert!(scores.contains(" answers "), "a node input is bound through two templates: {scores}");
    let extra = plan.stdout.lines().find(|l| l.starts_with("a.inner.extra ")).unwrap();
    assert!(extra.contains("file extra.jsonl"), "{extra}");
    let m = p.run_ok(&["specs/nested.yaml"]);
    assert_eq!(node(&m, "a.inner.extra")["records_out"], 1);
    assert_eq!(node(&m, "a.report")["status"], "ran");
    assert_eq!(node(&m, "total")["records_out"], 8);
}

#[test]
fn a_template_cycle_names_the_chain() {
    let p = Project::empty();
    p.write("specs/data/answers.jsonl", &std::fs::read_to_string(repo().join("specs/data/answers.jsonl")).unwrap());
    p.write(
        "specs/templates/eval.yaml",
        "flow: 1\ninputs:\n  answers: {type: node}\nnodes:\n  inner:\n    uses: inner.yaml\n    with: {answers: answers}\n",
    );
    p.write(
        "specs/templates/inner.yaml",
        "flow: 1\ninputs:\n  answers: {type: node}\nnodes:\n  again:\n    uses: eval.yaml\n    with: {answers: answers}\n",
    );
    p.write(
        "specs/s.yaml",
        "flow: 1\nnodes:\n  answers: {kind: load, path: data/answers.jsonl}\n  e:\n    uses: templates/eval.yaml\n    with: {answers: answers}\n",
    );
    for cmd in ["validate", "run"] {
        let r = p.flow(&[cmd, "specs/s.yaml"]);
        assert_eq!(r.code, 2, "{}", r.stderr);
        assert!(
            r.stderr.starts_with(
                "error: template cycle: specs/templates/eval.yaml → specs/templates/inner.yaml → specs/templates/eval.yaml\n  --> specs/templates/inner.yaml:6:11\n"
            ),
            "{}",
            r.stderr
        );
    }
    assert!(!p.path("specs/.flow").exists());
    // A template that uses itself is the shortest cycle.
    p.write("specs/templates/eval.yaml", "flow: 1\nnodes:\n  me: {uses: eval.yaml}\n");
    let r = p.flow(&["validate", "specs/s.yaml"]);
    assert!(r.stderr.contains("template cycle: specs/templates/eval.yaml → specs/templates/eval.yaml"), "{}", r.stderr);
}
