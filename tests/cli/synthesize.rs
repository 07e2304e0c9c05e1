//! `synthesize` end to end: feedback pairs in, the planted rules out with
//! their support, a planted contradiction flagged, a hook script that
//! Python parses and runs; then `run` with `rules:` against a local
//! OpenAI-compatible server: the rules reach the system message of every
//! request, the mechanical ones rewrite the answers, and the hook rewrites
//! the raw answers into the very same text.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::{node, repo, run_in, run_in_env, statuses, Project};
use crate::llm_server::{LlmServer, ReplyFn, ServerConfig};

const KEY: &str = "sk-test-synthesize";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/synthesize").join(name)).unwrap()
}

fn show(p: &Project, node: &str) -> Vec<Value> {
    let r = run_in(p.dir.path(), &["show", node, "--workspace", "specs/.flow"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn rule<'a>(rules: &'a [Value], id: &str) -> &'a Value {
    rules.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no rule `{id}`"))
}

/// A file of node `node` in the newest run folder.
fn run_file(p: &Project, node: &str, name: &str) -> std::path::PathBuf {
    let id = p.latest_run("specs/.flow")["run_id"].as_str().unwrap().to_string();
    p.path("specs/.flow/runs").join(id).join(node).join(name)
}

/// `python3`, when this machine has one.
fn python() -> Option<&'static str> {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: no python3 on this machine, the hook script is not parsed");
    }
    ok.then_some("python3")
}

/// Parses the hook with `ast`, imports it and runs `intercept_prompt` on a
/// prompt and `apply_rules` on each sample: `{"prompt": ..., "outputs":
/// [[text, applied], ...]}`.
fn run_hook(py: &str, hook: &Path, prompt: &str, samples: &[&str]) -> Value {
    let parse = Command::new(py)
        .args(["-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(hook)
        .output()
        .unwrap();
    assert!(parse.status.success(), "the hook does not parse: {}", String::from_utf8_lossy(&parse.stderr));
    let driver = r#"
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("hook", sys.argv[1])
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
data = json.load(sys.stdin)
out = {"prompt": hook.intercept_prompt(data["prompt"], {"channel": "chat"}),
       "outputs": [list(hook.apply_rules(s)) for s in data["samples"]],
       "intercepted": [hook.intercept_output(s, None) for s in data["samples"]]}
print(json.dumps(out))
"#;
    let mut child = Command::new(py)
        .args(["-c", driver])
        .arg(hook)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"prompt": prompt, "samples": samples}).to_string();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the hook failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["intercepted"], Value::Array(v["outputs"].as_array().unwrap().iter().map(|o| o[0].clone()).collect()));
    v
}

#[test]
fn induces_the_planted_rules_flags_the_contradiction_and_writes_a_hook() {
    let p = Project::empty();
    p.write("specs/pairs.jsonl", &fixture("pairs.jsonl"));
    p.write("specs/synthesize.yaml", &fixture("synthesize.yaml"));
    let r = p.flow(&["run", "specs/synthesize.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "- contradiction (pairs backing: `format:bullets` 3, `format:numbered` 2): `format:bullets` has the most support"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("| `format:numbered` | 2 | fb-06, fb-07 | overridden by `format:bullets` |"),
        "{}",
        r.stdout
    );

    let rules = show(&p, "rules");
    let got: Vec<(String, u64, Vec<String>, bool)> = rules
        .iter()
        .map(|r| {
            let pairs = r["pairs"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            (r["id"].as_str().unwrap().to_string(), r["support"].as_u64().unwrap(), pairs, r["active"] == true)
        })
        .collect();
    let want = |id: &str, support: u64, pairs: &[&str], active: bool| {
        (id.to_string(), support, pairs.iter().map(|s| s.to_string()).collect::<Vec<_>>(), active)
    };
    assert_eq!(
        got,
        [
            want("format:bullets", 3, &["fb-01", "fb-02", "fb-03"], true),
            want("format:numbered", 2, &["fb-06", "fb-07"], false),
            want("max_words", 5, &["fb-01", "fb-02", "fb-03", "fb-04", "fb-05"], true),
            want("rating_scale:5", 2, &["fb-04", "fb-05"], true),
            want("tone:avoid:apology", 3, &["fb-01", "fb-02", "fb-03"], true),
            want("tone:avoid:exclamation", 2, &["fb-01", "fb-03"], true),
            want("avoid:i apologize for the inconvenience", 3, &["fb-01", "fb-02", "fb-03"], true),
        ]
    );
    assert_eq!(rule(&rules, "max_words")["params"]["max_words"], 13);
    assert_eq!(rule(&rules, "rating_scale:5")["params"]["scale"], 5);
    let lost = &rule(&rules, "format:numbered")["conflict"];
    assert_eq!(lost["winner"], "format:bullets");
    assert_eq!(lost["with"], json!(["format:bullets"]));
    assert_eq!(rule(&rules, "format:bullets")["conflict"]["with"], json!(["format:numbered"]));
    assert_eq!(rule(&rules, "format:bullets")["against"], json!(["fb-06", "fb-07"]));
    let enforced: Vec<&str> =
        rules.iter().filter(|r| r["enforced"] == true).map(|r| r["id"].as_str().unwrap()).collect();
    assert!(!enforced.contains(&"tone:avoid:apology"), "an apology cannot be removed mechanically");

    // The run manifest's meta, and rules.json.
    let m = p.latest_run("specs/.flow");
    let meta = &node(&m, "rules")["meta"];
    assert_eq!(meta["pairs"], 7);
    assert_eq!(meta["active"], 6);
    assert_eq!(meta["contradictions"], 1);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run_file(&p, "rules", "rules.json")).unwrap()).unwrap();
    assert_eq!(report["contradictions"].as_array().unwrap().len(), 1);
    assert_eq!(report["contradictions"][0]["rules"], json!(["format:bullets", "format:numbered"]));
    let fb01 = &report["analysis"][0];
    assert_eq!(fb01["deleted"][0], "I apologize for the inconvenience");
    assert_eq!(fb01["format"], json!({"bad": "plain", "fixed": "bullets"}));
    assert_eq!(fb01["tone"]["bad"], json!({"apology": 1, "exclamation": 1}));
    assert_eq!(report["analysis"][3]["ratings"], json!({"bad": ["8/10"], "fixed": ["4/5"]}));

    // The hook: marked as generated, parsed and run by Python.
    let hook = run_file(&p, "rules", "generated_prompt_hook.py");
    let text = std::fs::read_to_string(&hook).unwrap();
    assert!(
        text.starts_with("# Generated by flow from the `synthesize` node `rules` (7 feedback pairs).\n# DO NOT EDIT")
    );
    assert!(text.contains("def intercept_prompt(user_input, context=None):"));
    assert!(text.contains("def intercept_output(model_output, context=None):"));
    let Some(py) = python() else { return };
    let v = run_hook(
        py,
        &hook,
        "Where is my order?",
        &[
            "I apologize for the inconvenience! I rate it 8/10!\n1. Pack\n2. Ship",
            "{\"a\": \"I apologize for the inconvenience!\"}",
        ],
    );
    let prompt = v["prompt"].as_str().unwrap();
    assert!(
        prompt.starts_with("Where is my order?\n\nFollow these rules:\n- Format the answer as a bulleted list"),
        "{prompt}"
    );
    assert!(prompt.contains("\n- Never write \"I apologize for the inconvenience\"."), "{prompt}");
    assert!(!prompt.contains("numbered"), "a rule that lost its contradiction is not applied: {prompt}");
    assert_eq!(
        v["outputs"][0],
        json!([
            "I rate it 4/5.\n- Pack\n- Ship",
            ["avoid:i apologize for the inconvenience", "tone:avoid:exclamation", "rating_scale:5", "format:bullets"]
        ])
    );
    assert_eq!(
        v["outputs"][1],
        json!(["{\"a\": \"I apologize for the inconvenience!\"}", []]),
        "JSON is left as it is"
    );
}

/// What the support bot answers, by question.
fn reply(body: &Value) -> String {
    let user = body["messages"].as_array().unwrap().iter().rev().find(|m| m["role"] == "user").unwrap();
    match user["content"].as_str().unwrap() {
        "Where is my order?" => "I apologize for the inconvenience! Your order ships Monday.".into(),
        "How do I return an item?" => "1. Pack the item\n2. Print the label\n3. Drop it off".into(),
        "Rate the product." => "I rate it 8/10!".into(),
        "Tell me about shipping." => {
            "We ship every weekday from two warehouses. Most orders leave within a day and arrive two or three days later, tracked all the way.".into()
        }
        "Answer in JSON." => "{\"status\": \"I apologize for the inconvenience!\"}".into(),
        other => format!("no answer for {other}"),
    }
}

const QUESTIONS: &[&str] = &[
    "Where is my order?",
    "How do I return an item?",
    "Rate the product.",
    "Tell me about shipping.",
    "Answer in JSON.",
];

fn loop_project(url: &str) -> Project {
    let p = Project::empty();
    p.write("specs/data/pairs.jsonl", &fixture("pairs.jsonl"));
    let questions: String = QUESTIONS
        .iter()
        .enumerate()
        .map(|(i, q)| format!("{}\n", json!({"id": format!("q{i}"), "question": q})))
        .collect();
    p.write("specs/data/questions.jsonl", &questions);
    p.write(
        "specs/loop.yaml",
        &format!(
            "flow: 1
name: loop
backends:
  bot:
    provider: openai
    base_url: {url}
    model: support-bot
    api_key_env: FLOW_TEST_KEY
    temperature: 0
    max_concurrency: 4
    retry: {{max_retries: 1, initial_delay: 10ms, max_delay: 20ms}}
nodes:
  feedback: {{kind: load, path: data/pairs.jsonl}}
  rules: {{kind: synthesize, input: feedback}}
  questions: {{kind: load, path: data/questions.jsonl}}
  answers:
    kind: run
    input: questions
    backend: bot
    system: You are a support assistant.
    prompt: \"{{{{question}}}}\"
    rules: rules
  bare:
    kind: run
    input: questions
    backend: bot
    prompt: \"{{{{question}}}}\"
    rules: rules
"
        ),
    );
    p
}

#[test]
fn run_with_rules_prompts_with_them_and_post_processes_like_the_hook() {
    let s = LlmServer::start(ServerConfig {
        api_key: Some(KEY.into()),
        reply: Some(ReplyFn(Arc::new(reply))),
        ..ServerConfig::default()
    });
    let p = loop_project(&s.base_url());
    let go = |p: &Project| {
        let r = run_in_env(p.dir.path(), &["run", "specs/loop.yaml"], &[("FLOW_TEST_KEY", KEY)]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        (p.latest_run("specs/.flow"), r.stdout)
    };
    let (_, stdout) = go(&p);
    assert!(
        stdout.contains("rules: 6 from `rules` in the system prompt, 5 enforced on outputs; 4 answers changed by them"),
        "{stdout}"
    );

    // Every request carries the active rules, after the node's own system
    // prompt, or as the system message when the node has none.
    let rules = show(&p, "rules");
    let lines: Vec<String> =
        rules.iter().filter(|r| r["active"] == true).map(|r| format!("- {}", r["text"].as_str().unwrap())).collect();
    let block = format!("Follow these rules:\n{}", lines.join("\n"));
    let bodies = s.bodies();
    assert_eq!(bodies.len(), 2 * QUESTIONS.len());
    for b in &bodies {
        let msgs = b["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{b}");
        assert_eq!(msgs[0]["role"], "system");
        let system = msgs[0]["content"].as_str().unwrap();
        assert!(
            system == format!("You are a support assistant.\n\n{block}") || system == block,
            "unexpected system message: {system}"
        );
    }
    assert!(block.contains("\n- Never write \"I apologize for the inconvenience\"."), "{block}");
    assert!(!block.contains("numbered"), "{block}");

    // Mechanical rules rewrite the answers; the raw answer is kept.
    let answers = show(&p, "answers");
    let got: Vec<(&str, &str, Vec<&str>)> = answers
        .iter()
        .map(|a| {
            let applied = a["rules_applied"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
            (a["raw_output"].as_str().unwrap(), a["output"].as_str().unwrap(), applied)
        })
        .collect();
    assert_eq!(got[0].1, "Your order ships Monday.");
    assert_eq!(got[0].2, ["avoid:i apologize for the inconvenience"], "its `!` went with the phrase");
    assert_eq!(got[1].1, "- Pack the item\n- Print the label\n- Drop it off");
    assert_eq!(got[1].2, ["format:bullets"]);
    assert_eq!(got[2].1, "I rate it 4/5.");
    assert_eq!(got[2].2, ["tone:avoid:exclamation", "rating_scale:5"]);
    assert_eq!(got[3].1, "We ship every weekday from two warehouses.", "cut at a sentence end");
    assert_eq!(got[3].2, ["max_words"]);
    assert_eq!(got[4].1, got[4].0, "a JSON answer is left as it is");
    assert!(got[4].2.is_empty());
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(
            a["raw_output"].as_str().unwrap(),
            reply(&json!({"messages": [{"role": "user", "content": QUESTIONS[i]}]}))
        );
    }

    // The hook turns the raw answers into the same text.
    let hook = run_file(&p, "rules", "generated_prompt_hook.py");
    if let Some(py) = python() {
        let raws: Vec<&str> = got.iter().map(|g| g.0).collect();
        let v = run_hook(py, &hook, "hi", &raws);
        for (i, g) in got.iter().enumerate() {
            assert_eq!(v["outputs"][i], json!([g.1, g.2]), "the hook and `run` differ on answer {i}");
        }
    }

    // A second run reuses everything and asks nothing.
    s.reset_counters();
    let (m, _) = go(&p);
    assert!(statuses(&m).iter().all(|(_, st)| st == "cached"), "{:?}", statuses(&m));
    assert_eq!(s.requests(), 0);

    // New feedback changes the rules: the rules' content is part of the run
    // nodes' keys, so they run again with the new rules.
    let pairs: String =
        fixture("pairs.jsonl").lines().filter(|l| !l.contains("\"fb-05\"")).map(|l| format!("{l}\n")).collect();
    p.write("specs/data/pairs.jsonl", &pairs);
    let (m, _) = go(&p);
    assert_eq!(node(&m, "rules")["status"], "ran");
    assert_eq!(node(&m, "answers")["status"], "ran");
    assert_eq!(node(&m, "questions")["status"], "cached");
    let answers = show(&p, "answers");
    assert_eq!(answers[2]["output"], "I rate it 8/10.", "one pair is too few for a rating scale rule");
    assert!(s.bodies().iter().all(|b| !b.to_string().contains("scale of 5")));
}

#[test]
fn rules_must_name_a_synthesize_node() {
    let p = Project::empty();
    p.write("specs/data/q.jsonl", "{\"id\": \"1\", \"question\": \"hi\"}\n");
    p.write(
        "specs/bad.yaml",
        "flow: 1
name: bad
backends:
  bot: {provider: sim}
nodes:
  questions: {kind: load, path: data/q.jsonl}
  answers:
    kind: run
    input: questions
    backend: bot
    prompt: \"{{question}}\"
    rules: questions
",
    );
    let r = p.flow(&["validate", "specs/bad.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("`rules` of node `answers` names `questions`, a `load` node; it must name a `synthesize` node"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("bad.yaml:12:"), "{}", r.stderr);
    assert!(r.stderr.contains("hint: `rules:` applies the rules a `kind: synthesize` node induced"), "{}", r.stderr);
    assert!(!p.path("specs/.flow").exists());
}

#[test]
fn validate_checks_the_pairs_and_the_thresholds() {
    let p = Project::empty();
    p.write("specs/data/fb.jsonl", "{\"id\": \"1\", \"bad_output\": \"x\", \"fixed\": \"y\"}\n");
    p.write(
        "specs/bad.yaml",
        "flow: 1
name: bad
nodes:
  feedback: {kind: load, path: data/fb.jsonl}
  rules:
    kind: synthesize
    input: feedback
    min_support: 0
    enforce: [avoid, include]
",
    );
    let r = p.flow(&["validate", "specs/bad.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("reads field `fixed_output`, which records from `feedback`"), "{}", r.stderr);
    assert!(r.stderr.contains("`min_support` must be at least 1"), "{}", r.stderr);
    assert!(r.stderr.contains("`include` rules cannot be enforced on an output"), "{}", r.stderr);
}

/// The shipped demo feedback, reworded by `sim`, applied to `sim` answers:
/// the openers the feedback struck out ("In short", "Simply put",
/// "Briefly") are gone from the answers.
#[test]
fn demo_feedback_rewords_on_sim_and_cleans_sim_answers() {
    let p = Project::empty();
    p.write("specs/data/feedback.jsonl", &std::fs::read_to_string(repo().join("specs/data/feedback.jsonl")).unwrap());
    let questions: String = [
        "Where is my order?",
        "How do I reset my password?",
        "Can I pay by invoice?",
        "Do you ship to Norway?",
        "Is there a student discount?",
        "How do I delete my account?",
        "Can I change my order?",
        "Where do I find my receipt?",
    ]
    .iter()
    .enumerate()
    .map(|(i, q)| format!("{}\n", json!({"id": format!("q{i}"), "question": q})))
    .collect();
    p.write("specs/data/questions.jsonl", &questions);
    p.write(
        "specs/demo.yaml",
        "flow: 1
name: demo
backends:
  bot: {provider: sim, model: gpt-4o-mini, temperature: 0}
nodes:
  feedback: {kind: load, path: data/feedback.jsonl}
  rules: {kind: synthesize, input: feedback, backend: bot}
  questions: {kind: load, path: data/questions.jsonl}
  answers:
    kind: run
    input: questions
    backend: bot
    prompt: \"{{question}}\"
    rules: rules
",
    );
    let m = p.run_ok(&["specs/demo.yaml"]);
    let rules = show(&p, "rules");
    let active: Vec<&Value> = rules.iter().filter(|r| r["active"] == true).collect();
    for id in [
        "avoid:in short",
        "avoid:simply put",
        "avoid:briefly",
        "avoid:great question",
        "rating_scale:5",
        "format:bullets",
    ] {
        assert_eq!(rule(&rules, id)["active"], true, "{id}");
    }
    for r in &active {
        let text = r["text"].as_str().unwrap();
        assert!(text.ends_with("feedback pairs show."), "sim rewords every rule: {text}");
        assert_eq!(r["reworded"], true);
        assert!(text.starts_with(r["induced_text"].as_str().unwrap().trim_end_matches('.')), "{text}");
    }
    let meta = &node(&m, "rules")["meta"];
    assert_eq!(meta["reworded"], active.len());
    assert_eq!(node(&m, "rules")["calls"]["requests"], 1);

    let answers = show(&p, "answers");
    let openers = ["In short", "Simply put", "Briefly"];
    let struck =
        answers.iter().filter(|a| openers.iter().any(|o| a["raw_output"].as_str().unwrap().starts_with(o))).count();
    assert!(struck > 0, "no sim answer opened with a struck opener: pick other questions");
    for a in &answers {
        let out = a["output"].as_str().unwrap();
        assert!(!openers.iter().any(|o| out.contains(o)), "{out}");
        assert!(out.chars().next().unwrap().is_uppercase(), "{out}");
    }

    // A second run: the rewording is memoized and every node cached.
    let m = p.run_ok(&["specs/demo.yaml"]);
    assert!(statuses(&m).iter().all(|(_, st)| st == "cached"), "{:?}", statuses(&m));
}
