//! The HTML report: every `flow run` writes `.flow/runs/<id>/report.html`,
//! `flow view` finds it, and the page itself is checked in a real headless
//! Chromium: model output that is markup stays text, nothing runs that
//! should not, the failure filter is exact, and 10,000 records stay fast.
//! (Past 600 lines: the browser tests share one Chromium session helper
//! and the specs that feed every view, which split files would repeat.)
//!
//! The browser tests need Chromium (`.ci/run` installs Debian's); without
//! it they say so and pass. Screenshots go to `target/report-test/`.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::{Project, Run};

/// A run manifest's report.
pub(crate) fn report_path(p: &Project, manifest: &Value) -> PathBuf {
    p.path("specs/.flow/runs").join(manifest["run_id"].as_str().unwrap()).join("report.html")
}

/// The data a report embeds (its JSON block, as the page reads it).
pub(crate) fn embedded(html: &str) -> Value {
    let start = html.find(r#"<script type="application/json" id="flow-data">"#).expect("the data block");
    let rest = &html[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).expect("the data block is JSON")
}

pub(crate) fn view<'a>(data: &'a Value, node: &str) -> &'a Value {
    data["views"].as_array().unwrap().iter().find(|v| v["node"] == node).unwrap_or_else(|| panic!("no view {node}"))
}

#[test]
fn every_run_writes_a_report_that_flow_view_finds() {
    let p = Project::demo();
    let r = p.flow(&["run", "specs/demo.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    let path = report_path(&p, &m);
    assert!(r.stdout.contains(&format!("report: specs/.flow/runs/{}/report.html", m["run_id"].as_str().unwrap())));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"), "no CSP");
    let data = embedded(&html);
    assert_eq!(data["run"]["status"], "succeeded");
    assert_eq!(data["graph"], true);
    let scores = view(&data, "scores");
    assert_eq!(scores["kind"], "evaluate");
    let rows = scores["rows"].as_array().unwrap();
    assert_eq!(rows.len() as u64, scores["data"]["records"]["total"].as_u64().unwrap());
    assert!(rows.iter().all(|r| r["scores"].is_object()));
    let inputs: Vec<&Value> = data["nodes"].as_array().unwrap().iter().map(|n| &n["inputs"]).collect();
    assert!(inputs.contains(&&json!(["answers"])), "the graph's edges: {inputs:?}");

    // `flow view latest` prints the latest run's report (no display:
    // nothing opens); `flow view` the index of runs.
    let index = flow_no_display(&p, &["view"]);
    assert_eq!(index.code, 0, "{}", index.stderr);
    assert_eq!(
        std::fs::canonicalize(p.dir.path().join(index.stdout.trim())).unwrap(),
        std::fs::canonicalize(p.path("specs/.flow/index.html")).unwrap()
    );
    let latest = flow_no_display(&p, &["view", "latest"]);
    assert_eq!(latest.code, 0, "{}", latest.stderr);
    let printed = p.dir.path().join(latest.stdout.trim());
    assert_eq!(std::fs::canonicalize(printed).unwrap(), std::fs::canonicalize(&path).unwrap());
    let by_id = p.flow(&["view", "--no-open", m["run_id"].as_str().unwrap()]);
    assert_eq!((by_id.code, by_id.stdout.clone()), (0, latest.stdout.clone()));

    // A run from before reports were written gets one, without the graph.
    std::fs::remove_file(&path).unwrap();
    let again = p.flow(&["view", "--no-open", "latest"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(embedded(&std::fs::read_to_string(&path).unwrap())["graph"], false);

    let unknown = p.flow(&["view", "--no-open", "20990101-000000-000-zzzz"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("no run `20990101-000000-000-zzzz`"), "{}", unknown.stderr);
    assert!(unknown.stderr.contains("hint:"), "{}", unknown.stderr);
}

/// `flow` in the project with no display, so `flow view` opens nothing.
pub(crate) fn flow_no_display(p: &Project, args: &[&str]) -> Run {
    let out = std::process::Command::new(crate::common::FLOW)
        .args(args)
        .current_dir(p.dir.path())
        .env_remove("FLOW_LOG")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_failed_run_reports_what_finished() {
    let p = Project::empty();
    p.write("specs/data/a.jsonl", "{\"id\": \"a1\", \"output\": \"x\"}\n{\"id\": \"a2\", \"output\": \"y\"}\n");
    // `broken` fails a second in, when the rest has long finished.
    p.write(
        "specs/broken.yaml",
        "flow: 1\nnodes:\n  answers: {kind: load, path: data/a.jsonl}\n  \
         good:\n    kind: evaluate\n    input: answers\n    metrics: [{type: contains, value: x}]\n  \
         broken:\n    kind: evaluate\n    input: answers\n    metrics:\n      \
         - {type: exec, command: [sh, -c, \"sleep 1; exit 3\"]}\n",
    );
    let r = p.flow(&["run", "specs/broken.yaml"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("report: "), "{}", r.stdout);
    let m = p.latest_run("specs/.flow");
    let data = embedded(&std::fs::read_to_string(report_path(&p, &m)).unwrap());
    assert_eq!(data["run"]["status"], "failed");
    assert!(data["run"]["error"].as_str().unwrap().contains("broken"), "{}", data["run"]);
    let nodes = data["nodes"].as_array().unwrap();
    let status = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap()["status"].clone();
    assert_eq!([status("answers"), status("good"), status("broken")], [json!("ran"), json!("ran"), json!("failed")]);
    let views: Vec<&Value> = data["views"].as_array().unwrap().iter().map(|v| &v["node"]).collect();
    assert_eq!(views, [&json!("answers"), &json!("good")], "a view for what finished, none for the failed node");
    let rows = view(&data, "good")["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["pass"].clone()).collect::<Vec<_>>(), [json!(true), json!(false)]);
}

/// Ctrl-C mid-run: the report shows the run as interrupted, with the node
/// that finished and the one that was stopped.
#[cfg(unix)]
#[test]
fn an_interrupted_run_reports_what_finished() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let p = Project::empty();
    let cases: String =
        (0..2000).map(|i| format!("{{\"id\": \"c{i}\", \"question\": \"what is {i} + 1?\"}}\n")).collect();
    p.write("specs/data/cases.jsonl", &cases);
    p.write(
        "specs/slow.yaml",
        "flow: 1\nname: slow\nbackends:\n  bot: {provider: sim, max_concurrency: 4, sim: {latency: 50ms}}\n\
         nodes:\n  cases: {kind: load, path: data/cases.jsonl}\n  \
         answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}\n",
    );
    let mut child = Command::new(crate::common::FLOW)
        .args(["run", "specs/slow.yaml"])
        .current_dir(p.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Once `cases` has finished, the run is well under way (it takes 25 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.path("specs/.flow/runs").read_dir().is_ok_and(|mut d| {
        d.next().is_some_and(|e| {
            let m = std::fs::read_to_string(e.unwrap().path().join("manifest.json")).unwrap_or_default();
            m.contains("\"name\": \"cases\"")
        })
    }) {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let m = p.latest_run("specs/.flow");
    let data = embedded(&std::fs::read_to_string(report_path(&p, &m)).unwrap());
    assert_eq!(data["run"]["status"], "interrupted");
    let nodes = data["nodes"].as_array().unwrap();
    let status = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap()["status"].clone();
    assert_eq!([status("cases"), status("answers")], [json!("ran"), json!("cancelled")]);
    let views: Vec<&Value> = data["views"].as_array().unwrap().iter().map(|v| &v["node"]).collect();
    assert_eq!(views, [&json!("cases")], "a view for the node that finished only");
}

/// A fresh project with `specs/self-improve.yaml` and its data, run: every
/// barrier stage is in it (extract twice, synthesize, train on the sim).
fn self_improve_run() -> (Project, Value) {
    let p = Project::empty();
    for f in [
        "specs/self-improve.yaml",
        "specs/data/logs.jsonl",
        "specs/data/feedback.jsonl",
        "specs/data/questions.jsonl",
        "specs/metrics/style.py",
    ] {
        p.write(f, &std::fs::read_to_string(crate::common::repo().join(f)).unwrap());
    }
    let r = p.flow(&["run", "specs/self-improve.yaml"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let m = p.latest_run("specs/.flow");
    (p, m)
}

fn ids(items: &Value) -> std::collections::BTreeSet<String> {
    items.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn extract_synthesize_and_train_get_views_of_their_own() {
    let (p, m) = self_improve_run();
    let data = embedded(&std::fs::read_to_string(report_path(&p, &m)).unwrap());
    let mut maps = Vec::new();
    for name in ["golden", "rare"] {
        let v = view(&data, name);
        assert_eq!(v["view"], "extract");
        let map = &v["projection"];
        let points = map["points"].as_array().unwrap();
        assert_eq!(points.len() as u64, v["data"]["meta"]["logs"].as_u64().unwrap(), "a point per distinct log");
        assert_eq!((&map["logs"], &map["sampled"]), (&json!(points.len()), &json!(false)));
        let picked: Vec<Value> = points.iter().filter(|p| !p["picked"].is_null()).cloned().collect();
        assert_eq!(ids(&json!(picked)), ids(&v["rows"]), "the picks are the examples");
        let sum = |k: &str| map["histogram"][k].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>();
        assert_eq!((sum("logs"), sum("picked")), (points.len() as u64, picked.len() as u64));
        // The same file as in the run folder.
        let file: Value = serde_json::from_str(
            &p.read(&format!("specs/.flow/runs/{}/{name}/projection.json", m["run_id"].as_str().unwrap())),
        )
        .unwrap();
        assert_eq!(&file, map);
        maps.push(points.iter().map(|p| (p["id"].clone(), p["x"].clone(), p["y"].clone())).collect::<Vec<_>>());
    }
    assert_eq!(maps[0], maps[1], "the same logs, the same map, whichever node drew it");

    let rules = view(&data, "rules");
    assert_eq!(rules["view"], "synthesize");
    let listed = rules["data"]["report"]["rules"].as_array().unwrap();
    assert_eq!(listed.len() as u64, crate::common::node(&m, "rules")["records_out"].as_u64().unwrap());
    assert!(listed.iter().all(|r| r["support"].as_u64().unwrap() >= 2), "{listed:?}");
    assert!(rules["data"]["hook"]["text"].as_str().unwrap().contains("def intercept_prompt("));

    let tuned = view(&data, "tuned");
    assert_eq!(tuned["view"], "train");
    let job = &tuned["rows"][0];
    assert_eq!(job["status"], "succeeded");
    let losses: Vec<f64> = job["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "metrics")
        .map(|e| e["data"]["train_loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 12, "the sim's steps");
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "the loss falls: {losses:?}");
}

/// In a real browser (Linux: the client places pipes on fixed descriptors).
#[cfg(target_os = "linux")]
pub(crate) mod in_chromium {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    use serde_json::{json, Value};

    use super::{embedded, ids, report_path, self_improve_run, view};
    use crate::browser::{chromium, Browser};
    use crate::common::{node, repo, run_in_env, Project};
    use crate::llm_server::{LlmServer, ServerConfig};

    /// Where a browser test leaves its screenshots and the browser's log.
    pub(crate) fn out_dir(test: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("report-test").join(test);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Chromium, or `None` after saying why the test does not run.
    pub(crate) fn browser_or_skip(test: &str) -> Option<PathBuf> {
        let found = chromium();
        if found.is_none() {
            // CI installs Chromium (.ci/run): there, a missing browser is a failure, not a skip.
            assert!(std::env::var_os("CI").is_none(), "{test}: no Chromium found in CI; .ci/run installs it");
            eprintln!("skipping {test}: no Chromium found (apt-get install chromium, or set FLOW_TEST_CHROMIUM)");
        }
        found
    }

    pub(crate) fn file_url(path: &Path) -> String {
        format!("file://{}", std::fs::canonicalize(path).unwrap().display())
    }

    /// Questions whose echo is markup, one id that is markup; the even ones
    /// fail `strict`.
    pub(crate) const PAYLOADS: [(&str, &str); 6] = [
        ("x-script", "<script>alert(1)</script>"),
        ("x-img", "<img src=x onerror=\"document.title='pwned';window.__pwned=1\">"),
        ("x-close", "</script><script>window.__pwned=2</script>"),
        ("x-comment", "<!--<script>window.__pwned=3//"),
        ("<b>x-id</b>", "what is 2+2? <iframe src=\"javascript:window.__pwned=5\"></iframe>"),
        ("x-svg", "\"><svg onload=\"window.__pwned=4\"></svg>"),
    ];

    /// A project whose `run` node asks a local OpenAI-compatible server (which
    /// echoes) the payloads; `strict` fails every other one, `lenient` none;
    /// `ab` compares the two, so the payload ids flip.
    pub(crate) fn xss_project(url: &str) -> (Project, BTreeSet<String>) {
        let p = Project::empty();
        let mut cases = String::new();
        let mut failing = BTreeSet::new();
        let plain = (0..6).map(|i| (format!("plain-{i}"), format!("what is {i} + {i}?")));
        let all = PAYLOADS.iter().map(|(id, q)| (id.to_string(), q.to_string())).chain(plain);
        for (i, (id, question)) in all.enumerate() {
            let expected = if i % 2 == 0 { "something else".to_string() } else { format!("echo: {question}") };
            if i % 2 == 0 {
                failing.insert(id.clone());
            }
            cases.push_str(&json!({"id": id, "question": question, "expected": expected}).to_string());
            cases.push('\n');
        }
        p.write("specs/data/cases.jsonl", &cases);
        let bot = format!(
            "  bot: {{provider: openai, base_url: {url}, model: test-model, api_key_env: FLOW_TEST_KEY, \
             temperature: 0, max_concurrency: 4, timeout: 10s}}"
        );
        let spec = [
            "flow: 1",
            "name: xss",
            "backends:",
            &bot,
            "nodes:",
            "  cases: {kind: load, path: data/cases.jsonl}",
            "  answers: {kind: run, input: cases, backend: bot, prompt: \"{{question}}\"}",
            "  strict:",
            "    kind: evaluate",
            "    input: answers",
            "    metrics:",
            "      - {type: exact_match, name: correct, expected: \"{{expected}}\"}",
            "      - {type: contains, name: echoed, value: echo}",
            "  lenient:",
            "    kind: evaluate",
            "    input: answers",
            "    metrics: [{type: contains, name: correct, value: echo}]",
            "  ab: {kind: compare, inputs: [strict, lenient], metrics: [correct]}",
        ];
        p.write("specs/xss.yaml", &(spec.join("\n") + "\n"));
        (p, failing)
    }

    /// Asserts that nothing the records carry ran or loaded, and that the page
    /// logged no error.
    pub(crate) fn assert_nothing_ran(b: &mut Browser, report: &str) {
        assert_eq!(b.eval("typeof window.__pwned"), "undefined", "a payload ran");
        assert!(b.eval("document.title").as_str().unwrap().starts_with("flow · xss · "), "the title changed");
        assert_eq!(b.dialogs(), Vec::<String>::new(), "a dialog opened");
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.requests(), vec![report.to_string()], "the page fetched something");
        // Only the report's own two scripts, no element from the data.
        assert_eq!(b.eval("document.scripts.length"), 2);
        assert_eq!(b.eval("document.querySelectorAll('img, iframe, frame, object, embed, image').length"), 0);
        let handlers = "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length";
        assert_eq!(b.eval(handlers), 0, "an element has an event-handler attribute");
    }

    #[test]
    fn the_report_shows_model_output_as_text_in_a_browser() {
        let Some(bin) = browser_or_skip("the_report_shows_model_output_as_text_in_a_browser") else { return };
        let server = LlmServer::start(ServerConfig::default());
        let (p, failing) = xss_project(&server.base_url());
        let r = run_in_env(p.dir.path(), &["run", "specs/xss.yaml"], &[("FLOW_TEST_KEY", "sk-test")]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let m = p.latest_run("specs/.flow");
        let path = report_path(&p, &m);
        let html = std::fs::read_to_string(&path).unwrap();
        for (_, payload) in PAYLOADS {
            assert!(!html.contains(payload), "the payload `{payload}` is in the page as is");
        }
        // What `flow` itself says failed.
        let shown = p.flow(&["show", "strict"]);
        let records: Vec<Value> = shown.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let failed: BTreeSet<String> =
            records.iter().filter(|r| r["pass"] == false).map(|r| r["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(failed, failing);

        let out = out_dir("xss");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&path);
        b.open(&url, 1280, 1000);
        assert_nothing_ran(&mut b, &url);
        b.screenshot(&out.join("pipeline.png"));

        // Filtered to failures: exactly the failing records, ids and output as text.
        let ids = b.eval(
            "(() => { const p = flowReport.show('strict').panel;
               const size = p.querySelector('.rt-size'); size.value = '250'; size.dispatchEvent(new Event('change'));
               const f = p.querySelector('.rt-filter'); f.value = 'fail'; f.dispatchEvent(new Event('change'));
               return [...p.querySelectorAll('tr.rt-row td.rt-id')].map(td => td.textContent); })()",
        );
        let ids: BTreeSet<String> = serde_json::from_value(ids).unwrap();
        assert_eq!(ids, failing, "the failures filter");
        b.eval("flowReport.show('strict').panel.querySelector('.records-view').scrollIntoView()");
        b.screenshot(&out.join("failures.png"));
        let text = b.eval("flowReport.show('strict').panel.innerText");
        let text = text.as_str().unwrap();
        for (id, payload) in PAYLOADS.iter().step_by(2) {
            assert!(text.contains(&format!("echo: {payload}")), "the output of {id} is not visible as text:\n{text}");
        }
        // Search finds a payload by its text; the record opens with every field.
        let found = b.eval(
            "(() => { const p = flowReport.show('strict').panel;
               const f = p.querySelector('.rt-filter'); f.value = 'all'; f.dispatchEvent(new Event('change'));
               const s = p.querySelector('.rt-search'); s.value = 'window.__pwned=1';
               s.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
               const rows = [...p.querySelectorAll('tr.rt-row')];
               rows[0].click();
               return {ids: rows.map(r => r.querySelector('.rt-id').textContent),
                       detail: p.querySelector('tr.detail').innerText}; })()",
        );
        assert_eq!(found["ids"], json!(["x-img"]));
        assert!(found["detail"].as_str().unwrap().contains(PAYLOADS[1].1), "{}", found["detail"]);
        b.screenshot(&out.join("search.png"));

        // The comparison lists the flipped ids as text, each with its
        // question; one opens its row of the case-by-case table.
        let flips = b.eval(
            "(() => { const p = flowReport.show('ab').panel;
               return [...p.querySelectorAll('.flips .chip')].map(c => c.querySelector('.flip-id').textContent); })()",
        );
        let flips: BTreeSet<String> = serde_json::from_value(flips).unwrap();
        assert_eq!(flips, failing, "fail → pass flips");
        b.screenshot(&out.join("compare.png"));
        let opened = b.eval(
            "(() => { const chip = [...flowReport.show('ab').panel.querySelectorAll('.flips .chip')]
                 .find(c => c.querySelector('.flip-id').textContent === '<b>x-id</b>');
               const question = chip.querySelector('.flip-q').textContent;
               chip.click();
               const p = document.querySelector('section.view:not([hidden])');
               return {view: p.dataset.view, question,
                       open: [...p.querySelectorAll('tr.cmp-row.open .cmp-id')].map(td => td.textContent)}; })()",
        );
        let question = opened["question"].as_str().unwrap().trim_end_matches('…');
        assert!(question.len() > 20 && PAYLOADS[4].1.starts_with(question), "the question beside the id: {question}");
        assert_eq!((&opened["view"], &opened["open"]), (&json!("node:ab"), &json!(["<b>x-id</b>"])));
        assert_nothing_ran(&mut b, &url);
    }

    #[test]
    fn a_report_of_10000_records_loads_and_pages_in_under_a_second() {
        let Some(bin) = browser_or_skip("a_report_of_10000_records_loads_and_pages_in_under_a_second") else { return };
        let p = Project::empty();
        let mut data = String::new();
        let mut failing = 0;
        for i in 0..10_000 {
            let output = format!("the answer to question {i} is {}", i * 7);
            let expected = if i % 3 == 0 {
                failing += 1;
                format!("the answer to question {i} is {}", i * 7 + 1)
            } else {
                output.clone()
            };
            let question = format!("question {i}: what is {i} times seven? Say it in a sentence, with the number.");
            data.push_str(
                &json!({"id": format!("r{i:05}"), "question": question, "output": output, "expected": expected})
                    .to_string(),
            );
            data.push('\n');
        }
        p.write("specs/data/big.jsonl", &data);
        p.write(
            "specs/big.yaml",
            "flow: 1\nname: big\nnodes:\n  answers: {kind: load, path: data/big.jsonl}\n  scores:\n    kind: evaluate\n    input: answers\n    metrics:\n      - {type: exact_match, expected: \"{{expected}}\"}\n      - {type: similarity, expected: \"{{expected}}\", threshold: 0.99}\n      - {type: regex, pattern: \"\\\\d+$\"}\n",
        );
        let r = p.flow(&["run", "specs/big.yaml"]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let m = p.latest_run("specs/.flow");
        let path = report_path(&p, &m);

        let out = out_dir("10k");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&path);
        b.open(&url, 1280, 1000);
        // From the script's first line to the first view drawn (parsing the
        // embedded data included), then showing the table and paging through it.
        let boot = b.eval("flowReport.bootMs").as_f64().unwrap();
        let t = b.eval(
            "(() => { const t0 = performance.now();
               const p = flowReport.show('scores').panel;
               const t1 = performance.now();
               for (const c of ['.rt-next', '.rt-next', '.rt-last', '.rt-prev', '.rt-first']) p.querySelector(c).click();
               const f = p.querySelector('.rt-filter'); f.value = 'fail'; f.dispatchEvent(new Event('change'));
               p.querySelector('.rt-next').click();
               const t2 = performance.now();
               return {show: t1 - t0, pages: t2 - t1, rows: p.querySelectorAll('tr.rt-row').length,
                       info: p.querySelector('.rt-info').textContent}; })()",
        );
        let script_s = b.metric("ScriptDuration");
        let (show, pages) = (t["show"].as_f64().unwrap(), t["pages"].as_f64().unwrap());
        eprintln!(
            "10,000 records: boot {boot:.0} ms, show the table {show:.0} ms, 6 page flips and a filter {pages:.0} ms; \
             the page's script time in all {:.0} ms",
            script_s * 1000.0
        );
        assert!(boot + show + pages < 1000.0, "load and paging took {:.0} ms of script", boot + show + pages);
        assert!(script_s < 1.0, "the page ran {script_s:.3} s of script");
        assert_eq!(t["rows"], 50, "only the visible page is drawn");
        let expected = format!("records 51–100 of {} · page 2 of {}", fmt_thousands(failing), failing.div_ceil(50));
        assert_eq!(t["info"], json!(expected));
        b.screenshot(&out.join("10k-records.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }

    #[test]
    fn the_extract_synthesize_and_train_views_draw_their_data() {
        let Some(bin) = browser_or_skip("the_extract_synthesize_and_train_views_draw_their_data") else { return };
        let (p, m) = self_improve_run();
        let path = report_path(&p, &m);
        let data = embedded(&std::fs::read_to_string(&path).unwrap());
        let out = out_dir("self-improve");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&path);
        b.open(&url, 1280, 1500);

        // extract: a point per log, the picks marked (the node's examples),
        // the histogram counting every log; a pick points at and opens its example.
        for name in ["golden", "rare"] {
            let examples = ids(&view(&data, name)["rows"]);
            let logs = view(&data, name)["data"]["meta"]["logs"].as_u64().unwrap();
            let got = b.eval(&format!(
                "(() => {{ const p = flowReport.show('{name}').panel;
                   const pts = flowReport.data.views.find(v => v.node === '{name}').projection.points;
                   const picked = [...p.querySelectorAll('svg.map circle.pt.picked')];
                   const bins = [...p.querySelectorAll('svg.hist g.bin')];
                   const sum = (k) => bins.reduce((a, g) => a + Number(g.dataset[k]), 0);
                   picked[0].dispatchEvent(new MouseEvent('mouseover', {{bubbles: true}}));
                   const detail = p.querySelector('.map-detail').textContent;
                   picked[0].dispatchEvent(new MouseEvent('click', {{bubbles: true}}));
                   const rows = [...p.querySelectorAll('tr.rt-row .rt-id')].map(td => td.textContent);
                   window.scrollTo(0, 0);
                   return {{points: p.querySelectorAll('svg.map circle.pt').length,
                           picked: picked.map(c => pts[Number(c.dataset.i)].id),
                           ranks: p.querySelectorAll('svg.map text.rank').length,
                           first: pts[Number(picked[0].dataset.i)].id, detail, rows,
                           bins: bins.length, binLogs: sum('logs'), binPicked: sum('picked'),
                           bars: p.querySelectorAll('svg.hist rect.hbar').length}}; }})()"
            ));
            assert_eq!(got["points"], logs, "{name}: one point per log");
            let picked: BTreeSet<String> = serde_json::from_value(got["picked"].clone()).unwrap();
            assert_eq!(picked, examples, "{name}: the picked points are the examples");
            assert_eq!(got["ranks"], examples.len(), "{name}: each pick numbered");
            assert_eq!(
                (&got["bins"], &got["binLogs"], &got["binPicked"]),
                (&json!(40), &json!(logs), &json!(examples.len()))
            );
            assert!(got["bars"].as_u64().unwrap() > 0, "{name}: the histogram has bars");
            let first = got["first"].as_str().unwrap();
            let detail = got["detail"].as_str().unwrap();
            assert!(detail.contains(first) && detail.contains("picked"), "{name}: {detail}");
            assert_eq!(got["rows"], json!([first]), "{name}: clicking a pick shows its example");
            b.screenshot(&out.join(format!("extract-{name}.png")));
        }

        // synthesize: every rule with its support, the hook as plain text.
        let rules = &view(&data, "rules")["data"]["report"]["rules"];
        let want: Vec<(String, String)> = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_str().unwrap().to_string(), r["support"].to_string()))
            .collect();
        let hook =
            p.read(&format!("specs/.flow/runs/{}/rules/generated_prompt_hook.py", m["run_id"].as_str().unwrap()));
        let got = b.eval(
            "(() => { const p = flowReport.show('rules').panel; window.scrollTo(0, 0);
               const pre = p.querySelector('pre.hook');
               return {rules: [...p.querySelectorAll('table.rules tr.rule')].map(tr =>
                         [tr.querySelector('code').textContent, tr.querySelector('td.support').textContent]),
                       hook: pre.textContent, markup: pre.children.length}; })()",
        );
        let listed: Vec<(String, String)> = serde_json::from_value(got["rules"].clone()).unwrap();
        assert_eq!(listed, want);
        assert_eq!((got["hook"].as_str().unwrap(), &got["markup"]), (hook.as_str(), &json!(0)));
        b.screenshot(&out.join("synthesize.png"));
        b.eval("flowReport.show('rules').panel.querySelector('pre.hook').scrollIntoView()");
        b.screenshot(&out.join("synthesize-hook.png"));

        // train: the job's status, its events, the loss curve through the sim's steps.
        let events = view(&data, "tuned")["rows"][0]["events"].as_array().unwrap().len();
        let got = b.eval(
            "(() => { const p = flowReport.show('tuned').panel; window.scrollTo(0, 0);
               const ys = [...p.querySelectorAll('svg.loss circle.loss-pt')].map(c => Number(c.getAttribute('cy')));
               return {status: p.querySelector('.totals .pill').textContent, ys,
                       line: p.querySelectorAll('svg.loss polyline.loss-line').length,
                       events: p.querySelectorAll('table.events tr.event').length}; })()",
        );
        assert_eq!(got["status"], "succeeded");
        assert_eq!((&got["line"], &got["events"]), (&json!(1), &json!(events)));
        let ys: Vec<f64> = serde_json::from_value(got["ys"].clone()).unwrap();
        assert_eq!(ys.len(), 12, "a point per metrics event of the sim");
        assert!(ys.windows(2).all(|w| w[1] > w[0]), "the curve goes down the chart: {ys:?}");
        b.screenshot(&out.join("train.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.requests(), vec![url.clone()], "the page fetched something");
    }

    /// A contradiction is listed with the rule kept, and the rule that lost
    /// it says by whom.
    #[test]
    fn the_synthesize_view_shows_a_contradiction() {
        let Some(bin) = browser_or_skip("the_synthesize_view_shows_a_contradiction") else { return };
        let p = Project::empty();
        for f in ["pairs.jsonl", "synthesize.yaml"] {
            let text = std::fs::read_to_string(repo().join("tests/fixtures/synthesize").join(f)).unwrap();
            p.write(&format!("specs/{f}"), &text);
        }
        let m = p.run_ok(&["specs/synthesize.yaml"]);
        assert_eq!(node(&m, "rules")["meta"]["contradictions"], 1);
        let out = out_dir("synthesize-contradiction");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        b.open(&file_url(&report_path(&p, &m)), 1280, 1400);
        let got = b.eval(
            "(() => { const p = flowReport.show('rules').panel;
               const lost = p.querySelector('tr.rule[data-rule=\"format:numbered\"]');
               return {conflicts: [...p.querySelectorAll('table.conflicts tbody tr')].map(tr => tr.innerText),
                       lost: lost.querySelector('.pill').textContent, inactive: lost.classList.contains('inactive')}; })()",
        );
        let conflicts = got["conflicts"].as_array().unwrap();
        assert_eq!(conflicts.len(), 1, "{got}");
        let row = conflicts[0].as_str().unwrap();
        assert!(
            row.contains("format:bullets") && row.contains("format:numbered") && row.contains("most support"),
            "{row}"
        );
        assert_eq!((&got["lost"], &got["inactive"]), (&json!("overridden by format:bullets"), &json!(true)));
        b.eval("flowReport.show('rules').panel.querySelector('table.conflicts').scrollIntoView({block: 'center'})");
        b.screenshot(&out.join("contradiction.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }

    fn fmt_thousands(n: usize) -> String {
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    }
}
