//! The user's own application as the system under test: `provider: exec`
//! (a program speaking JSONL, restarted when it dies), `provider: http`
//! (any JSON endpoint: a body template, response paths, `retry_on`, headers
//! from `${env.X}`), the `exec` kind between stages, and the shipped
//! `specs/app.yaml` evaluating the example app both ways, with the app's
//! own HTTP server started here.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app_server::AppServer;
use crate::common::{node, repo, run_in_env, Project};

const TOKEN: &str = "tok-APP-SECRET-7781";

/// Every file under the project's workspace, and the run's output, hold
/// no `TOKEN`.
fn assert_no_token(p: &Project, output: &str) {
    assert!(!output.contains(TOKEN), "the token is in the output:\n{output}");
    let mut stack = vec![p.path("specs/.flow")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                    "the token is in {}",
                    path.display()
                );
            }
        }
    }
}

fn records(p: &Project, node: &str) -> Vec<Value> {
    let r = run_in_env(p.dir.path(), &["show", node, "--spec", "specs/s.yaml"], &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const HTTP_SPEC: &str = "flow: 1
params:
  url: {type: string, default: 'http://127.0.0.1:9/answer'}
backends:
  app:
    provider: http
    url: ${params.url}
    headers: {Authorization: 'Bearer ${env.APP_TOKEN}', X-Tenant: acme}
    body: {question: '{{question}}', lang: '{{meta.lang}}', k: '{{k}}', history: '{{messages}}'}
    output: data.answer
    usage: meta.usage
    cost: meta.cost
    retry_on: [503]
    retry: {max_retries: 3, initial_delay: 10ms, max_delay: 50ms}
    timeout: 10s
    max_concurrency: 1
nodes:
  cases: {kind: load, path: cases.jsonl}
  answers:
    kind: run
    input: cases
    backend: app
    system: Be brief.
    prompt: 'Q: {{question}}'
    max_errors: 5
";

#[test]
fn http_sends_the_rendered_body_and_env_headers_retries_listed_statuses_and_records_usage_and_cost() {
    // Two 503s (listed: retried) for one record, a 500 (not listed: that
    // record fails) for the other.
    let server = AppServer::start(&[("sky", 503), ("sky", 503), ("rust", 500)]);
    let p = Project::empty();
    p.write("specs/s.yaml", HTTP_SPEC);
    p.write(
        "specs/cases.jsonl",
        "{\"id\": \"a\", \"question\": \"why is the sky blue\", \"meta\": {\"lang\": \"en\"}, \"k\": 3}\n{\"id\": \"b\", \"question\": \"what is rust\", \"meta\": {\"lang\": \"de\"}, \"k\": 1}\n",
    );
    let url = format!("url={}", server.url("/answer"));
    let env = [("APP_TOKEN", TOKEN), ("FLOW_LOG", "debug")];
    let r = run_in_env(p.dir.path(), &["run", "specs/s.yaml", "--set", &url], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let seen = server.seen();
    // a: 503, 503, 200; b: 500 (not retried).
    assert_eq!(seen.len(), 4, "{seen:#?}");
    for s in &seen {
        assert_eq!((s.method.as_str(), s.path.as_str()), ("POST", "/answer"));
        assert_eq!(s.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert_eq!(s.header("x-tenant"), Some("acme"));
        assert_eq!(s.header("content-type"), Some("application/json"));
    }
    let sky: Vec<&Value> = seen.iter().map(|s| &s.body).filter(|b| b["lang"] == "en").collect();
    assert_eq!(sky.len(), 3, "two 503s and the answer: {seen:#?}");
    assert!(sky.iter().all(|b| *b == sky[0]), "a retry sends the same body");
    let a = sky[0];
    assert_eq!((a["question"].as_str(), a["k"].as_u64()), (Some("why is the sky blue"), Some(3)));
    assert_eq!(a["history"][0]["content"], "Be brief.");
    assert_eq!(a["history"][1]["content"], "Q: why is the sky blue");
    assert_eq!(seen.iter().filter(|s| s.body["lang"] == "de").count(), 1, "a 500 is not retried");
    let out = records(&p, "answers");
    assert_eq!(out[0]["output"], "echo: why is the sky blue");
    assert_eq!(
        (out[0]["usage"]["prompt_tokens"].as_u64(), out[0]["usage"]["completion_tokens"].as_u64()),
        (Some(5), Some(6))
    );
    assert_eq!(out[0]["cost_usd"], 0.0125);
    assert!(out[1]["error"].as_str().unwrap().contains("HTTP 500"), "{}", out[1]["error"]);
    let m = p.latest_run("specs/.flow");
    let calls = &node(&m, "answers")["calls"];
    assert_eq!((calls["retries"].as_u64(), calls["errors"].as_u64()), (Some(2), Some(1)), "{calls}");
    assert_eq!(calls["cost_usd"], 0.0125);
    assert_no_token(&p, &format!("{}{}", r.stdout, r.stderr));

    // Answered calls are memoized: again, only the failed record is sent.
    let r = run_in_env(p.dir.path(), &["run", "specs/s.yaml", "--set", &url, "--rerun", "answers"], &env);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(server.seen().len(), 5);
    assert_eq!(server.seen()[4].body["question"], "what is rust");
    assert_no_token(&p, &format!("{}{}", r.stdout, r.stderr));

    // Without the variable: a usage error, nothing sent.
    let r = run_in_env(p.dir.path(), &["run", "specs/s.yaml", "--set", &url, "--no-cache"], &[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("environment variable `APP_TOKEN` is not set"), "{}", r.stderr);
    assert_eq!(server.seen().len(), 5);
}

#[test]
fn an_http_spec_is_checked_where_it_is_written() {
    let p = Project::empty();
    p.write("specs/cases.jsonl", "{\"id\": \"a\", \"question\": \"q\"}\n");
    let spec = HTTP_SPEC
        .replace("output: data.answer", "output: 'data[x]'")
        .replace("retry_on: [503]", "retry_on: [503, 700]");
    p.write("specs/s.yaml", &spec);
    let r = p.flow(&["validate", "specs/s.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("s.yaml:10:13") && r.stderr.contains("`data[x]`: `[x]` is not a list index"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("`700` is not an HTTP status"), "{}", r.stderr);
    // A literal key in a header: refused, and not shown.
    p.write("specs/s.yaml", &HTTP_SPEC.replace("X-Tenant: acme", "X-Api-Key: sk-literal-1234"));
    let r = p.flow(&["validate", "specs/s.yaml"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("header `X-Api-Key` of backend `app` would put a key in the spec"), "{}", r.stderr);
    assert!(!r.stderr.contains("sk-literal-1234"), "{}", r.stderr);
    let exec = HTTP_SPEC.replace("    provider: http\n", "    provider: exec\n");
    let exec: String = exec.lines().filter(|l| !l.contains("headers:")).map(|l| format!("{l}\n")).collect();
    p.write("specs/s.yaml", &exec);
    let r = p.flow(&["validate", "specs/s.yaml"]);
    assert!(r.stderr.contains("`url` is for `provider: http`, not `exec`"), "{}", r.stderr);
    assert!(r.stderr.contains("names no `command`"), "{}", r.stderr);
}

const EXEC_SPEC: &str = "flow: 1
backends:
  app:
    provider: exec
    command: [python3, flaky_app.py]
    max_concurrency: 2
    timeout: 20s
    retry: {max_retries: 2, initial_delay: 10ms, max_delay: 50ms}
nodes:
  cases: {kind: load, path: cases.jsonl}
  answers:
    kind: run
    input: cases
    backend: app
    prompt: 'Q: {{question}}'
    max_errors: 5
";

#[test]
fn exec_sends_the_record_and_prompt_restarts_a_program_that_dies_and_keys_on_its_file() {
    let p = Project::empty();
    p.write("specs/s.yaml", EXEC_SPEC);
    p.write("specs/flaky_app.py", &std::fs::read_to_string(repo().join("tests/fixtures/apps/flaky_app.py")).unwrap());
    let cases: String = (0..6)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"question\": \"question number {i}\"{}}}\n",
                if i == 4 { ", \"fail\": true" } else { "" }
            )
        })
        .collect();
    p.write("specs/cases.jsonl", &cases);
    p.write("specs/die_once", "");
    let r = run_in_env(p.dir.path(), &["run", "specs/s.yaml"], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // What the program read: the record and the rendered prompt.
    let log: Vec<Value> = p.read("specs/requests.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first = &log.iter().find(|l| l["request"]["record"]["id"] == "c0").expect("c0 was asked")["request"];
    assert_eq!(first["record"]["question"], "question number 0", "{first}");
    assert_eq!(first["prompt"], "Q: question number 0");
    assert_eq!(first["messages"][0]["role"], "user");
    // One died before answering; its request went again, to a new process.
    assert_eq!(log.len(), 7, "{log:#?}");
    let pids: std::collections::BTreeSet<u64> = log.iter().map(|l| l["pid"].as_u64().unwrap()).collect();
    assert!(pids.len() >= 2 && pids.len() <= 3, "at most two processes at once, one restart: {pids:?}");
    let out = records(&p, "answers");
    assert_eq!(out[0]["output"], "echo: Q: question number 0");
    assert_eq!(out[0]["usage"]["completion_tokens"], 2);
    assert_eq!(out[0]["cost_usd"], 0.002);
    assert_eq!(out[4]["error"].as_str(), Some("`python3 flaky_app.py` answered with an error: cannot answer c4"));
    let m = p.latest_run("specs/.flow");
    let calls = &node(&m, "answers")["calls"];
    assert_eq!((calls["retries"].as_u64(), calls["errors"].as_u64()), (Some(1), Some(1)), "{calls}");
    assert!((calls["cost_usd"].as_f64().unwrap() - 0.01).abs() < 1e-9, "{calls}");

    // Unchanged: cached. The program edited: the node runs again.
    let r = p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(r.code, 0);
    assert_eq!(node(&p.latest_run("specs/.flow"), "answers")["status"], "cached");
    let script = p.read("specs/flaky_app.py");
    p.write("specs/flaky_app.py", &format!("{script}\n# edited\n"));
    let r = p.flow(&["plan", "specs/s.yaml"]);
    assert!(r.stdout.contains("will run"), "{}", r.stdout);
    p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(node(&p.latest_run("specs/.flow"), "answers")["status"], "ran");
}

#[test]
fn the_exec_kind_streams_records_through_a_program_and_names_a_bad_line() {
    let p = Project::empty();
    p.write("specs/cases.jsonl", "{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n{\"id\": \"c\", \"n\": 3}\n");
    p.write(
        "specs/double.py",
        "import json, sys\nfor line in sys.stdin:\n    r = json.loads(line)\n    if r['n'] == int(sys.argv[1]):\n        print('not json')\n    r['double'] = r['n'] * 2\n    print(json.dumps(r))\n",
    );
    let spec = |bad: u32| {
        format!("flow: 1\nnodes:\n  cases: {{kind: load, path: cases.jsonl}}\n  doubled:\n    kind: exec\n    input: cases\n    command: [python3, double.py, '{bad}']\n")
    };
    p.write("specs/s.yaml", &spec(0));
    let r = p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = records(&p, "doubled");
    assert_eq!(out.iter().map(|r| r["double"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 4, 6]);
    // The program is in the key: unchanged, replayed; edited, run again.
    p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(node(&p.latest_run("specs/.flow"), "doubled")["status"], "cached");
    p.write("specs/double.py", &format!("{}# edited\n", p.read("specs/double.py")));
    p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(node(&p.latest_run("specs/.flow"), "doubled")["status"], "ran");
    p.write("specs/s.yaml", &spec(2));
    let r = p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("line 2 of its output is not a JSON object: `not json`"), "{}", r.stderr);
    p.write("specs/s.yaml", &spec(0).replace("double.py", "missing.py"));
    let r = p.flow(&["run", "specs/s.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("exited with exit status: 2"), "{}", r.stderr);
}

/// A free port on 127.0.0.1 (bound, then released for the app to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `app.py --serve PORT`, killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(p: &Project, port: u16) -> Served {
    let child = Command::new("python3")
        .args(["specs/apps/app.py", "--serve", &port.to_string()])
        .current_dir(p.dir.path())
        .env("APP_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "app.py --serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Served(child)
}

#[test]
fn the_app_spec_evaluates_the_example_app_through_exec_and_through_http() {
    let p = Project::empty();
    for f in ["specs/app.yaml", "specs/apps/app.py", "specs/apps/docs.jsonl", "specs/apps/cases.jsonl"] {
        p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
    }
    let cases = p.read("specs/apps/cases.jsonl").lines().count() as u64;
    let check = |m: &Value| {
        let answers = node(m, "answers");
        assert_eq!(answers["calls"]["requests"].as_u64(), Some(cases), "{answers}");
        assert!(answers["calls"]["cost_usd"].as_f64().unwrap() > 0.0, "{answers}");
        assert!(answers["calls"]["prompt_tokens"].as_u64().unwrap() > 0, "{answers}");
        let scores = node(m, "scores");
        assert_eq!(scores["status"], "ran");
    };
    let r = run_in_env(p.dir.path(), &["run", "specs/app.yaml"], &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("| icontains | 1.000 | 100.0% |"), "{}", r.stdout);
    let m = p.latest_run("specs/.flow");
    check(&m);
    assert_eq!(node(&m, "retrieved")["records_out"], cases);

    let port = free_port();
    let _app = serve(&p, port);
    let sets = ["run", "specs/app.yaml", "--set", "backend=app_http", "--set"];
    let port_set = format!("port={port}");
    let mut args = sets.to_vec();
    args.push(&port_set);
    let r = run_in_env(p.dir.path(), &args, &[("APP_TOKEN", TOKEN)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("| icontains | 1.000 | 100.0% |"), "{}", r.stdout);
    let m = p.latest_run("specs/.flow");
    check(&m);
    assert_eq!(node(&m, "retrieved")["status"], "cached");
    assert_no_token(&p, &format!("{}{}", r.stdout, r.stderr));
    // A wrong token: the app answers 401, which is not retried.
    args.push("--no-cache");
    let r = run_in_env(p.dir.path(), &args, &[("APP_TOKEN", "wrong-token")]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("HTTP 401") && r.stderr.contains("bad token"), "{}", r.stderr);
    assert_eq!(node(&p.latest_run("specs/.flow"), "answers")["calls"]["retries"], 0);
}
