//! The node as a whole: what `check` rejects and where, and what the stage
//! counts, writes and gates on a set of records (the metrics' own tests are
//! beside them).

use serde_json::{json, Value};

use flow_engine::{Artifact, BuildCx, MapStage, Node, Record, Stage, GATE_FAILED, SUMMARY_MD};

use super::*;
use metric::testing::rec;

/// The diagnostics of a spec whose `scores` node is `evaluate` as written
/// (indented under the node), on a `load` of records with `output`,
/// `expected` and `id`.
fn problems(evaluate: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{\"id\": \"a\", \"output\": \"x\", \"expected\": \"x\"}\n").unwrap();
    std::fs::write(dir.path().join("good.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(dir.path().join("bad.json"), r#"{"type": 5}"#).unwrap();
    let spec = dir.path().join("spec.yaml");
    let text = format!(
        "flow: 1\nnodes:\n  data: {{kind: load, path: data.jsonl}}\n  scores:\n    kind: evaluate\n    input: data\n{evaluate}"
    );
    std::fs::write(&spec, text).unwrap();
    match flow_engine::compile(&spec, &[], &crate::registry()) {
        Ok(_) => String::new(),
        Err(d) => d.to_string(),
    }
}

#[test]
fn good_metrics_and_gates_compile() {
    let ok = problems(
        r#"    metrics:
      - {type: exact_match, expected: "{{expected}}", weight: 2}
      - {type: contains, value: sorry, negate: true}
      - {type: contains_all, values: ["{{expected}}", x]}
      - {type: json_schema, schema_file: good.json}
      - {type: json_schema, name: inline, schema: {type: object}}
      - {type: equals_json, expected: '{"a": 1}', field: output.a}
      - {type: word_count, max: 50}
      - {type: label_in, labels: [x, y]}
      - {type: bleu, expected: "{{expected}}", threshold: 0.2}
    fail_if:
      - {metric: exact_match, pass_rate_below: 0.9}
      - {pass_rate_below: 1.0}
      - {errors_above: 0}
      - {score_below: 0.5}
    max_errors: 5
"#,
    );
    assert_eq!(ok, "");
}

#[test]
fn bad_metrics_are_reported_where_they_are_written() {
    let p = problems(
        r#"    metrics:
      - {type: exact_match, expected: "{{expected}}"}
      - {type: json_schema}
      - {type: word_count}
      - {type: length, min: 9, max: 3}
      - {type: equals_json, expected: '{oops'}
      - {type: contains, value: x, field: "output..a"}
      - {type: contains_any, values: []}
      - {type: rouge_l, expected: x, threshold: 2}
      - {type: json_schema, name: bad, schema_file: bad.json}
      - {type: json_schema, name: gone, schema_file: missing.json}
      - {type: levenshtein, expected: x}
      - {type: label_in, labels: [a], weight: -1}
    fail_if:
      - {metric: exact_mach, pass_rate_below: 0.9}
      - {metric: exact_match, pass_rate_below: 0.9, mean_below: 0.5}
      - {metric: exact_match}
      - {mean_below: 70}
      - {metric: exact_match, score_below: 0.5}
    max_errors: ten
"#,
    );
    let expect = [
        ("spec.yaml:9:10", "`json_schema` needs `schema` or `schema_file`"),
        ("spec.yaml:10:10", "`word_count` needs `min`, `max` or both"),
        ("spec.yaml:11:29", "`min` (9) is more than `max` (3)"),
        ("spec.yaml:12:39", "`expected` is not JSON"),
        ("spec.yaml:13:43", "`output..a` has an empty part"),
        ("spec.yaml:14:38", "`values` is empty"),
        ("spec.yaml:15:49", "threshold 2 is outside 0..=1"),
        ("spec.yaml:16:53", "invalid JSON Schema at `/type`"),
        ("spec.yaml:17:54", "input file `missing.json` of node `scores`: not found"),
        ("spec.yaml:18:10", "`levenshtein` needs `max_distance`"),
        ("spec.yaml:19:47", "`weight` must be a number ≥ 0, not -1"),
        ("spec.yaml:21:18", "`fail_if[0]` checks metric `exact_mach`, which node `scores` does not score"),
        ("spec.yaml:22:53", "`fail_if[1]` has more than one test"),
        ("spec.yaml:23:9", "`fail_if[2]` has no test"),
        ("spec.yaml:24:22", "`mean_below` must be in 0..=1, not 70"),
        ("spec.yaml:25:10", "`score_below` checks the records' weighted `score`"),
        ("spec.yaml:26:17", "`ten` is neither a count nor a percentage"),
    ];
    for (at, what) in expect {
        let found = p.split("error: ").any(|d| d.contains(what) && d.contains(at));
        assert!(found, "no `{what}` at {at} in:\n{p}");
    }
    assert!(p.contains("hint: did you mean `exact_match`?"), "{p}");
    assert!(p.contains(&format!("error: {} problems found", expect.len())), "{p}");
}

/// A map-shaped scorer for `yaml` (a node config).
fn scorer(yaml: &str) -> Box<dyn MapStage> {
    let config: EvaluateConfig = serde_yaml::from_str(yaml).unwrap();
    match Evaluate::build(&config, &BuildCx::new("scores", ".".into())).unwrap() {
        Stage::Map(m) => m,
        _ => panic!("deterministic metrics make a map stage"),
    }
}

fn score_all(stage: &dyn MapStage, records: &[Record]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for r in records {
        stage.map(r, &mut out).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn artifact(artifacts: &[Artifact], name: &str) -> String {
    String::from_utf8(artifacts.iter().find(|a| a.name == name).unwrap().bytes.clone()).unwrap()
}

/// Four records; `b`'s call failed upstream, so each metric errors on it.
fn four() -> Vec<Record> {
    vec![
        rec(json!({"id": "a", "output": "Paris", "expected": "Paris"})),
        rec(json!({"id": "b", "output": null, "expected": "Rome", "error": "HTTP 500"})),
        rec(json!({"id": "c", "output": "Lyon", "expected": "Paris"})),
        rec(json!({"id": "d", "output": "paris!", "expected": "Paris"})),
    ]
}

#[test]
fn one_denominator_an_errors_column_and_the_weighted_score() {
    let stage = scorer(
        r#"metrics:
  - {type: exact_match, expected: "{{expected}}", weight: 3}
  - {type: icontains, value: "{{expected}}"}
"#,
    );
    let out = score_all(&*stage, &four()).unwrap();
    // a: 1 and 1 → 1; c: 0 and 0 → 0; d: 0 and 1 → (3·0 + 1·1) / 4.
    let scores: Vec<Value> = out.iter().map(|r| r["score"].clone()).collect();
    assert_eq!(scores, [json!(1.0), Value::Null, json!(0.0), json!(0.25)]);
    assert_eq!(out[1]["scores"]["exact_match"]["error"], "no `output`: the call failed (HTTP 500)");
    let artifacts = stage.finish().unwrap();
    let summary: Value = serde_json::from_str(&artifact(&artifacts, "summary.json")).unwrap();
    // Means and rates over the 3 records scored; `b` is in `errors`.
    assert_eq!(
        summary["metrics"]["exact_match"],
        json!({"mean": 0.333333, "pass_rate": 0.333333, "scored": 3, "errors": 1, "count": 4, "weight": 3.0})
    );
    assert_eq!(summary["metrics"]["icontains"]["pass_rate"], json!(0.666667));
    assert_eq!((summary["records"].clone(), summary["passed"].clone()), (json!(4), json!(1)));
    assert_eq!(summary["pass_rate"], json!(0.25), "passing every metric, of every record");
    assert_eq!(summary["score"], json!(0.416667), "(1 + 0 + 0.25) / 3");
    assert_eq!(summary["errors"], json!(2));
    let md = artifact(&artifacts, SUMMARY_MD);
    assert!(md.contains("| exact_match (weight 3) | 0.333 | 33.3% | 3 | 1 |"), "{md}");
    assert!(md.contains("| icontains (weight 1) | 0.667 | 66.7% | 3 | 1 |"), "{md}");
    assert!(md.contains("mean score: 0.417"), "{md}");
    assert!(artifacts.iter().all(|a| a.name != GATE_FAILED));
}

#[test]
fn a_tripped_gate_writes_its_figures_and_the_first_ids() {
    let stage = scorer(
        r#"metrics:
  - {type: exact_match, expected: "{{expected}}"}
  - {type: word_count, max: 1}
fail_if:
  - {metric: exact_match, pass_rate_below: 0.9}
  - {metric: word_count, pass_rate_below: 0.9}
  - {errors_above: 0}
"#,
    );
    let records: Vec<Record> = (0..30)
        .map(|i| rec(json!({"id": format!("q{i:02}"), "output": "x", "expected": if i % 3 == 0 { "x" } else { "y" }})))
        .collect();
    score_all(&*stage, &records).unwrap();
    let artifacts = stage.finish().unwrap();
    let text = artifact(&artifacts, GATE_FAILED);
    assert_eq!(
        text,
        "fail_if[0]: exact_match pass rate 0.333 is below 0.9 (10 of 30 passed); failing: q01, q02, q04, q05, q07, q08, \
         q10, q11, q13, q14 and 10 more (flow show scores)\n"
    );
    let md = artifact(&artifacts, SUMMARY_MD);
    assert!(md.contains("gates tripped: fail_if[0] of 3"), "{md}");
    assert!(!md.contains("0.333 is below"), "the figures are given once, in the run's error: {md}");
    let summary: Value = serde_json::from_str(&artifact(&artifacts, "summary.json")).unwrap();
    let tripped: Vec<bool> =
        summary["gates"].as_array().unwrap().iter().map(|g| g["tripped"].as_bool().unwrap()).collect();
    assert_eq!(tripped, [true, false, false, false], "one result per rule and metric");
}

#[test]
fn a_metric_erring_past_max_errors_fails_the_node() {
    let metrics =
        "metrics: [{type: exact_match, expected: \"{{expected}}\"}, {type: length, max: 5, field: expected}]\n";
    // exact_match errs on 1 of 4: within the default half.
    let stage = scorer(metrics);
    score_all(&*stage, &four()).unwrap();
    assert!(stage.finish().is_ok());
    // On 3 of 4: past it, although `length` scored every record (half of
    // all verdicts erred: a share of the verdicts would let this pass).
    let failed: Vec<Record> = (0..4)
        .map(|i| {
            let (output, error) = if i == 0 { (json!("x"), Value::Null) } else { (Value::Null, json!("timeout")) };
            rec(json!({"id": i, "output": output, "expected": "x", "error": error}))
        })
        .collect();
    let stage = scorer(metrics);
    score_all(&*stage, &failed).unwrap();
    assert_eq!(
        stage.finish().unwrap_err().to_string(),
        "metric `exact_match` errored on 3 of 4 records, more than `max_errors: 50%`; \
         the first (on `1`): no `output`: the call failed (timeout)"
    );
    // A count stops the node as soon as it is passed.
    let stage = scorer(&format!("{metrics}max_errors: 1\n"));
    let e = score_all(&*stage, &failed).unwrap_err();
    assert!(e.starts_with("metric `exact_match` errored on 2 records, more than `max_errors: 1`"), "{e}");
    // `100%` tolerates anything.
    let stage = scorer(&format!("{metrics}max_errors: \"100%\"\n"));
    score_all(&*stage, &failed).unwrap();
    assert!(stage.finish().is_ok());
    // Twenty records in and no verdict from a metric: the node stops there.
    let stage = scorer(metrics);
    let none: Vec<Record> = (0..25).map(|i| rec(json!({"id": i, "expected": "x"}))).collect();
    let e = score_all(&*stage, &none).unwrap_err();
    assert!(e.starts_with("metric `exact_match` errored on each of the first 20 records"), "{e}");
}

#[test]
fn records_without_ids_are_named_by_position() {
    let stage = scorer("metrics: [{type: contains, value: x}]\nfail_if: [{pass_rate_below: 1}]\n");
    let records = vec![
        rec(json!({"output": "x"})),
        rec(json!({"output": "y", "sample": 2})),
        rec(json!({"output": "y", "id": 7, "variant": "short"})),
    ];
    score_all(&*stage, &records).unwrap();
    let text = artifact(&stage.finish().unwrap(), GATE_FAILED);
    // Beside a variant, records without one are held to the rule as `-`.
    assert!(text.contains("fail_if[0] (variant `-`): contains pass rate 0.500 is below 1 (1 of 2 passed); failing: record 2 (sample 2)\n"), "{text}");
    assert!(
        text.ends_with(
            "fail_if[0] (variant `short`): contains pass rate 0.000 is below 1 (0 of 1 passed); failing: short/7\n"
        ),
        "{text}"
    );
    let stage = scorer("metrics: [{type: contains, value: x}]\nfail_if: [{pass_rate_below: 1}]\n");
    score_all(&*stage, &records[..2]).unwrap();
    let text = artifact(&stage.finish().unwrap(), GATE_FAILED);
    assert!(text.ends_with("(1 of 2 passed); failing: record 2 (sample 2)\n") && !text.contains("variant"), "{text}");
}

/// docs/metrics.md documents every type, and each of its YAML examples
/// compiles as written.
#[test]
fn docs_examples_compile() {
    let doc = include_str!("../../../docs/metrics.md");
    for ty in config::METRIC_TYPES {
        let name = ty.name();
        assert!(doc.contains(&format!("### `{name}`")), "docs/metrics.md has no section on `{name}`");
        assert!(doc.contains(&format!("type: {name}")), "docs/metrics.md has no example of `{name}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let fields = ["output", "expected", "city", "product", "order_id", "name", "reference_summary"];
    let mut record: serde_json::Map<String, Value> = fields.iter().map(|f| (f.to_string(), json!("x"))).collect();
    for f in ["reference_translation", "gold_order", "id"] {
        record.insert(f.into(), json!("x"));
    }
    record.insert("latency_ms".into(), json!(1));
    record.insert("cost_usd".into(), json!(0.0));
    record.insert("tool_calls".into(), json!([]));
    record.insert("logprobs".into(), json!({"tokens": 1, "sum": -0.1, "mean": -0.1}));
    std::fs::write(dir.path().join("data.jsonl"), format!("{}\n", Value::Object(record))).unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas/answer.json"), r#"{"type": "object"}"#).unwrap();
    let spec = dir.path().join("spec.yaml");
    let mut blocks = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let yaml = block.split("```").next().unwrap();
        let indent =
            |text: &str, n: usize| -> String { text.lines().map(|l| format!("{}{l}\n", " ".repeat(n))).collect() };
        let node = if yaml.starts_with("scores:") {
            indent(yaml, 2)
        } else {
            format!("  scores:\n    kind: evaluate\n    input: answers\n{}", indent(yaml, 4))
        };
        let text = format!(
            "flow: 1\nbackends:\n  judge: {{provider: sim}}\n  embedder: {{provider: sim}}\nnodes:\n  answers: {{kind: load, path: data.jsonl}}\n{node}"
        );
        std::fs::write(&spec, &text).unwrap();
        if let Err(d) = flow_engine::compile(&spec, &[], &crate::registry()) {
            panic!("this example in docs/metrics.md does not compile:\n{yaml}\n{d}");
        }
        blocks += 1;
    }
    assert!(blocks >= config::METRIC_TYPES.len(), "{blocks} examples");
}
