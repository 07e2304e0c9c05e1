//! The report as a workbench, in a real headless Chromium: the comparison
//! case by case (both outputs, the diff, the filters, a flip opening its
//! row), the `run`, `generate` and `load` views with what was asked and
//! every record, the index of a workspace's runs, model output that is
//! markup staying text in each of them, and a 10,000-case comparison that
//! stays fast. Screenshots go to `target/report-test/workbench-*`.
//!
//! Without Chromium the tests say so and pass (CI installs it).

#[cfg(target_os = "linux")]
mod in_chromium {
    use std::collections::BTreeSet;

    use serde_json::{json, Value};

    use crate::browser::Browser;
    use crate::common::{node, repo, run_in_env, Project};
    use crate::llm_server::{LlmServer, ServerConfig};
    use crate::report::in_chromium::{assert_nothing_ran, browser_or_skip, file_url, out_dir, xss_project, PAYLOADS};
    use crate::report::{embedded, report_path, view};

    /// `specs/ab.yaml` and its seeds in a fresh project, run.
    fn ab_run() -> (Project, Value) {
        let p = Project::empty();
        for f in ["specs/ab.yaml", "specs/data/seeds.jsonl"] {
            p.write(f, &std::fs::read_to_string(repo().join(f)).unwrap());
        }
        let m = p.run_ok(&["specs/ab.yaml"]);
        (p, m)
    }

    /// A node's output records, as `flow show` prints them.
    fn shown(p: &Project, node: &str) -> Vec<Value> {
        let r = p.flow(&["show", node, "--spec", "specs/ab.yaml"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Sets a `<select>` of the shown panel and says so to its listeners.
    fn select(b: &mut Browser, node: &str, selector: &str, value: &str) {
        b.eval(&format!(
            "(() => {{ const s = flowReport.show('{node}').panel.querySelector('{selector}');
               s.value = '{value}'; s.dispatchEvent(new Event('change')); }})()"
        ));
    }

    #[test]
    fn the_comparison_of_ab_shows_every_case_side_by_side() {
        let Some(bin) = browser_or_skip("the_comparison_of_ab_shows_every_case_side_by_side") else { return };
        let (p, m) = ab_run();
        let path = report_path(&p, &m);
        let data = embedded(&std::fs::read_to_string(&path).unwrap());
        let base: Vec<Value> = shown(&p, "baseline_scores");
        let cand: Vec<Value> = shown(&p, "candidate_scores");
        let output_of = |rs: &[Value]| -> std::collections::BTreeMap<String, String> {
            rs.iter()
                .map(|r| (r["id"].as_str().unwrap().to_string(), r["output"].as_str().unwrap().to_string()))
                .collect()
        };
        let (base_out, cand_out) = (output_of(&base), output_of(&cand));
        let report = &view(&data, "ab")["data"]["report"];
        let em = &report["candidates"][0]["metrics"][0];
        let flipped: BTreeSet<String> = em["pass_to_fail"]
            .as_array()
            .unwrap()
            .iter()
            .chain(em["fail_to_pass"].as_array().unwrap())
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(!flipped.is_empty(), "the sim's error rates make flips");

        let out = out_dir("workbench-ab");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&path);
        b.open(&url, 1400, 1100);
        select(&mut b, "ab", ".cmp-size", "250");
        // Every case, each side's output as the scored records have it, a
        // diff where the two differ.
        let rows = b.eval(
            "(() => { const p = flowReport.show('ab').panel;
               return [...p.querySelectorAll('tr.cmp-row')].map(tr => ({
                 id: tr.querySelector('.cmp-id').textContent,
                 input: tr.querySelector('.cmp-input').textContent,
                 expected: tr.querySelector('.cmp-expected').textContent,
                 a: tr.querySelector('.cmp-out[data-side=\"0\"] .cmp-text').textContent,
                 b: tr.querySelector('.cmp-out[data-side=\"1\"] .cmp-text').textContent,
                 marks: tr.querySelectorAll('.cmp-diff del, .cmp-diff ins').length })); })()",
        );
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), base.len(), "a row per case");
        for (r, rec) in rows.iter().zip(&base) {
            let id = r["id"].as_str().unwrap();
            assert_eq!(id, rec["id"], "in the baseline's order");
            assert_eq!(r["input"], rec["question"]);
            assert_eq!(r["expected"], rec["expected"]);
            assert_eq!((r["a"].as_str().unwrap(), r["b"].as_str().unwrap()), (&*base_out[id], &*cand_out[id]));
            let differ = base_out[id] != cand_out[id];
            assert_eq!(r["marks"].as_u64().unwrap() > 0, differ, "{id}: a diff exactly where the outputs differ");
        }
        b.screenshot(&out.join("cases.png"));

        // The flipped filter: exactly the flipped ids; then each direction.
        let ids_shown =
            "[...flowReport.show('ab').panel.querySelectorAll('tr.cmp-row .cmp-id')].map(td => td.textContent)";
        select(&mut b, "ab", ".cmp-filter", "flipped");
        let got: BTreeSet<String> = serde_json::from_value(b.eval(ids_shown)).unwrap();
        assert_eq!(got, flipped, "the flipped filter");
        b.screenshot(&out.join("flipped.png"));
        for (mode, field) in [("p2f", "pass_to_fail"), ("f2p", "fail_to_pass")] {
            select(&mut b, "ab", ".cmp-filter", mode);
            let got: BTreeSet<String> = serde_json::from_value(b.eval(ids_shown)).unwrap();
            let want: BTreeSet<String> = serde_json::from_value(em[field].clone()).unwrap();
            assert_eq!(got, want, "{mode}");
        }
        // A regression on the metric: a case whose score fell, i.e. pass → fail.
        select(&mut b, "ab", ".cmp-filter", "down:exact_match");
        let got: BTreeSet<String> = serde_json::from_value(b.eval(ids_shown)).unwrap();
        assert_eq!(got, serde_json::from_value::<BTreeSet<String>>(em["pass_to_fail"].clone()).unwrap());

        // Sorting by id, then back the other way.
        select(&mut b, "ab", ".cmp-filter", "all");
        let sorted = b.eval(&format!(
            "(() => {{ const th = flowReport.show('ab').panel.querySelector('table.cases th[data-col=\"1\"]');
               th.click(); const up = {ids_shown}; th.click(); return [up, {ids_shown}]; }})()"
        ));
        let mut want: Vec<String> = base_out.keys().cloned().collect();
        want.sort();
        assert_eq!(sorted[0], json!(want));
        want.reverse();
        assert_eq!(sorted[1], json!(want));

        // A flip, with its question beside it, opens its row.
        let first = flipped.iter().next().unwrap().clone();
        let question = base.iter().find(|r| r["id"] == first.as_str()).unwrap()["question"].clone();
        let opened = b.eval(&format!(
            "(() => {{ const p = flowReport.show('ab').panel;
               const chip = [...p.querySelectorAll('.flips .chip')].find(c => c.querySelector('.flip-id').textContent === '{first}');
               const q = chip.querySelector('.flip-q').textContent;
               chip.click();
               const open = [...p.querySelectorAll('tr.cmp-row.open')];
               return {{q, open: open.map(tr => tr.dataset.key), focused: p.querySelectorAll('tr.cmp-row.focused').length,
                        detail: p.querySelector('tr.detail').innerText}}; }})()"
        ));
        assert_eq!(opened["q"], question);
        assert_eq!((&opened["open"], &opened["focused"]), (&json!([first]), &json!(1)));
        assert!(opened["detail"].as_str().unwrap().contains("exact_match"), "{}", opened["detail"]);
        b.screenshot(&out.join("flip-opened.png"));

        // The generated cases, every one; the seeds' fields.
        let got = b.eval(
            "(() => { const g = flowReport.show('cases').panel;
               const s = g.querySelector('.rt-size'); s.value = '250'; s.dispatchEvent(new Event('change'));
               const cases = g.querySelectorAll('tr.rt-row').length;
               const l = flowReport.show('seeds').panel;
               return {cases, fields: [...l.querySelectorAll('table.load-fields tr.field code')].map(c => c.textContent),
                       seeds: l.querySelectorAll('tr.rt-row').length}; })()",
        );
        assert_eq!(got["cases"], node(&m, "cases")["records_out"]);
        assert_eq!(got["seeds"], node(&m, "seeds")["records_out"]);
        assert!(got["fields"].as_array().unwrap().contains(&json!("id")), "{got}");
        b.screenshot(&out.join("seeds.png"));
        b.eval("flowReport.show('cases')");
        b.screenshot(&out.join("generated.png"));

        // The run view: the templates and the backend with its sampling.
        let ctx = b.eval(
            "(() => { const p = flowReport.show('candidate_answers').panel;
               return {text: p.querySelector('.context').innerText, rows: p.querySelectorAll('tr.rt-row').length}; })()",
        );
        let text = ctx["text"].as_str().unwrap();
        for want in ["{{question}}", "gpt-4.1-mini", "temperature: 0", "sim"] {
            assert!(text.contains(want), "the run view's context lacks `{want}`:\n{text}");
        }
        assert_eq!(ctx["rows"], 50, "the first page of its records");
        b.screenshot(&out.join("run.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.requests(), vec![url], "the page fetched something");
    }

    #[test]
    fn the_run_view_lists_failures_with_their_error_text() {
        let Some(bin) = browser_or_skip("the_run_view_lists_failures_with_their_error_text") else { return };
        // Every third request fails with a 400, which is not retried.
        let server =
            LlmServer::start(ServerConfig { fail_every: Some(3), fail_status: Some(400), ..Default::default() });
        let p = Project::empty();
        let cases: String =
            (0..12).map(|i| format!("{{\"id\": \"c{i:02}\", \"question\": \"what is {i} + 1?\"}}\n")).collect();
        p.write("specs/data/cases.jsonl", &cases);
        p.write(
            "specs/fails.yaml",
            &format!(
                "flow: 1\nname: fails\nbackends:\n  bot: {{provider: openai, base_url: {}, model: m1, api_key_env: FLOW_TEST_KEY, \
                 temperature: 0.2, max_concurrency: 1, retry: {{max_retries: 0}}}}\n\
                 nodes:\n  cases: {{kind: load, path: data/cases.jsonl}}\n  \
                 answers: {{kind: run, input: cases, backend: bot, system: \"be brief\", prompt: \"Q: {{{{question}}}}\", max_errors: 100%}}\n",
                server.base_url()
            ),
        );
        let r = run_in_env(p.dir.path(), &["run", "specs/fails.yaml"], &[("FLOW_TEST_KEY", "sk-test")]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let m = p.latest_run("specs/.flow");
        let records: Vec<Value> =
            p.flow(&["show", "answers"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let failed: Vec<(String, String)> = records
            .iter()
            .filter(|r| !r["error"].is_null())
            .map(|r| (r["id"].as_str().unwrap().to_string(), r["error"].as_str().unwrap().to_string()))
            .collect();
        assert!(!failed.is_empty() && failed.len() < records.len(), "{failed:?}");

        let out = out_dir("workbench-run");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&report_path(&p, &m));
        b.open(&url, 1400, 1000);
        select(&mut b, "answers", ".rt-filter", "fail");
        let got = b.eval(
            "(() => { const p = flowReport.show('answers').panel;
               return {rows: [...p.querySelectorAll('tr.rt-row')].map(tr => [tr.querySelector('.rt-id').textContent, tr.innerText]),
                       context: p.querySelector('.context').innerText,
                       heads: [...p.querySelectorAll('table.records th')].map(th => th.textContent)}; })()",
        );
        let rows = got["rows"].as_array().unwrap();
        assert_eq!(rows.len(), failed.len(), "the failures filter: {rows:?}");
        for (row, (id, error)) in rows.iter().zip(&failed) {
            assert_eq!(row[0], json!(id));
            let text = row[1].as_str().unwrap();
            assert!(text.contains(&error[..error.len().min(60)]), "{id}: its error text is shown:\n{text}");
            assert!(text.contains("question: what is"), "{id}: its input is shown:\n{text}");
        }
        assert_eq!(got["heads"], json!(["#", "id", "input", "latency", "tokens in / out", "output"]));
        let context = got["context"].as_str().unwrap();
        for want in ["be brief", "Q: {{question}}", "m1", "temperature: 0.2", "openai"] {
            assert!(context.contains(want), "the context lacks `{want}`:\n{context}");
        }
        assert!(!context.contains("FLOW_TEST_KEY") && !context.contains("sk-test"), "{context}");
        b.screenshot(&out.join("failures.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }

    #[test]
    fn model_output_stays_text_in_the_new_views() {
        let Some(bin) = browser_or_skip("model_output_stays_text_in_the_new_views") else { return };
        let server = LlmServer::start(ServerConfig::default());
        let (p, _) = xss_project(&server.base_url());
        let r = run_in_env(p.dir.path(), &["run", "specs/xss.yaml"], &[("FLOW_TEST_KEY", "sk-test")]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let m = p.latest_run("specs/.flow");
        let out = out_dir("workbench-xss");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&report_path(&p, &m));
        b.open(&url, 1400, 1000);
        // Every view drawn, every case opened, every payload visible as text.
        for (tab, rows) in [("cases", "tr.rt-row"), ("answers", "tr.rt-row"), ("ab", "tr.cmp-row")] {
            let text = b.eval(&format!(
                "(() => {{ const p = flowReport.show('{tab}').panel;
                   [...p.querySelectorAll('{rows}')].forEach(tr => tr.click());
                   return p.innerText; }})()"
            ));
            let text = text.as_str().unwrap();
            for (id, payload) in PAYLOADS {
                assert!(text.contains(payload), "{tab}: the payload of {id} is not shown as text");
            }
            b.screenshot(&out.join(format!("{tab}.png")));
        }
        let flips =
            b.eval("[...flowReport.show('ab').panel.querySelectorAll('.flips .flip-q')].map(e => e.textContent)");
        assert!(flips.as_array().unwrap().iter().any(|q| q.as_str().unwrap().contains("<script>")), "{flips}");
        assert_nothing_ran(&mut b, &url);
    }

    #[test]
    fn the_index_lists_the_runs_of_a_workspace() {
        let Some(bin) = browser_or_skip("the_index_lists_the_runs_of_a_workspace") else { return };
        let p = Project::demo();
        let first = p.run_ok(&["specs/demo.yaml"]);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = p.run_ok(&["specs/demo.yaml", "--no-cache"]);
        let r = p.flow(&["view", "--no-open"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let index = p.dir.path().join(r.stdout.trim());
        assert!(index.ends_with("specs/.flow/index.html"), "{}", r.stdout);
        let html = std::fs::read_to_string(&index).unwrap();
        assert!(html.contains("default-src 'none'") && !html.contains("connect-src"), "the CSP");

        let out = out_dir("workbench-index");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&index);
        b.open(&url, 1400, 800);
        let got = b.eval(
            "(() => { const rows = [...document.querySelectorAll('tr.ix-run')];
               return rows.map(tr => ({id: tr.dataset.run, href: tr.querySelector('a.ix-report').getAttribute('href'),
                                      text: tr.innerText})); })()",
        );
        let rows = got.as_array().unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
        let (a, z) = (first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap());
        assert_eq!(ids, [z, a], "newest first");
        let scores = |m: &Value| {
            let n = node(m, "scores");
            n["records_out"].as_u64().unwrap()
        };
        for (row, m) in rows.iter().zip([&second, &first]) {
            let href = row["href"].as_str().unwrap();
            assert!(p.path("specs/.flow").join(href).is_file(), "{href} is the run's report");
            let text = row["text"].as_str().unwrap();
            for want in ["demo", "succeeded", "scores", "pass ("] {
                assert!(text.contains(want), "{text}");
            }
            assert!(text.contains(&format!("/{})", scores(m))), "the pass count of all records: {text}");
        }
        // Two runs picked: the command that compares them.
        let cmd = b.eval(
            "(() => { for (const i of [0, 1]) document.querySelectorAll('input.ix-pick')[i].click();
               return document.querySelector('.ix-command').textContent; })()",
        );
        assert_eq!(cmd, json!(format!("flow compare {a} {z}")));
        b.screenshot(&out.join("index.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.requests(), vec![url], "the page fetched something");
        let shown = p.flow(&["compare", a, z]);
        assert_eq!(shown.code, 0, "the command it gives works: {}", shown.stderr);
    }

    #[test]
    fn a_comparison_of_10000_cases_loads_and_pages_in_under_a_second() {
        let Some(bin) = browser_or_skip("a_comparison_of_10000_cases_loads_and_pages_in_under_a_second") else {
            return;
        };
        let p = Project::empty();
        let (mut a, mut z) = (String::new(), String::new());
        for i in 0..10_000 {
            let question = format!("question {i}: what is {i} times seven? Say it in a sentence, with the number.");
            let right = format!("the answer to question {i} is {}", i * 7);
            let wrong = format!("the answer to question {i} is probably {}", i * 7 + 1);
            let (x, y) = match i % 10 {
                0 => (wrong.clone(), right.clone()),
                1 => (right.clone(), wrong.clone()),
                _ => (right.clone(), right.clone()),
            };
            a.push_str(
                &json!({"id": format!("r{i:05}"), "question": question, "expected": right, "output": x}).to_string(),
            );
            z.push_str(
                &json!({"id": format!("r{i:05}"), "question": question, "expected": right, "output": y}).to_string(),
            );
            a.push('\n');
            z.push('\n');
        }
        p.write("specs/data/a.jsonl", &a);
        p.write("specs/data/b.jsonl", &z);
        p.write(
            "specs/big.yaml",
            "flow: 1\nname: big\nnodes:\n  a: {kind: load, path: data/a.jsonl}\n  b: {kind: load, path: data/b.jsonl}\n  \
             sa: {kind: evaluate, input: a, metrics: [{type: exact_match, expected: \"{{expected}}\"}]}\n  \
             sb: {kind: evaluate, input: b, metrics: [{type: exact_match, expected: \"{{expected}}\"}]}\n  \
             ab: {kind: compare, inputs: [sa, sb]}\n",
        );
        let m = p.run_ok(&["specs/big.yaml"]);
        let out = out_dir("workbench-10k");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        b.open(&file_url(&report_path(&p, &m)), 1400, 1000);
        let boot = b.eval("flowReport.bootMs").as_f64().unwrap();
        let t = b.eval(
            "(() => { const t0 = performance.now();
               const p = flowReport.show('ab').panel;
               const t1 = performance.now();
               for (const c of ['.cmp-next', '.cmp-next', '.cmp-last', '.cmp-prev', '.cmp-first']) p.querySelector(c).click();
               const f = p.querySelector('.cmp-filter'); f.value = 'flipped'; f.dispatchEvent(new Event('change'));
               p.querySelector('.cmp-next').click();
               p.querySelector('table.cases th[data-col=\"4\"]').click();
               const s = p.querySelector('.cmp-search'); s.value = 'r0999';
               s.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
               const found = p.querySelectorAll('tr.cmp-row').length;
               const t2 = performance.now();
               s.value = ''; s.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}));
               return {show: t1 - t0, pages: t2 - t1, rows: p.querySelectorAll('tr.cmp-row').length, found,
                       info: p.querySelector('.cmp-info').textContent}; })()",
        );
        let script_s = b.metric("ScriptDuration");
        let (show, pages) = (t["show"].as_f64().unwrap(), t["pages"].as_f64().unwrap());
        eprintln!(
            "10,000 cases: boot {boot:.0} ms, show the comparison {show:.0} ms, 6 page flips, a filter, a sort and a \
             search {pages:.0} ms; the page's script time in all {:.0} ms",
            script_s * 1000.0
        );
        assert!(boot + show + pages < 1000.0, "load and paging took {:.0} ms of script", boot + show + pages);
        assert!(script_s < 1.0, "the page ran {script_s:.3} s of script");
        assert_eq!(t["rows"], 50, "only the visible page is drawn");
        assert_eq!(t["found"], 2, "r09990 and r09991 flipped");
        assert_eq!(t["info"], json!("cases 1–50 of 2,000 · page 1 of 40"));
        b.screenshot(&out.join("10k-cases.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }

    /// Scored answers of `ids`, each `output` from `out(i)`, as a load and
    /// an evaluate node (`name` and `s<name>`) of a spec.
    fn scored_side(p: &Project, name: &str, n: usize, out: impl Fn(usize) -> String) -> String {
        let rows: String = (0..n)
            .map(|i| {
                json!({"id": format!("q{i:02}"), "question": format!("what is {i} + {i}?"), "expected": format!("{}", 2 * i), "output": out(i)})
                    .to_string()
                    + "\n"
            })
            .collect();
        p.write(&format!("specs/data/{name}.jsonl"), &rows);
        format!(
            "  {name}: {{kind: load, path: data/{name}.jsonl}}\n  s{name}: {{kind: evaluate, input: {name}, \
             metrics: [{{type: exact_match, name: correct, expected: \"{{{{expected}}}}\"}}]}}\n"
        )
    }

    #[test]
    fn flow_compare_writes_the_comparison_page_of_two_runs() {
        let Some(bin) = browser_or_skip("flow_compare_writes_the_comparison_page_of_two_runs") else { return };
        let p = Project::empty();
        // Run one gets q01 and q02 wrong, run two q02 and q03: q01 and q03 flip.
        let wrong = |bad: [usize; 2]| {
            move |i: usize| if bad.contains(&i) { "no idea".to_string() } else { format!("{}", 2 * i) }
        };
        let spec = "flow: 1\nname: cmp\nnodes:\n".to_string() + &scored_side(&p, "answers", 8, wrong([1, 2]));
        p.write("specs/cmp.yaml", &spec);
        let first = p.run_ok(&["specs/cmp.yaml"]);
        scored_side(&p, "answers", 8, wrong([2, 3]));
        let second = p.run_ok(&["specs/cmp.yaml"]);
        let (a, z) = (first["run_id"].as_str().unwrap(), second["run_id"].as_str().unwrap());
        let r = p.flow(&["compare", a, z]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("correct"), "the markdown is printed: {}", r.stdout);
        let path = r
            .stderr
            .lines()
            .find_map(|l| l.strip_prefix("comparison page: "))
            .unwrap_or_else(|| panic!("{}", r.stderr));
        let path = p.dir.path().join(path);
        assert!(path.ends_with(format!("specs/.flow/runs/{z}/compare-{a}-sanswers.html")), "{}", path.display());

        let out = out_dir("workbench-compare-cli");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        let url = file_url(&path);
        b.open(&url, 1400, 1000);
        let got = b.eval(
            "(() => { const p = document.querySelector('#views section:not([hidden])');
               return {tabs: [...document.querySelectorAll('#tabs button')].map(b => b.dataset.tab),
                       head: document.getElementById('top').innerText,
                       links: [...document.querySelectorAll('#top a.cmp-run')].map(a => a.getAttribute('href')),
                       rows: [...p.querySelectorAll('tr.cmp-row')].map(tr => [tr.querySelector('.cmp-id').textContent,
                         tr.querySelector('.cmp-out[data-side=\"0\"] .cmp-text').textContent,
                         tr.querySelector('.cmp-out[data-side=\"1\"] .cmp-text').textContent])}; })()",
        );
        assert_eq!(got["tabs"], json!(["node:sanswers"]), "the comparison's view only");
        let head = got["head"].as_str().unwrap();
        assert!(head.contains("compare sanswers") && head.contains(a) && head.contains(z), "{head}");
        for href in got["links"].as_array().unwrap() {
            let href = href.as_str().unwrap();
            assert!(path.parent().unwrap().join(href).is_file(), "{href} is a run's report");
        }
        let rows = got["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 8, "a row per case: {rows:?}");
        assert_eq!(rows[1], json!(["q01", "no idea", "2"]));
        assert_eq!(rows[3], json!(["q03", "6", "no idea"]));
        select(&mut b, "sanswers", ".cmp-filter", "flipped");
        let flipped = b.eval(
            "[...flowReport.show('sanswers').panel.querySelectorAll('tr.cmp-row .cmp-id')].map(td => td.textContent)",
        );
        assert_eq!(flipped, json!(["q01", "q03"]));
        b.screenshot(&out.join("compare.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
        assert_eq!(b.requests(), vec![url], "the page fetched something");
    }

    #[test]
    fn a_comparison_of_three_sides_is_a_grid_of_cases_by_sides() {
        let Some(bin) = browser_or_skip("a_comparison_of_three_sides_is_a_grid_of_cases_by_sides") else { return };
        let p = Project::empty();
        let mut spec = "flow: 1\nname: three\nnodes:\n".to_string();
        let says = |side: &'static str| {
            move |i: usize| if i.is_multiple_of(3) { format!("{side} thinks {i}") } else { format!("{}", 2 * i) }
        };
        for side in ["a", "b", "c"] {
            spec += &scored_side(&p, side, 9, says(side));
        }
        spec += "  abc: {kind: compare, inputs: [sa, sb, sc]}\n";
        p.write("specs/three.yaml", &spec);
        let m = p.run_ok(&["specs/three.yaml"]);
        let out = out_dir("workbench-grid");
        let mut b = Browser::launch(&bin, &out.join("chromium.log"));
        b.open(&file_url(&report_path(&p, &m)), 1600, 1000);
        let got = b.eval(
            "(() => { const p = flowReport.show('abc').panel;
               const view = p.querySelector('.cases-view');
               return {grid: view.classList.contains('grid'),
                       heads: [...view.querySelectorAll('table.cases th')].map(th => th.textContent),
                       rows: [...view.querySelectorAll('tr.cmp-row')].map(tr => [tr.querySelector('.cmp-id').textContent,
                         ...[0, 1, 2].map(s => tr.querySelector(`.cmp-out[data-side=\"${s}\"] .cmp-text`).textContent)])}; })()",
        );
        assert_eq!(got["grid"], true);
        let heads: Vec<&str> = got["heads"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        for want in ["sa (baseline)", "sb", "sc"] {
            assert!(heads.iter().any(|h| h.starts_with(want)), "a column for {want}: {heads:?}");
        }
        assert!(!heads.contains(&"diff"), "no two-sided diff column in a grid: {heads:?}");
        let rows = got["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 9, "a row per case");
        for (i, row) in rows.iter().enumerate() {
            let want: Vec<String> = ["a", "b", "c"]
                .iter()
                .map(|side| if i.is_multiple_of(3) { format!("{side} thinks {i}") } else { format!("{}", 2 * i) })
                .collect();
            assert_eq!(row, &json!([format!("q{i:02}"), want[0], want[1], want[2]]), "case {i}: a cell per side");
        }
        // A case opened: each side, and each candidate's diff against the baseline.
        let opened = b.eval(
            "(() => { const p = flowReport.show('abc').panel; p.querySelector('tr.cmp-row').click();
               const d = p.querySelector('tr.detail');
               return {sides: [...d.querySelectorAll('.cmp-side h3')].map(h => h.textContent), diffs: d.querySelectorAll('.cmp-diff').length}; })()",
        );
        assert_eq!(opened, json!({"sides": ["sa (baseline)", "sb", "sc"], "diffs": 2}));
        b.eval("flowReport.show('abc').panel.querySelector('.cases-view').scrollIntoView()");
        b.screenshot(&out.join("grid.png"));
        assert_eq!(b.errors(), Vec::<String>::new(), "console errors");
    }
}
