//! `kind: query` against a real Postgres with pgvector (see
//! `tests/support/postgres.rs`): rows streamed with their vectors, the
//! fingerprint in the key (a new row re-runs the node, no change replays
//! it), the password in no file or output, and bad settings located; and
//! a Weaviate collection read page by page through a local server that
//! speaks its REST API.

use serde_json::Value;

use crate::common::{node, run_in_env, Project};
use crate::postgres::Postgres;
use crate::weaviate::Weaviate;

const PASSWORD: &str = "pw-Zq81-never-stored";

const SPEC: &str = "flow: 1
name: logs
nodes:
  logs:
    kind: query
    postgres:
      url_env: DATABASE_URL
      query: select id, input, output, status, latency_ms, meta, embedding from logs order by id
      fingerprint: select count(*), max(updated_at) from logs
      fetch: 2
  scores:
    kind: evaluate
    input: logs
    metrics:
      - {type: contains, value: refund}
";

fn setup(pg: &Postgres) {
    pg.sql(
        "create extension if not exists vector;
         create table logs (id text primary key, input text, output text, status text, latency_ms int,
                            meta jsonb, embedding vector(3), updated_at timestamptz not null default now());
         insert into logs (id, input, output, status, latency_ms, meta, embedding) values
           ('a', 'where is my refund?', 'Your refund was sent.', 'success', 120, '{\"lang\": \"en\"}', '[1,0,0]'),
           ('b', 'reset password', 'Use the reset link.', 'success', 80, null, '[0,1,0]'),
           ('c', 'refund again', 'No refund is due.', 'failure', 300, '{\"lang\": \"en\"}', '[0.5,0.5,0.25]'),
           ('d', 'hello', 'Hi!', 'success', 5, null, '[0,0,1]'),
           ('e', 'cancel order', 'Cancelled; a refund follows.', 'success', 95, null, '[0.1,0.2,0.3]');",
    );
}

fn records(p: &Project, url: &str, name: &str) -> Vec<Value> {
    let r = run_in_env(p.dir.path(), &["show", name, "--spec", "specs/logs.yaml"], &[("DATABASE_URL", url)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn rows_stream_with_vectors_and_the_fingerprint_keys_the_node() {
    let Some(pg) = Postgres::start(PASSWORD) else { return };
    setup(&pg);
    let p = Project::empty();
    p.write("specs/logs.yaml", SPEC);
    let url = pg.url();
    let env = [("DATABASE_URL", url.as_str())];
    let run = |args: &[&str]| run_in_env(p.dir.path(), args, &env);

    let r = run(&["run", "specs/logs.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let rows = records(&p, &url, "logs");
    assert_eq!(rows.len(), 5, "read 2 at a time through the cursor, all of them");
    let a = &rows[0];
    assert_eq!(
        (a["id"].as_str(), a["latency_ms"].as_i64(), a["meta"]["lang"].as_str()),
        (Some("a"), Some(120), Some("en")),
        "{a}"
    );
    assert_eq!(a["embedding"], serde_json::json!([1.0, 0.0, 0.0]), "a pgvector column is an array of numbers");
    assert_eq!(rows[2]["embedding"], serde_json::json!([0.5, 0.5, 0.25]));
    assert!(rows[1]["meta"].is_null());
    let scored = records(&p, &url, "scores");
    let passed: Vec<&str> = scored.iter().filter(|r| r["pass"] == true).map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(passed, ["a", "c", "e"]);

    // The same rows: everything replayed.
    let plan = run(&["plan", "specs/logs.yaml"]);
    assert!(plan.stdout.contains("cached"), "{}", plan.stdout);
    let r = run(&["run", "specs/logs.yaml", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let m = p.latest_run("specs/.flow");
    assert_eq!(node(&m, "logs")["status"], "cached", "{m}");

    // A new row changes the fingerprint: the plan says so, the run reads it.
    pg.sql("insert into logs (id, input, output, status, latency_ms, embedding) values ('f', 'refund?', 'A refund is on its way.', 'success', 50, '[1,1,1]')");
    let plan = run(&["plan", "specs/logs.yaml"]);
    assert!(plan.stdout.contains("postgres: select count(*), max(updated_at) from logs"), "{}", plan.stdout);
    let r = run(&["run", "specs/logs.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(records(&p, &url, "logs").len(), 6);

    // The password is in the environment only.
    for out in [&r.stdout, &r.stderr, &plan.stdout] {
        assert!(!out.contains(PASSWORD));
    }
    for entry in walk(p.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(PASSWORD), "the password is in {}", entry.display());
    }
}

#[test]
fn bad_connections_and_queries_are_located_errors() {
    let Some(pg) = Postgres::start(PASSWORD) else { return };
    setup(&pg);
    let p = Project::empty();
    p.write("specs/logs.yaml", SPEC);
    let url = pg.url();
    let check = |spec: &str, env: &[(&str, &str)], want: &[&str]| {
        p.write("specs/logs.yaml", spec);
        let r = run_in_env(p.dir.path(), &["run", "specs/logs.yaml"], env);
        assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
        for w in want {
            assert!(r.stderr.contains(w), "wanted `{w}` in:\n{}", r.stderr);
        }
        assert!(!r.stderr.contains(PASSWORD), "{}", r.stderr);
        assert!(!p.path("specs/.flow/runs").exists(), "nothing is written");
    };
    check(
        SPEC,
        &[],
        &[
            "logs.yaml:7:16",
            "the environment variable `DATABASE_URL` (the Postgres URL) is not set",
            "export DATABASE_URL=postgres://",
        ],
    );
    check(
        &SPEC.replace("url_env: DATABASE_URL", "url_env: postgres://flow:x@localhost/db"),
        &[],
        &["names an environment variable, not the URL itself"],
    );
    let wrong = url.replace(PASSWORD, "wrong-password");
    check(SPEC, &[("DATABASE_URL", &wrong)], &["cannot connect to Postgres", "password authentication failed"]);
    let env = [("DATABASE_URL", url.as_str())];
    check(
        &SPEC.replace("from logs order by id", "from log order by id"),
        &env,
        &["logs.yaml:8:14", "relation \"log\" does not exist"],
    );
    check(
        &SPEC.replace("max(updated_at)", "max(updated)"),
        &env,
        &["logs.yaml:9:20", "the fingerprint query failed", "column \"updated\" does not exist"],
    );
    // A field the rows lack is caught before anything runs.
    check(&SPEC.replace("value: refund", "value: \"{{answer}}\""), &env, &["answer"]);
}

const WEAVIATE_KEY: &str = "wv-key-8812-never-stored";

#[test]
fn a_weaviate_collection_is_read_with_its_vectors_page_by_page() {
    let w = Weaviate::start("ExecutionLog", &["input", "output", "status", "function"], Some(WEAVIATE_KEY));
    for i in 0..7 {
        let id = format!("00000000-0000-0000-0000-{i:012}");
        let status = if i % 3 == 0 { "failure" } else { "success" };
        w.add(&id, serde_json::json!({"input": format!("q{i}"), "output": format!("a{i}"), "status": status, "function": "answer"}), &[i as f64, 1.0, 0.5]);
    }
    let p = Project::empty();
    let spec = format!(
        "flow: 1\nname: wv\nnodes:\n  logs:\n    kind: query\n    weaviate:\n      url: {}\n      api_key_env: WEAVIATE_API_KEY\n      class: ExecutionLog\n      properties: [input, output, status]\n      page: 3\n  ok:\n    kind: evaluate\n    input: logs\n    metrics:\n      - {{type: exact_match, field: status, expected: success}}\n",
        w.url
    );
    p.write("specs/wv.yaml", &spec);
    let env = [("WEAVIATE_API_KEY", WEAVIATE_KEY)];
    let run = |args: &[&str]| run_in_env(p.dir.path(), args, &env);
    let r = run(&["run", "specs/wv.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(w.pages(), 4, "7 objects, 3 a page: 3 pages and an empty one");
    let show = run(&["show", "logs", "--spec", "specs/wv.yaml"]);
    let rows: Vec<Value> = show.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[2]["id"], "00000000-0000-0000-0000-000000000002");
    assert_eq!(rows[2]["embedding"], serde_json::json!([2.0, 1.0, 0.5]));
    assert_eq!(
        (rows[2]["input"].as_str(), rows[2].get("function")),
        (Some("q2"), None),
        "only the properties asked for"
    );
    // Unchanged: replayed without a page read; one more object: read again.
    run(&["run", "specs/wv.yaml"]);
    assert_eq!(w.pages(), 4);
    w.add(
        "00000000-0000-0000-0000-000000000099",
        serde_json::json!({"input": "q99", "output": "a99", "status": "success"}),
        &[9.0, 9.0, 9.0],
    );
    let plan = run(&["plan", "specs/wv.yaml"]);
    assert!(plan.stdout.contains("weaviate: the object count of ExecutionLog"), "{}", plan.stdout);
    let r = run(&["run", "specs/wv.yaml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(run(&["show", "logs", "--spec", "specs/wv.yaml"]).stdout.lines().count(), 8);
    for entry in walk(p.dir.path()) {
        assert!(
            !String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).contains(WEAVIATE_KEY),
            "the key is in {}",
            entry.display()
        );
    }
    // Without the key, a wrong collection, a property it lacks: located errors.
    let r = run_in_env(p.dir.path(), &["run", "specs/wv.yaml"], &[("WEAVIATE_API_KEY", "wrong")]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("401") && r.stderr.contains("anonymous access not enabled"), "{}", r.stderr);
    p.write("specs/wv.yaml", &spec.replace("class: ExecutionLog", "class: ExecutionLogs"));
    let r = run(&["run", "specs/wv.yaml"]);
    assert!(
        r.code == 2 && r.stderr.contains("wv.yaml:9:14") && r.stderr.contains("class \"ExecutionLogs\" not found"),
        "{}",
        r.stderr
    );
    p.write("specs/wv.yaml", &spec.replace("[input, output, status]", "[input, outptu, status]"));
    let r = run(&["run", "specs/wv.yaml"]);
    assert!(
        r.code == 2
            && r.stderr.contains("`ExecutionLog` has no property `outptu`")
            && r.stderr.contains("did you mean `output`?"),
        "{}",
        r.stderr
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
