//! JUnit XML, the format test dashboards read (GitHub's test reporters,
//! GitLab, Jenkins): one `<testsuite>` per exported node, one `<testcase>`
//! per record × metric (`<failure>` when it failed, `<error>` when it could
//! not be computed), and one per `fail_if` rule of a gated node. A node
//! that failed or was cancelled is an `<error>` case, so a dashboard never
//! shows green for what did not run.
//!
//! Model output is untrusted text and often holds control characters, which
//! XML 1.0 cannot carry even escaped: they are written as `\u{..}`.

use std::fmt::Write as _;

use serde_json::Value;

use flow_engine::cache::NodeStatus;

use super::{cases, rule_text, shorten_ids, Node, Results, Verdict};

/// Characters of a record's output kept in a failure's text.
const OUTPUT_SHOWN: usize = 2000;

/// One test case, before it is written.
struct TestCase {
    classname: String,
    name: String,
    /// `("failure" | "error", message, body)`.
    problem: Option<(&'static str, String, String)>,
}

pub(super) fn render(results: &Results<'_>) -> String {
    let m = results.manifest;
    let suites: Vec<(&Node, Vec<TestCase>)> = results.nodes.iter().map(|n| (n, node_cases(&m.spec, n))).collect();
    let count = |cases: &[TestCase], kind: &str| {
        cases.iter().filter(|c| c.problem.as_ref().is_some_and(|p| p.0 == kind)).count()
    };
    let all: Vec<&TestCase> = suites.iter().flat_map(|(_, c)| c).collect();
    let failures = all.iter().filter(|c| c.problem.as_ref().is_some_and(|p| p.0 == "failure")).count();
    let errors = all.iter().filter(|c| c.problem.as_ref().is_some_and(|p| p.0 == "error")).count();
    let wall: u64 = results.nodes.iter().map(|n| n.wall_ms).sum();

    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{}\">",
        attr(&format!("flow {} (run {})", m.spec, m.run_id)),
        all.len(),
        seconds(wall)
    );
    for (node, cases) in &suites {
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\" timestamp=\"{}\">",
            attr(&format!("{}.{}", m.spec, node.name)),
            cases.len(),
            count(cases, "failure"),
            count(cases, "error"),
            seconds(node.wall_ms),
            attr(m.started.trim_end_matches('Z')),
        );
        for c in cases {
            let head = format!("    <testcase classname=\"{}\" name=\"{}\"", attr(&c.classname), attr(&c.name));
            match &c.problem {
                None => {
                    let _ = writeln!(x, "{head}/>");
                }
                Some((kind, message, body)) => {
                    let _ = writeln!(x, "{head}>");
                    let _ = writeln!(
                        x,
                        "      <{kind} message=\"{}\" type=\"{kind}\">{}</{kind}>",
                        attr(message),
                        text(body)
                    );
                    x.push_str("    </testcase>\n");
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

fn node_cases(spec: &str, node: &Node) -> Vec<TestCase> {
    let classname = format!("{spec}.{}", node.name);
    let mut out = Vec::new();
    if !matches!(node.status, NodeStatus::Ran | NodeStatus::Cached) {
        let why = match node.status {
            NodeStatus::Cancelled => "the node was cancelled (another node failed, or the run was interrupted)".into(),
            _ => format!("the node failed: {}", node.error.as_deref().unwrap_or("unknown error")),
        };
        out.push(TestCase {
            classname: classname.clone(),
            name: format!("{} did not finish", node.name),
            problem: Some(("error", first_line(&why), why)),
        });
    }
    for c in cases(node) {
        let problem = match &c.verdict {
            Verdict::Pass => None,
            Verdict::Fail => {
                let message = match (c.reason, c.score) {
                    (Some(r), _) => format!("{} failed: {r}", c.metric),
                    (None, Some(s)) => format!("{} failed: score {s}", c.metric),
                    (None, None) => format!("{} failed", c.metric),
                };
                Some(("failure", first_line(&message), details(&c)))
            }
            Verdict::Error(e) => Some(("error", first_line(&format!("{}: {e}", c.metric)), details(&c))),
        };
        out.push(TestCase { classname: classname.clone(), name: format!("{}: {}", c.label(), c.metric), problem });
    }
    out.extend(gate_cases(&classname, node));
    out
}

/// One case per `fail_if` rule, failed when the node's gate text names
/// it; lines that name no rule fail a case of their own.
fn gate_cases(classname: &str, node: &Node) -> Vec<TestCase> {
    let text = node.gate_failed.as_deref().map(|t| shorten_ids(t, &node.name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let finished = matches!(node.status, NodeStatus::Ran | NodeStatus::Cached);
    let mut named = vec![false; lines.len()];
    let mut out = Vec::new();
    for (i, rule) in node.rules.iter().enumerate() {
        let tag = format!("fail_if[{i}]");
        let mut tripped = Vec::new();
        for (k, l) in lines.iter().enumerate() {
            if l.contains(&tag) {
                named[k] = true;
                tripped.push(*l);
            }
        }
        let problem = if !finished {
            Some(("error", "not evaluated: the node did not finish".to_string(), String::new()))
        } else if tripped.is_empty() {
            None
        } else {
            Some(("failure", figures(tripped[0]), tripped.join("\n")))
        };
        out.push(TestCase { classname: classname.to_string(), name: format!("{tag}: {}", rule_text(rule)), problem });
    }
    let unnamed: Vec<&str> = lines.iter().zip(&named).filter(|(_, n)| !**n).map(|(l, _)| *l).collect();
    if !unnamed.is_empty() {
        out.push(TestCase {
            classname: classname.to_string(),
            name: "fail_if".into(),
            problem: Some(("failure", figures(unnamed[0]), unnamed.join("\n"))),
        });
    }
    out
}

/// What a failure's body says: the metric's figures, the record's output
/// and expected answer where it has them.
fn details(c: &super::Case<'_>) -> String {
    let mut s = format!("node: {}\nrecord: {}\nmetric: {}\n", c.node, c.label(), c.metric);
    if let Some(score) = c.score {
        let _ = writeln!(s, "score: {score}");
    }
    if let Some(v) = c.value {
        let _ = writeln!(s, "value: {v}");
    }
    if let Some(r) = c.reason {
        let _ = writeln!(s, "reason: {r}");
    }
    if let Verdict::Error(e) = &c.verdict {
        let _ = writeln!(s, "error: {e}");
    }
    for field in ["output", "expected"] {
        match c.record.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) => {
                let _ = writeln!(s, "{field}: {}", cut(v));
            }
            Some(v) => {
                let _ = writeln!(s, "{field}: {}", cut(&v.to_string()));
            }
        }
    }
    s
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(OUTPUT_SHOWN) {
        Some((i, _)) => format!("{}… ({} characters in all)", &s[..i], s.chars().count()),
        None => s.to_string(),
    }
}

/// A gate line's figures, before its id lists: the failure's message.
fn figures(line: &str) -> String {
    line.split("; ").next().unwrap_or_default().to_string()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Text content: markup escaped, characters XML 1.0 cannot hold spelled out.
fn text(s: &str) -> String {
    escape(s, false)
}

/// An attribute value (double-quoted): also quotes, and line breaks kept
/// as character references (a parser turns a raw one into a space).
fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\t' | '\n' => out.push(ch),
            // Not allowed in XML 1.0, not even as `&#1;`.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_spells_out_what_xml_cannot_hold() {
        assert_eq!(text("a<b>&c\u{1}\u{1b}[0m\td\n"), "a&lt;b&gt;&amp;c\\u{1}\\u{1b}[0m\td\n");
        assert_eq!(attr("say \"hi\"\nbye\r"), "say &quot;hi&quot;&#10;bye&#13;");
        assert_eq!(text("\u{FFFF}ok\u{10FFFF}"), "\\u{ffff}ok\u{10FFFF}");
    }
}
