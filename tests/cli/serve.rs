//! `flow view --serve`: the real server process, asked over a real socket
//! (raw HTTP/1.1, so no client normalizes a path), and in a headless
//! Chromium: a page opened before a slow run starts follows it live from
//! the run's event log and ends at the run's final figures without a
//! reload. Screenshots go to `target/report-test/serve-*`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use crate::common::{Project, FLOW};

/// A `flow view --serve --port 0` in a project, stopped when dropped.
pub(crate) struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Served {
    /// Starts the server on workspace `specs/.flow` of `p` (which may not
    /// exist yet) and reads the URL it prints.
    pub(crate) fn start(p: &Project, extra: &[&str]) -> Served {
        let mut child = Command::new(FLOW)
            .args(["view", "--serve", "--port", "0", "--no-open", "--workspace", "specs/.flow"])
            .args(extra)
            .current_dir(p.dir.path())
            .env_remove("FLOW_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flow view --serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("serving ").map(str::to_string) else {
            let _ = child.kill();
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("the server said {line:?}:\n{err}");
        };
        let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        Served { child, url, addr }
    }

    /// `GET path` with `Host: host` (default: the server's address): the
    /// status and the body.
    pub(crate) fn get(&self, path: &str, host: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        let host = host.unwrap_or(&self.addr);
        write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A spec of `cases` questions answered by the offline backend 200 ms per
/// call, two at a time: a run that lasts long enough to watch.
pub(crate) fn slow_project(cases: usize) -> Project {
    let p = Project::empty();
    let rows: String = (0..cases)
        .map(|i| format!("{{\"id\": \"c{i:02}\", \"question\": \"what is {i} + 1?\", \"expected\": \"{}\"}}\n", i + 1))
        .collect();
    p.write("specs/data/cases.jsonl", &rows);
    p.write(
        "specs/slow.yaml",
        "flow: 1\nname: slow\nbackends:\n  bot: {provider: sim, model: m1, max_concurrency: 2, sim: {latency: 200ms}}\n\
         nodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  \
         answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n  \
         scores: {kind: evaluate, input: answers, metrics: [{type: contains, value: \"{{expected}}\"}]}\n",
    );
    p
}

#[test]
fn it_serves_its_routes_only_and_to_its_own_name() {
    let p = Project::demo();
    let m = p.run_ok(&["specs/demo.yaml"]);
    let id = m["run_id"].as_str().unwrap();
    let s = Served::start(&p, &[]);
    assert!(s.url.starts_with("http://127.0.0.1:"), "loopback by default: {}", s.url);

    let (status, index) = s.get("/", None);
    assert_eq!(status, 200);
    assert!(index.contains("connect-src 'self';") && index.contains("default-src 'none'"), "the CSP");
    assert!(index.contains("new EventSource("), "the served index follows runs");
    let (status, report) = s.get(&format!("/runs/{id}/report.html"), None);
    assert_eq!(status, 200);
    assert!(report.contains("connect-src 'self';") && report.contains("\"run_id\":\"") && report.contains(id));
    let (status, data) = s.get(&format!("/runs/{id}/data.json"), None);
    assert_eq!(status, 200);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["run"]["run_id"], id);
    let (status, compare) = s.get(&format!("/compare/{id}/{id}"), None);
    assert_eq!(status, 200, "{compare}");

    // Files of the workspace that are not pages, files outside it, and a
    // run id that is a path: nothing.
    p.write("secret.txt", "the project's secret");
    for path in [
        "/secret.txt",
        "/../secret.txt",
        "/runs/../../secret.txt",
        "/runs/..%2F..%2Fsecret.txt/report.html",
        "/runs/%2e%2e/report.html",
        "/runs/../report.html",
        &format!("/runs/{id}/manifest.json"),
        &format!("/runs/{id}/../../../secret.txt"),
        &format!("/runs/{id}/events.jsonl"),
        "/memo.sqlite",
        "/index.html/../../secret.txt",
        "/compare/..%2F../x",
        "//etc/passwd",
    ] {
        let (status, body) = s.get(path, None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!body.contains("secret") && !body.contains("root:"), "{path}: {body}");
    }
    // A page that reaches it by another name (DNS rebinding) is refused.
    let (status, _) = s.get("/", Some("attacker.example"));
    assert_eq!(status, 421);
    let (status, _) = s.get("/", Some(&s.addr.replace("127.0.0.1", "localhost")));
    assert_eq!(status, 200);
}

#[test]
fn a_host_that_is_not_an_address_is_refused_and_help_says_the_default() {
    let p = Project::demo();
    let r = p.flow(&["view", "--serve", "--host", "example.com", "--workspace", "specs/.flow"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--host `example.com` is not an IP address"), "{}", r.stderr);
    let r = p.flow(&["view", "--port", "0"]);
    assert_eq!(r.code, 2, "--port needs --serve: {}", r.stderr);
    let help = p.flow(&["view", "--help"]);
    assert!(help.stdout.contains("127.0.0.1: this machine only") && help.stdout.contains("0.0.0.0"), "{}", help.stdout);
}

#[cfg(target_os = "linux")]
mod in_chromium {
    use std::collections::BTreeSet;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::{slow_project, Served};
    use crate::browser::Browser;
    use crate::common::{node, Project, FLOW};
    use crate::report::in_chromium::{browser_or_skip, out_dir, PAYLOADS};

    /// Starts `flow run` in the background.
    fn start_run(p: &Project, args: &[&str]) -> std::process::Child {
        Command::new(FLOW)
            .arg("run")
            .args(args)
            .current_dir(p.dir.path())
            .env_remove("FLOW_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flow run starts")
    }

    /// The strip's rows of run `id`: node -> (status, done, total).
    const STRIP: &str = "((id) => { const r = document.querySelector(`.live-run[data-run=\"${id}\"]`);
        const pill = r && r.querySelector('.live-head .pill');
        if (!pill) return null;
        return {status: pill.textContent,
                nodes: Object.fromEntries([...r.querySelectorAll('tr.live-node')].map(tr =>
                  [tr.dataset.node, [tr.dataset.status, Number(tr.dataset.done), tr.dataset.total === '' ? null : Number(tr.dataset.total)]]))}; })";

    /// Samples the strip of run `id` until it says the run ended: the
    /// `answers` counts seen on the way, and the strip at the end.
    fn follow(b: &mut Browser, id: &str) -> (Vec<u64>, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let strip = b.eval(&format!("{STRIP}({})", json!(id)));
            if let Some(done) = strip["nodes"]["answers"][1].as_u64() {
                if seen.last() != Some(&done) {
                    seen.push(done);
                }
            }
            if !strip.is_null() && strip["status"] != "running" {
                return (seen, strip);
            }
            assert!(Instant::now() < deadline, "the run did not end on the page: {strip}");
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// The id of the one run in the strip, once it shows.
    fn live_run(b: &mut Browser, not: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ids = b.eval("[...document.querySelectorAll('.live-run')].map(r => r.dataset.run)");
            if let Some(id) = ids.as_array().unwrap().iter().filter_map(|v| v.as_str()).find(|i| !not.contains(i)) {
                return id.to_string();
            }
            assert!(Instant::now() < deadline, "no run showed in the strip");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_final(strip: &Value, m: &Value) {
        assert_eq!(strip["status"], "succeeded", "{strip}");
        for n in m["nodes"].as_array().unwrap() {
            let name = n["name"].as_str().unwrap();
            let shown = &strip["nodes"][name];
            assert_eq!(shown[0], n["status"], "{name}: {strip}");
            assert_eq!(shown[1], n["records_out"], "{name} ends at its count: {strip}");
        }
    }

    #[test]
    fn a_served_page_follows_a_run_live_and_ends_at_its_final_figures() {
        let Some(bin) = browser_or_skip("a_served_page_follows_a_run_live_and_ends_at_its_final_figures") else {
            return;
        };
        const CASES: u64 = 40;
        let p = slow_project(CASES as usize);
        let s = Served::start(&p, &[]);
        let out = out_dir("serve-live");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        // The index, opened before anything ran.
        b.open(&s.url, 1400, 1000);
        assert_eq!(b.eval("document.querySelectorAll('tr.ix-run').length"), 0);
        b.eval("window.__stayed = 1");

        let mut run = start_run(&p, &["specs/slow.yaml"]);
        let id = live_run(&mut b, &[]);
        let (seen, strip) = follow(&mut b, &id);
        let status = run.wait().unwrap();
        assert!(status.success(), "the run failed");
        b.screenshot(&out.join("index-final.png"));
        let m = p.latest_run("specs/.flow");
        assert_eq!(m["run_id"], id.as_str());
        eprintln!("the index saw `answers` at {seen:?}");
        let rising: BTreeSet<u64> = seen.iter().copied().filter(|&d| d > 0 && d < CASES).collect();
        assert!(rising.len() >= 2, "the counts rose while it ran: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "they only rise: {seen:?}");
        assert_final(&strip, &m);
        // The index drew itself again: the run is listed with its figures,
        // and the page was not reloaded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let row = loop {
            let row = b.eval(&format!(
                "(() => {{ const tr = document.querySelector('tr.ix-run[data-run=\"{id}\"]'); return tr && tr.innerText; }})()"
            ));
            if row.as_str().is_some_and(|t| t.contains("succeeded")) || Instant::now() > deadline {
                break row;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let row = row.as_str().unwrap_or_else(|| panic!("the run is not listed: {row}"));
        assert!(row.contains("succeeded") && row.contains(&format!("/{CASES})")), "{row}");
        assert_eq!(b.eval("window.__stayed"), 1, "the page was reloaded");

        // The report of a run going, opened from the strip: it follows the
        // run, then draws the final report in place.
        let mut run = start_run(&p, &["specs/slow.yaml", "--no-cache"]);
        let second = live_run(&mut b, &[id.as_str()]);
        b.open(&format!("{}runs/{second}/report.html", s.url), 1400, 1000);
        b.eval("window.__stayed = 2");
        let head = b.eval("document.querySelector('#top .pill').textContent");
        assert_eq!(head, "running", "the report of a run going");
        std::thread::sleep(Duration::from_millis(300));
        b.screenshot(&out.join("report-live.png"));
        let (seen, strip) = follow(&mut b, &second);
        assert!(run.wait().unwrap().success());
        let m = p.latest_run("specs/.flow");
        eprintln!("the report saw `answers` at {seen:?}");
        assert!(seen.iter().filter(|&&d| d > 0 && d < CASES).count() >= 2, "the counts rose: {seen:?}");
        assert_final(&strip, &m);
        let deadline = Instant::now() + Duration::from_secs(10);
        let drawn = loop {
            let drawn = b.eval(
                "({status: flowReport.data.run.status, tabs: [...document.querySelectorAll('#tabs button')].map(b => b.dataset.tab),
                  head: document.querySelector('#top .pill').textContent, stayed: window.__stayed})",
            );
            if drawn["status"] == "succeeded" || Instant::now() > deadline {
                break drawn;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(drawn["status"], "succeeded", "the final report was drawn: {drawn}");
        assert_eq!(drawn["head"], "succeeded");
        assert_eq!(drawn["stayed"], 2, "without a reload");
        assert_eq!(drawn["tabs"], json!(["pipeline", "node:cases", "node:answers", "node:scores"]));
        let rows = b.eval("flowReport.show('answers').panel.querySelectorAll('tr.rt-row').length");
        assert_eq!(rows, 40, "the answers, every one: {}", node(&m, "answers"));
        b.eval("flowReport.show('pipeline')");
        b.screenshot(&out.join("report-final.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        let origin = s.url.trim_end_matches('/');
        for r in b.requests() {
            assert!(r == "about:blank" || r.starts_with(origin), "a request outside the server: {r}");
        }
    }

    /// A batch's news shows in the strip while the run waits on it.
    #[test]
    fn a_served_page_shows_a_runs_batch_news() {
        let Some(bin) = browser_or_skip("a_served_page_shows_a_runs_batch_news") else { return };
        let p = Project::empty();
        let cases: String = (0..5)
            .map(|i| json!({"id": format!("c{i}"), "question": format!("what is {i}+1?")}).to_string() + "\n")
            .collect();
        p.write("specs/data/cases.jsonl", &cases);
        p.write(
            "specs/batch.yaml",
            "flow: 1\nname: b\nbackends:\n  bot: {provider: sim, batch: {poll: 1s}}\nnodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  \
             answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n",
        );
        let s = Served::start(&p, &[]);
        let out = out_dir("serve-batch");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        b.open(&s.url, 1400, 1000);
        let mut run = start_run(&p, &["specs/batch.yaml"]);
        let id = live_run(&mut b, &[]);
        let notes = format!(
            "[...document.querySelectorAll(`.live-run[data-run=\"${{{}}}\"] .live-note`)].map(li => li.textContent)",
            json!(id)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = b.eval(&notes);
            let texts: Vec<&str> = shown.as_array().unwrap().iter().filter_map(Value::as_str).collect();
            if texts
                .iter()
                .any(|t| t.starts_with("backend `bot`: batch batch_sim_") && t.contains("created with 5 requests"))
            {
                break;
            }
            assert!(Instant::now() < deadline, "no batch news in the strip: {texts:?}");
            std::thread::sleep(Duration::from_millis(30));
        }
        b.screenshot(&out.join("batch-news.png"));
        assert!(run.wait().unwrap().success());
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }

    #[test]
    fn model_output_arriving_live_stays_text() {
        let Some(bin) = browser_or_skip("model_output_arriving_live_stays_text") else { return };
        let server = crate::llm_server::LlmServer::start(crate::llm_server::ServerConfig {
            latency: Duration::from_millis(150),
            ..Default::default()
        });
        let p = Project::empty();
        let cases: String =
            PAYLOADS.iter().map(|(id, q)| json!({"id": id, "question": q}).to_string() + "\n").collect();
        p.write("specs/data/cases.jsonl", &cases);
        p.write(
            "specs/xss.yaml",
            &format!(
                "flow: 1\nname: xss\nbackends:\n  bot: {{provider: openai, base_url: {}, model: m, api_key_env: FLOW_TEST_KEY, \
                 max_concurrency: 1}}\nnodes:\n  cases: {{kind: load, path: data/cases.jsonl}}\n  \
                 answers: {{kind: run, input: cases, backend: bot, prompt: \"{{{{question}}}}\"}}\n",
                server.base_url()
            ),
        );
        let s = Served::start(&p, &[]);
        let out = out_dir("serve-xss");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        b.open(&s.url, 1400, 1000);
        let mut run = Command::new(FLOW)
            .args(["run", "specs/xss.yaml"])
            .current_dir(p.dir.path())
            .env("FLOW_TEST_KEY", "sk-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let id = live_run(&mut b, &[]);
        // While it runs: the payloads that have arrived are text.
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.eval("document.querySelectorAll('.live-record[data-node=\"answers\"]').length").as_u64() < Some(2) {
            assert!(Instant::now() < deadline, "no answer arrived live");
            std::thread::sleep(Duration::from_millis(20));
        }
        b.screenshot(&out.join("live.png"));
        assert_eq!(b.eval("typeof window.__pwned"), "undefined", "a payload ran");
        let (_, strip) = follow(&mut b, &id);
        assert!(run.wait().unwrap().success());
        assert_eq!(strip["status"], "succeeded");
        let texts = b.eval(
            "[...document.querySelectorAll('.live-record')].map(li => [li.dataset.node, li.querySelector('.live-record-id').textContent, li.querySelector('.live-record-text').textContent])",
        );
        let texts = texts.as_array().unwrap();
        for (id, payload) in PAYLOADS {
            let answer = texts.iter().find(|t| t[0] == "answers" && t[1] == id);
            let answer = answer.unwrap_or_else(|| panic!("the answer to {id} is not in the strip: {texts:?}"));
            assert!(answer[2].as_str().unwrap().contains(payload), "{id}: {answer}");
        }
        b.screenshot(&out.join("final.png"));
        assert_eq!(b.eval("typeof window.__pwned"), "undefined", "a payload ran");
        assert!(b.eval("document.title").as_str().unwrap().starts_with("flow · runs · "), "the title changed");
        assert_eq!(b.dialogs(), Vec::<String>::new(), "a dialog opened");
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.eval("document.scripts.length"), 2);
        assert_eq!(b.eval("document.querySelectorAll('img, iframe, frame, object, embed, image, svg').length"), 0);
        let handlers = "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length";
        assert_eq!(b.eval(handlers), 0, "an element has an event-handler attribute");
        let origin = s.url.trim_end_matches('/');
        for r in b.requests() {
            assert!(r == "about:blank" || r.starts_with(origin), "a request outside the server: {r}");
        }
    }
}
