//! Assembles the report file: the HTML skeleton with the stylesheet, the
//! script and the data inlined. The index of runs is assembled the same way
//! from `index.js`. Both scripts start with `dom.js` (the helpers that keep
//! data text), inlined where they say [`INCLUDE_DOM`].
//!
//! The script is one scope: `page.js` (the frame: the header, the tabs, the
//! pipeline, the records table and what views share) and the renderer of
//! every view (`flow_nodes::views`, each kind's `view.js`), inlined where
//! `page.js` says [`INCLUDE_VIEWS`], each in a function of its own that
//! hands its `render` to `VIEWS`. A page that `flow view --serve` serves
//! also has `live.js` (where it says [`INCLUDE_LIVE`]): the strip that
//! follows a run as it goes, and a CSP that lets it reach its server only.

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");
const INDEX_SCRIPT: &str = include_str!("index.js");
const DOM: &str = include_str!("dom.js");
const LIVE: &str = include_str!("live.js");

/// The line of each page's script that the DOM helpers replace.
const INCLUDE_DOM: &str = "  //@include dom\n";

/// The line of each page's script that the live strip replaces in a page
/// `flow view --serve` serves, and nothing in a file.
const INCLUDE_LIVE: &str = "  //@include live\n";

/// The line of `page.js` that the views replace.
const INCLUDE_VIEWS: &str = "  //@include views\n";

/// The whole script; `live` when served.
fn script(live: bool) -> String {
    assert_eq!(SCRIPT.matches(INCLUDE_VIEWS).count(), 1, "page.js includes the views once");
    let mut views = String::new();
    for v in flow_nodes::views() {
        let name = serde_json::to_string(v.name).expect("a name");
        views.push_str(&format!("  VIEWS[{name}] = (function () {{\n{}\n  return render;\n  }})();\n", v.script));
    }
    with_dom(SCRIPT, live).replacen(INCLUDE_VIEWS, &views, 1)
}

/// `script` with the DOM helpers inlined, and the live strip when `live`.
fn with_dom(script: &str, live: bool) -> String {
    assert_eq!(script.matches(INCLUDE_DOM).count(), 1, "a page's script includes the DOM helpers once");
    assert_eq!(script.matches(INCLUDE_LIVE).count(), 1, "a page's script says where the live strip goes");
    script.replacen(INCLUDE_DOM, DOM, 1).replacen(INCLUDE_LIVE, if live { LIVE } else { "" }, 1)
}

/// The whole page for run `run_id` of spec `spec`, with `data` (JSON)
/// embedded.
pub fn render(spec: &str, run_id: &str, data: &str, nonce: &str) -> String {
    render_page(&format!("flow · {spec} · {run_id}"), data, nonce, "")
}

/// A report page titled `title`, with `data`; `connect` as
/// [`render_index`] has it (served: the page follows its run live).
pub fn render_page(title: &str, data: &str, nonce: &str, connect: &str) -> String {
    page(title, &script(!connect.is_empty()), data, nonce, connect)
}

/// The index of a workspace's runs, with `data` (JSON) embedded; `connect`
/// is what the page may connect to besides nothing (`'self'` when served).
pub fn render_index(workspace: &str, data: &str, nonce: &str, connect: &str) -> String {
    page(&format!("flow · runs · {workspace}"), &with_dom(INDEX_SCRIPT, !connect.is_empty()), data, nonce, connect)
}

/// A page: the template with `script` and `data`; `connect` allows the
/// page's `fetch` and `EventSource` to reach those sources (none: nothing).
pub fn page(title: &str, script: &str, data: &str, nonce: &str, connect: &str) -> String {
    let data = embed_json(data);
    let title = escape_html(title);
    let connect = if connect.is_empty() { String::new() } else { format!(" connect-src {connect};") };
    fill(
        TEMPLATE,
        &[
            ("NONCE", nonce),
            ("CONNECT", &connect),
            ("TITLE", &title),
            ("VERSION", env!("CARGO_PKG_VERSION")),
            ("STYLE", STYLE),
            ("SCRIPT", script),
            ("DATA", &data),
        ],
    )
}

/// `data` as JSON safe inside a `<script>` element: `<`, `>` and `&` only
/// occur inside JSON strings, where `\u003c` means the same, so no record
/// can close the element (`</script>`) or open a comment that changes how
/// the parser finds its end (`<!--<script>`).
fn embed_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    let mut rest = json;
    // Whole runs between the three bytes: a report's data is megabytes.
    while let Some(at) = rest.find(['<', '>', '&']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            _ => "\\u0026",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces each `{{NAME}}` of `template` with its value, in one pass: a
/// value is never scanned for markers itself.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("page.html: an unclosed {{ marker");
        let name = &after[..end];
        let value = values.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("page.html: no value for {name}"));
        out.push_str(value.1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_cannot_close_its_element() {
        let data = serde_json::json!({"output": "</script><script>alert(1)</script> <!--<script> a&b"});
        let embedded = embed_json(&data.to_string());
        assert!(!embedded.contains('<') && !embedded.contains('>') && !embedded.contains('&'), "{embedded}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&embedded).unwrap(), data);
    }

    #[test]
    fn inlined_code_cannot_end_its_element_early() {
        let views = flow_nodes::views().into_iter().map(|v| (v.name, v.script));
        let pages =
            [("page.js", SCRIPT), ("index.js", INDEX_SCRIPT), ("dom.js", DOM), ("live.js", LIVE), ("page.css", STYLE)];
        for (name, text) in pages.into_iter().chain(views) {
            let lower = text.to_ascii_lowercase();
            for bad in ["</script", "</style", "<!--", "{{"] {
                assert!(!lower.contains(bad), "{name} contains `{bad}`");
            }
        }
    }

    #[test]
    fn values_are_not_scanned_for_markers() {
        assert_eq!(fill("a{{X}}b{{Y}}", &[("X", "{{Y}}"), ("Y", "!")]), "a{{Y}}b!");
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = render("s<x>", "r1", r#"{"views":[]}"#, "n0nce");
        assert!(page.contains("function densityHistogram(") && !page.contains("@include"), "the views are inlined");
        assert_eq!(page.matches("function render(panel, v)").count(), flow_nodes::views().len());
        assert!(page.contains("<title>flow · s&lt;x&gt; · r1</title>"));
        assert!(page.contains("script-src 'nonce-n0nce'"));
        assert!(!page.contains("connect-src") && !page.contains("EventSource"), "a file follows no run");
        let served = render_page("t", r#"{"views":[]}"#, "n0nce", "'self'");
        assert!(
            served.contains("connect-src 'self';") && served.contains("new EventSource("),
            "a served page follows its run"
        );
        // The SVG namespace is a name and `url(#id)` a reference inside the
        // page, not fetches.
        let lower = page.to_ascii_lowercase().replace("\"http://www.w3.org/2000/svg\"", "").replace("url(#", "");
        for fetch in ["http://", "https://", " src=", "<link", "@import", "url("] {
            assert!(!lower.contains(fetch), "the page refers to `{fetch}`");
        }
    }
}
