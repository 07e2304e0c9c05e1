//! `evaluate`'s metrics, gates and error limit as a user meets them: a
//! spec on `sim` (JSON answers, some wrong) scored by several metric types,
//! embeddings from `sim` and from the local test server, a `fail_if` gate
//! that trips. The figures are checked against what the test computes
//! itself from the answers, and the server's own request count shows what
//! was memoized.

use serde_json::Value;

use crate::common::{node, run_in_env, statuses, Project, Run};
use crate::llm_server::{LlmServer, ServerConfig};

const KEY: &str = "sk-test-key-0011";

fn flow(p: &Project, args: &[&str]) -> Run {
    run_in_env(p.dir.path(), args, &[("FLOW_TEST_KEY", KEY)])
}

/// 20 sums, `q01`..`q20`, no two alike (two identical embeddings calls
/// would share one answer through the memo).
fn cases() -> String {
    (1..=20)
        .map(|i| {
            let (a, b) = (i, 10 * i + i % 3);
            format!(
                "{{\"id\": \"q{i:02}\", \"question\": \"What is {a} + {b}? Answer with the number only.\", \"expected\": \"{}\"}}\n",
                a + b
            )
        })
        .collect()
}

/// The spec: answers in JSON mode from a sim that gets 40% wrong, scored
/// by eight metrics, embeddings through the server at `url`.
fn spec(url: &str, max_words: u32) -> String {
    format!(
        r#"flow: 1
name: metrics
backends:
  bot: {{provider: sim, model: m1, sim: {{error_rate: 0.4}}}}
  sim_emb: {{provider: sim, model: sim-embed}}
  emb:
    provider: openai
    base_url: {url}
    model: test-embed
    api_key_env: FLOW_TEST_KEY
    retry: {{max_retries: 1, initial_delay: 10ms, max_delay: 50ms}}
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
  answers: {{kind: run, input: cases, backend: bot, prompt: "{{{{question}}}}", json: true}}
  scores:
    kind: evaluate
    input: answers
    metrics:
      - {{type: json_valid}}
      - {{type: json_schema, schema_file: answer.schema.json}}
      - {{type: equals_json, expected: '{{"answer": "{{{{expected}}}}"}}'}}
      - {{type: exact_match, field: output.answer, expected: "{{{{expected}}}}", weight: 2}}
      - {{type: levenshtein, field: output.answer, expected: "{{{{expected}}}}", max_distance: 0}}
      - {{type: contains, value: sorry, negate: true}}
      - {{type: word_count, field: output.answer, max: {max_words}}}
      - {{type: embedding_similarity, backend: sim_emb, field: output.answer, expected: "{{{{expected}}}}", threshold: 0.99}}
      - {{type: embedding_similarity, name: server_similarity, backend: emb, field: output.answer, expected: "{{{{expected}}}}"}}
    fail_if:
      - {{metric: exact_match, pass_rate_below: 0.9}}
      - {{errors_above: 0}}
"#
    )
}

fn project(url: &str) -> Project {
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases());
    p.write(
        "specs/answer.schema.json",
        r#"{"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string", "pattern": "^-?[0-9]+$"}}}"#,
    );
    p.write("specs/metrics.yaml", &spec(url, 1));
    p
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn several_metrics_trip_a_gate_with_the_figures_once_cached_or_not() {
    let server = LlmServer::start(ServerConfig::default());
    let p = project(&server.base_url());
    let r = flow(&p, &["run", "specs/metrics.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("failed: a gate tripped"), "{}", r.stderr);

    // The reference: which answers are right, computed here from the answers.
    let answers = lines(&flow(&p, &["show", "answers", "--workspace", "specs/.flow"]).stdout);
    assert_eq!(answers.len(), 20);
    let right: Vec<bool> = answers
        .iter()
        .map(|a| {
            let out: Value = serde_json::from_str(a["output"].as_str().unwrap()).unwrap();
            out["answer"] == a["expected"]
        })
        .collect();
    let passed = right.iter().filter(|r| **r).count();
    assert!((1..18).contains(&passed), "the sim gets some wrong: {passed} of 20 right");
    let failing: Vec<&str> =
        answers.iter().zip(&right).filter(|(_, r)| !**r).map(|(a, _)| a["id"].as_str().unwrap()).collect();
    let listed = match failing.len() {
        n if n > 10 => format!("{} and {} more (flow show scores)", failing[..10].join(", "), n - 10),
        _ => failing.join(", "),
    };
    let gate = format!(
        "node `scores`: fail_if[0]: exact_match pass rate {:.3} is below 0.9 ({passed} of 20 passed); failing: {listed}",
        passed as f64 / 20.0
    );
    assert!(r.stderr.contains(&gate), "want `{gate}` in:\n{}", r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert_eq!(all.matches("pass rate 0.").count(), 1, "the figures are printed once:\n{all}");
    assert!(r.stdout.contains("gates tripped: fail_if[0] of 2"), "{}", r.stdout);

    // summary.json agrees with the reference, metric by metric.
    let m = p.latest_run("specs/.flow");
    let run_dir = p.path("specs/.flow/runs").join(m["run_id"].as_str().unwrap());
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("scores/summary.json")).unwrap()).unwrap();
    let rate = ((passed as f64 / 20.0) * 1e6).round() / 1e6;
    for (metric, want) in [
        ("json_valid", 1.0),
        ("json_schema", 1.0),
        ("equals_json", rate),
        ("exact_match", rate),
        ("levenshtein", rate),
        ("not_contains", 1.0),
        ("word_count", 1.0),
    ] {
        let s = &summary["metrics"][metric];
        assert_eq!(s["pass_rate"].as_f64(), Some(want), "{metric}: {s}");
        assert_eq!((s["scored"].as_u64(), s["errors"].as_u64()), (Some(20), Some(0)), "{metric}: {s}");
    }
    assert_eq!(summary["metrics"]["exact_match"]["weight"], 2.0);
    assert_eq!(summary["errors"], 0);
    assert_eq!(summary["passed"].as_u64(), Some(passed as u64));

    // Each record's `score` is the weighted mean of its metric scores; the
    // sim's cosines are those of its own vectors, computed here.
    let scored = lines(&flow(&p, &["show", "scores", "--workspace", "specs/.flow"]).stdout);
    let mut sum = 0.0;
    for ((rec, right), answer) in scored.iter().zip(&right).zip(&answers) {
        let s = &rec["scores"];
        assert_eq!(s["exact_match"]["pass"].as_bool(), Some(*right), "{rec}");
        let out: Value = serde_json::from_str(answer["output"].as_str().unwrap()).unwrap();
        let embed = |t: &Value| flow_nodes::backend::sim::embed(t.as_str().unwrap(), 64);
        let cos = cosine(&embed(&out["answer"]), &embed(&answer["expected"]));
        let sim = &s["embedding_similarity"];
        assert!((sim["value"].as_f64().unwrap() - cos).abs() < 1e-6, "{rec}: cosine {cos}");
        assert_eq!(sim["pass"].as_bool(), Some(cos >= 0.99), "{rec}");
        if *right {
            let v = s["server_similarity"]["value"].as_f64().unwrap();
            assert!((v - 1.0).abs() < 1e-6 && s["server_similarity"]["pass"] == true, "{rec}");
        }
        let total: f64 = s
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| v["score"].as_f64().unwrap() * if k == "exact_match" { 2.0 } else { 1.0 })
            .sum();
        let want = ((total / 10.0) * 1e6).round() / 1e6;
        assert_eq!(rec["score"].as_f64(), Some(want), "{rec}");
        sum += want;
    }
    assert!((summary["score"].as_f64().unwrap() - sum / 20.0).abs() < 1e-6, "{}", summary["score"]);
    // One embeddings call per record and metric; those of one reached the server.
    assert_eq!(server.requests(), 20);
    assert_eq!(node(&m, "scores")["calls"]["requests"], 40);

    // All cached: the gate fails the run again, from the stored text.
    let again = flow(&p, &["run", "specs/metrics.yaml"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(statuses(&p.latest_run("specs/.flow")).iter().all(|(_, s)| s == "cached"));
    assert!(again.stderr.contains(&gate), "{}", again.stderr);

    // Another bound re-runs `scores`; the plan counts its embeddings calls
    // as memoized, and the server sees none of them again.
    p.write("specs/metrics.yaml", &spec(&server.base_url(), 2));
    let plan = flow(&p, &["plan", "specs/metrics.yaml"]);
    assert!(plan.stdout.contains("0 (40 memoized)"), "{}", plan.stdout);
    let third = flow(&p, &["run", "specs/metrics.yaml"]);
    assert_eq!(third.code, 1, "{}", third.stderr);
    let m3 = p.latest_run("specs/.flow");
    assert_eq!(node(&m3, "scores")["status"], "ran");
    assert_eq!(node(&m3, "scores")["calls"]["memo_hits"], 40);
    assert_eq!(server.requests(), 20, "nothing new reached the server");
}

#[test]
fn a_judge_that_is_down_fails_the_node_and_nothing_is_cached() {
    let server = LlmServer::start(ServerConfig { fail_every: Some(1), fail_status: Some(500), ..Default::default() });
    let p = Project::empty();
    p.write("specs/data/cases.jsonl", &cases().lines().take(6).map(|l| format!("{l}\n")).collect::<String>());
    let spec = format!(
        r#"flow: 1
backends:
  bot: {{provider: sim}}
  judge:
    provider: openai
    base_url: {}
    model: judge-model
    api_key_env: FLOW_TEST_KEY
    retry: {{max_retries: 0}}
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
  answers: {{kind: run, input: cases, backend: bot, prompt: "{{{{question}}}}"}}
  scores:
    kind: evaluate
    input: answers
    metrics:
      - {{type: exact_match, expected: "{{{{expected}}}}"}}
      - {{type: judge, backend: judge, rubric: "The answer is {{{{expected}}}}."}}
"#,
        server.base_url()
    );
    p.write("specs/judged.yaml", &spec);
    let r = flow(&p, &["run", "specs/judged.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("metric `judge` errored on 6 of 6 records, more than `max_errors: 50%`; the first (on `q01`): judge call failed"),
        "{}",
        r.stderr
    );
    assert_eq!(server.requests(), 6);
    let plan = flow(&p, &["plan", "specs/judged.yaml"]);
    let line = plan.stdout.lines().find(|l| l.starts_with("scores")).unwrap_or_default();
    assert!(line.contains("will run"), "a failed node is not cached:\n{}", plan.stdout);
}

/// The mean log probability the test server gives `answer`: −len/10 a word.
fn mean_logprob(answer: &str) -> f64 {
    let lps: Vec<f64> = answer.split_whitespace().map(|w| -(w.chars().count() as f64) / 10.0).collect();
    lps.iter().sum::<f64>() / lps.len() as f64
}

#[test]
fn logprob_and_perplexity_score_the_servers_log_probabilities() {
    let server = LlmServer::start(ServerConfig::default());
    let spec = format!(
        r#"flow: 1
name: lp
backends:
  bot:
    provider: openai
    base_url: {url}
    model: test-model
    api_key_env: FLOW_TEST_KEY
    params: {{logprobs: true}}
  plain:
    provider: openai
    base_url: {url}
    model: test-model
    api_key_env: FLOW_TEST_KEY
nodes:
  cases: {{kind: load, path: data/cases.jsonl}}
  answers: {{kind: run, input: cases, backend: bot, prompt: "{{{{question}}}}"}}
  scores:
    kind: evaluate
    input: answers
    metrics:
      - {{type: logprob, min_logprob: -0.35}}
      - {{type: perplexity, max_perplexity: 1.4}}
"#,
        url = server.base_url()
    );
    let p = Project::empty();
    let questions = ["What is 2 + 2?", "Name a colour.", "Summarise the treaty of Westphalia briefly."];
    let cases: String =
        questions.iter().enumerate().map(|(i, q)| format!("{{\"id\": \"c{i}\", \"question\": \"{q}\"}}\n")).collect();
    p.write("specs/data/cases.jsonl", &cases);
    p.write("specs/lp.yaml", &spec);
    let r = flow(&p, &["run", "specs/lp.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let scored = lines(&flow(&p, &["show", "scores", "--spec", "specs/lp.yaml"]).stdout);
    assert_eq!(scored.len(), 3);
    for (rec, q) in scored.iter().zip(questions) {
        // The server answers "echo: <question>".
        let mean = mean_logprob(&format!("echo: {q}"));
        assert!((rec["logprobs"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{rec}");
        let lp = &rec["scores"]["logprob"];
        assert!((lp["value"].as_f64().unwrap() - mean).abs() < 1e-6, "{rec}");
        assert_eq!(lp["pass"], mean >= -0.35, "{rec}");
        let ppl = &rec["scores"]["perplexity"];
        assert!((ppl["value"].as_f64().unwrap() - (-mean).exp()).abs() < 1e-5, "{rec}");
        assert_eq!(ppl["pass"], (-mean).exp() <= 1.4, "{rec}");
    }
    // Figures that differ by record: some pass, some fail.
    let passes: Vec<bool> = scored.iter().map(|r| r["scores"]["perplexity"]["pass"].as_bool().unwrap()).collect();
    assert!(passes.contains(&true) && passes.contains(&false), "{passes:?}");
    // A run that does not ask for them is told so before anything runs.
    p.write("specs/plain.yaml", &spec.replace("backend: bot", "backend: plain"));
    let r = flow(&p, &["validate", "specs/plain.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("`logprob` scores the answers' token log probabilities, which `answers` does not ask for"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint: set `params: {logprobs: true}` on the backend of `answers`"), "{}", r.stderr);
    assert!(r.stderr.contains("plain.yaml:22:"), "{}", r.stderr);
}
