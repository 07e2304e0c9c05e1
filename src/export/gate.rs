//! A tripped gate's text, short enough to read: the figures stay whole, a
//! list of record ids keeps its first few and points at `flow show` for the
//! rest. The text comes from the node (compare, evaluate); this only trims
//! how it is printed, so it reads any gate that lists ids as `label: a, b, c`.

/// Ids kept of a list before "and N more".
pub const IDS_SHOWN: usize = 10;

/// Shortens every id list in `text` (segments `label: id, id, ...`
/// separated by `; `, one rule per line) to [`IDS_SHOWN`] ids and
/// "and N more (flow show NODE)".
pub fn shorten_ids(text: &str, node: &str) -> String {
    text.lines().map(|line| shorten_line(line, node)).collect::<Vec<_>>().join("\n")
}

/// A node's gate text as printed once: ids shortened, and an id list that
/// several rules' lines repeat (`pass → fail: ...`) kept on the last only.
pub fn gate_lines(text: &str, node: &str) -> Vec<String> {
    let lines: Vec<Vec<String>> =
        shorten_ids(text, node).lines().map(|l| l.split("; ").map(str::to_string).collect()).collect();
    lines
        .iter()
        .enumerate()
        .map(|(i, segs)| {
            let later = &lines[i + 1..];
            let kept: Vec<&str> = segs
                .iter()
                .enumerate()
                .filter(|(k, s)| *k == 0 || !later.iter().any(|l| l[1..].contains(s)))
                .map(|(_, s)| s.as_str())
                .collect();
            kept.join("; ")
        })
        .collect()
}

fn shorten_line(line: &str, node: &str) -> String {
    line.split("; ").map(|seg| shorten_segment(seg, node)).collect::<Vec<_>>().join("; ")
}

fn shorten_segment(seg: &str, node: &str) -> String {
    let Some((label, list)) = seg.split_once(": ") else { return seg.to_string() };
    let mut items: Vec<&str> = list.split(", ").collect();
    // A list the node already cut: `a, b and 4 more`.
    let mut more = 0usize;
    if let Some(last) = items.last_mut() {
        if let Some((id, n)) = last
            .split_once(" and ")
            .and_then(|(id, rest)| rest.strip_suffix(" more").and_then(|n| n.parse::<usize>().ok()).map(|n| (id, n)))
        {
            *last = id;
            more = n;
        }
    }
    let ids_only = items.iter().all(|i| !i.is_empty() && !i.contains(char::is_whitespace));
    if !ids_only || (items.len() <= IDS_SHOWN && more == 0) {
        return seg.to_string();
    }
    let left = items.len().saturating_sub(IDS_SHOWN) + more;
    items.truncate(IDS_SHOWN);
    format!("{label}: {} and {left} more (flow show {node})", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_id_lists_keep_ten_and_say_where_the_rest_are() {
        let ids: Vec<String> = (1..=24).map(|i| format!("c{i:02}")).collect();
        let text = format!(
            "exact_match dropped 0.317 (0.917 → 0.600, 95% CI [-0.467, -0.167], p<0.001) > 0.02 (fail_if[0]: drop_more_than); pass → fail: {} and 4 more; fail → pass: a, b",
            ids[..20].join(", ")
        );
        let short = shorten_ids(&text, "ab");
        assert_eq!(
            short,
            "exact_match dropped 0.317 (0.917 → 0.600, 95% CI [-0.467, -0.167], p<0.001) > 0.02 (fail_if[0]: drop_more_than); pass → fail: c01, c02, c03, c04, c05, c06, c07, c08, c09, c10 and 14 more (flow show ab); fail → pass: a, b"
        );
    }

    #[test]
    fn an_id_list_two_rules_repeat_is_said_once() {
        let text = "drop 0.3 > 0.02 (fail_if[0]); pass → fail: a, b\nsignificant (fail_if[1]); pass → fail: a, b";
        assert_eq!(
            gate_lines(text, "ab"),
            ["drop 0.3 > 0.02 (fail_if[0])", "significant (fail_if[1]); pass → fail: a, b"]
        );
    }

    #[test]
    fn prose_and_short_lists_are_left_alone() {
        for t in ["pass rate 0.50 < 0.90 (fail_if[0]: pass_rate_below)", "failed: a, b, c", "note: one two, three four"]
        {
            assert_eq!(shorten_ids(t, "n"), t);
        }
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(
            shorten_ids(&format!("x: {}", eleven.join(", ")), "n"),
            "x: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 1 more (flow show n)"
        );
    }
}
