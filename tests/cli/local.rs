//! `provider: local` with the real binary: sentence embeddings computed in
//! process with all-MiniLM-L6-v2 (fetched by `scripts/fetch-minilm.sh`,
//! which `.ci/run` runs; the tests that need it skip, saying so, when it
//! is absent). `extract` over 5,000 paraphrased support logs
//! (tests/support/paraphrase_logs.rs) finds one log per intent and the
//! planted rare successes with it, where the `sim` backend's hashed bag of
//! words, on the same logs, does not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::common::{node, repo, Project};
use crate::paraphrase_logs;

/// The model folder, or `None` (and a line saying why) to skip.
fn minilm() -> Option<PathBuf> {
    let dir = repo().join("target/models/all-MiniLM-L6-v2");
    if ["config.json", "tokenizer.json", "model.safetensors"].iter().all(|f| dir.join(f).is_file()) {
        return Some(dir);
    }
    eprintln!("skipped: no model in {} (run scripts/fetch-minilm.sh)", dir.display());
    None
}

/// `steady` per function and `anomaly` over all logs, embedded by backend
/// `embedder`, with `extra` fields on both nodes.
fn spec(embedder: &str, extra: &str) -> String {
    format!(
        "flow: 1\n\
         backends:\n  {embedder}\n\
         params:\n  epsilon: {{type: float, default: 0.45}}\n\
         nodes:\n  \
           logs: {{kind: load, path: data/paraphrases.jsonl}}\n  \
           steady:\n    kind: extract\n    input: logs\n    backend: embedder\n    embed_text: \"{{{{input}}}}\"\n    \
             epsilon: ${{params.epsilon}}\n    top_k: 4\n{extra}  \
           rare:\n    kind: extract\n    input: logs\n    backend: embedder\n    embed_text: \"{{{{input}}}}\"\n    \
             strategy: anomaly\n    group_by: null\n    epsilon: ${{params.epsilon}}\n    top_k: 6\n{extra}"
    )
}

const LOCAL: &str = "specs/local.yaml";
const BOW: &str = "specs/bow.yaml";

fn project(minilm: &std::path::Path) -> Project {
    let p = Project::empty();
    let logs: String = paraphrase_logs::logs().iter().map(|l| l.json() + "\n").collect();
    p.write("specs/data/paraphrases.jsonl", &logs);
    let local = format!("embedder: {{provider: local, model_dir: {}}}", minilm.display());
    p.write(LOCAL, &spec(&local, ""));
    // As many dimensions as MiniLM's, so few words share a bucket.
    p.write(BOW, &spec("embedder: {provider: sim, model: bag-of-words}", "    dimensions: 384\n"));
    p
}

fn show(p: &Project, spec: &str, node: &str) -> Vec<Value> {
    let r = p.flow(&["show", node, "--workspace", "specs/.flow", "--spec", spec]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// What each picked log was generated as (`billing/refund`, `rare/3`).
fn truths(picks: &[Value]) -> Vec<String> {
    let truth: BTreeMap<String, String> = paraphrase_logs::logs().into_iter().map(|l| (l.id, l.truth)).collect();
    picks.iter().map(|e| truth[e["id"].as_str().unwrap()].clone()).collect()
}

/// Whether `steady` took exactly one log of each intent of each function.
fn one_per_intent(steady: &[String]) -> bool {
    let all: BTreeSet<String> = paraphrase_logs::FUNCTIONS
        .iter()
        .flat_map(|(f, intents)| intents.iter().map(move |i| format!("{f}/{}", i.0)))
        .collect();
    steady.len() == all.len() && steady.iter().cloned().collect::<BTreeSet<_>>() == all
}

fn planted() -> BTreeSet<String> {
    paraphrase_logs::rare_successes().into_iter().map(|id| id.replace('-', "/")).collect()
}

#[test]
fn minilm_finds_one_log_per_paraphrase_cluster_and_the_rare_successes_where_bag_of_words_does_not() {
    let Some(model) = minilm() else { return };
    let p = project(&model);
    let started = std::time::Instant::now();
    let m = p.run_ok(&[LOCAL]);
    let took = started.elapsed();
    let steady = truths(&show(&p, LOCAL, "steady"));
    assert!(one_per_intent(&steady), "steady with MiniLM: {steady:?}");
    let rare = truths(&show(&p, LOCAL, "rare"));
    assert_eq!(rare.iter().cloned().collect::<BTreeSet<_>>(), planted(), "anomaly with MiniLM: {rare:?}");
    // Both nodes embed the same texts: each batch is computed once.
    let calls = |m: &Value, n: &str| {
        let c = &node(m, n)["calls"];
        (c["requests"].as_u64().unwrap(), c["memo_hits"].as_u64().unwrap())
    };
    let ((sent, hits), (sent_rare, hits_rare)) = (calls(&m, "steady"), calls(&m, "rare"));
    assert!(sent + sent_rare > 0);
    assert_eq!(sent + sent_rare, hits + hits_rare, "{m}");
    eprintln!("local MiniLM: 5,000 logs embedded and extracted twice in {took:.1?}");

    // Another radius: both nodes run again, every vector from the memo.
    let m = p.run_ok(&[LOCAL, "--set", "epsilon=0.5"]);
    for n in ["steady", "rare"] {
        let (requests, hits) = calls(&m, n);
        assert_eq!((node(&m, n)["status"].as_str(), requests), (Some("ran"), 0), "{n}: {m}");
        assert!(hits > 0, "{n}");
    }
    assert!(one_per_intent(&truths(&show(&p, LOCAL, "steady"))));
    assert_eq!(truths(&show(&p, LOCAL, "rare")).into_iter().collect::<BTreeSet<_>>(), planted());

    // The same logs, the same spec, a bag of words: the clusters it finds
    // are wordings, not meanings, and a common request said once in words
    // of its own is as lonely to it as a rare one.
    p.run_ok(&[BOW]);
    let steady = truths(&show(&p, BOW, "steady"));
    assert!(!one_per_intent(&steady), "bag of words found the intents: {steady:?}");
    let rare = truths(&show(&p, BOW, "rare"));
    assert_ne!(rare.iter().cloned().collect::<BTreeSet<_>>(), planted(), "bag of words found the rare ones: {rare:?}");
    eprintln!("bag of words: steady {steady:?}, anomaly {rare:?}");
}

/// A folder with the three files (not a real model: the spec checks they
/// are there, the run loads them).
fn fake_model(p: &Project, rel: &str) {
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        p.write(&format!("{rel}/{f}"), "{}");
    }
}

#[test]
fn a_local_backend_is_checked_when_the_spec_loads() {
    let p = Project::empty();
    p.write(
        "specs/data/logs.jsonl",
        "{\"id\": \"a\", \"input\": \"hi\", \"output\": \"yo\", \"status\": \"SUCCESS\"}\n",
    );
    let spec = |backend: &str, node: &str| {
        format!(
            "flow: 1\nbackends:\n  mini: {backend}\nnodes:\n  logs: {{kind: load, path: data/logs.jsonl}}\n  {node}\n"
        )
    };
    let extract = "golden: {kind: extract, input: logs, backend: mini}";
    let cases = [
        // No folder: where, and how to get the model.
        (
            spec("{provider: local, model_dir: ../models/none}", extract),
            "backend `mini`: model folder `",
            "x.yaml:3:38",
        ),
        (spec("{provider: local}", extract), "backend `mini` (local) names no `model_dir`", "x.yaml:3:10"),
        (
            spec("{provider: local, model_dir: ../models/half}", extract),
            "half` has no tokenizer.json, model.safetensors",
            "x.yaml:3:38",
        ),
        (
            spec("{provider: openai, model: m, model_dir: ../models/ok}", extract),
            "backend `mini`: `model_dir` is for `provider: local`, not `openai`",
            "x.yaml:3:38",
        ),
        (
            spec("{provider: local, model_dir: ../models/ok, base_url: \"http://x\"}", extract),
            "`base_url` is for a backend reached over HTTP, not `provider: local`",
            "x.yaml:3:52",
        ),
        (spec("{provider: locl, model_dir: ../models/ok}", extract), "did you mean `local`?", "x.yaml:3:20"),
        // Embeddings only: a node that chats on it is refused, located.
        (
            spec(
                "{provider: local, model_dir: ../models/ok}",
                "bot: {kind: run, input: logs, backend: mini, prompt: \"{{input}}\"}",
            ),
            "node `bot` needs a chat model, but backend `mini` is `provider: local`, which computes embeddings only",
            "x.yaml:6:42",
        ),
    ];
    p.write("models/half/config.json", "{}");
    fake_model(&p, "models/ok");
    for (text, expected, at) in cases {
        p.write("specs/x.yaml", &text);
        let r = p.flow(&["validate", "specs/x.yaml"]);
        assert_eq!(r.code, 2, "{text}\n{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(expected), "{text}\nexpected {expected:?} in:\n{}", r.stderr);
        assert!(r.stderr.contains(at), "{text}\nexpected {at} in:\n{}", r.stderr);
        assert!(!p.path("specs/.flow").exists(), "nothing written");
    }
    // The hint names the script that fetches the model.
    p.write("specs/x.yaml", &spec("{provider: local, model_dir: ../models/none}", extract));
    let r = p.flow(&["validate", "specs/x.yaml"]);
    assert!(r.stderr.contains("scripts/fetch-minilm.sh"), "{}", r.stderr);
    // A real folder passes; a model that does not load fails the run, not the check.
    p.write("specs/x.yaml", &spec("{provider: local, model_dir: ../models/ok}", extract));
    assert_eq!(p.flow(&["validate", "specs/x.yaml"]).code, 0);
    let r = p.flow(&["run", "specs/x.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("backend `mini` (local): `") && r.stderr.contains("config.json` is not a BERT config"),
        "{}",
        r.stderr
    );
}

/// The backend's identity, part of every node key and memo key that uses
/// it, follows the model's content: new weights re-run the node, a moved
/// folder does not.
#[test]
fn the_model_files_are_the_backends_identity() {
    let p = Project::empty();
    p.write(
        "specs/data/logs.jsonl",
        "{\"id\": \"a\", \"input\": \"hi\", \"output\": \"yo\", \"status\": \"SUCCESS\"}\n",
    );
    fake_model(&p, "models/a");
    fake_model(&p, "models/b");
    let spec = |dir: &str| {
        format!(
            "flow: 1\nbackends:\n  mini: {{provider: local, model: minilm, model_dir: ../models/{dir}}}\nnodes:\n  \
             logs: {{kind: load, path: data/logs.jsonl}}\n  golden: {{kind: extract, input: logs, backend: mini}}\n"
        )
    };
    let plan = |dir: &str| {
        p.write("specs/x.yaml", &spec(dir));
        let r = p.flow(&["plan", "specs/x.yaml", "--format", "json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let golden = v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "golden").unwrap().clone();
        assert_eq!(golden["key_fields"]["backends"]["backends"]["mini"]["provider"], "local", "{golden}");
        golden["key"].clone()
    };
    // Once `logs` ran, the plan knows `golden`'s key (the fake model fails
    // the run itself).
    p.write("specs/x.yaml", &spec("a"));
    assert_eq!(p.flow(&["run", "specs/x.yaml"]).code, 1);
    let a = plan("a");
    assert!(a.is_string(), "{a}");
    assert_eq!(plan("b"), a, "the same files elsewhere: the same key");
    p.write("models/b/model.safetensors", "other weights");
    assert_ne!(plan("b"), a, "other weights: another key");
}

/// The shipped `specs/self-improve-local.yaml`: the loop on the local
/// model (and `sim` for chat, no chat server here), writing the golden
/// set, the rules and the hook, and the fine-tuning export.
#[test]
fn the_local_self_improvement_spec_closes_the_loop() {
    let Some(model) = minilm() else { return };
    let p = Project::empty();
    for f in [
        "specs/self-improve-local.yaml",
        "specs/data/logs.jsonl",
        "specs/data/feedback.jsonl",
        "specs/data/questions.jsonl",
        "specs/metrics/style.py",
    ] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    let minilm = format!("minilm={}", model.display());
    let r = p.flow(&["run", "specs/self-improve-local.yaml", "--set", &minilm]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("384-dimensional embeddings, 143 embedded"), "{}", r.stdout);
    let m = p.latest_run("specs/.flow");
    let run = format!("specs/.flow/runs/{}", m["run_id"].as_str().unwrap());
    let golden = p.read(&format!("{run}/golden/train.jsonl"));
    assert!(golden.lines().count() >= 10, "{golden}");
    assert!(p.read(&format!("{run}/rules/generated_prompt_hook.py")).contains("def intercept_prompt("));
    let rules: Value = serde_json::from_str(&p.read(&format!("{run}/rules/rules.json"))).unwrap();
    assert!(!rules["rules"].as_array().unwrap().is_empty(), "{rules}");
    assert_eq!(p.read(&format!("{run}/tuned/train.jsonl")), golden, "the export is the golden set");
    assert!(p.read(&format!("{run}/tuned/train_sft.py")).contains("SFTTrainer"));
    assert!(r.stdout.contains("mean vector distance"), "synthesize measured each fix with MiniLM: {}", r.stdout);
    // The models' files are the identity: nothing changed, nothing runs.
    let again = p.run_ok(&["specs/self-improve-local.yaml", "--set", &minilm]);
    assert!(crate::common::statuses(&again).iter().all(|(_, s)| s == "cached"));
}
