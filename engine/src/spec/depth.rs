//! A cheap look at how deeply a spec nests, before the YAML parser sees it:
//! the parser's scanner takes time superlinear in the depth (a 200 KB spec
//! nested 100,000 deep kept `flow validate` busy for a minute), and no real
//! spec nests past a few dozen levels.

/// The deepest nesting a spec may have: block levels (indentation and `- `
/// items) plus flow levels (`[` and `{`).
pub const MAX_DEPTH: usize = 200;

/// Where (line, column, 1-based) `text` first nests deeper than
/// [`MAX_DEPTH`], if it does. Quoted strings and comments do not count; a
/// bracket in a plain scalar may (an overestimate, never under).
pub fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut col = line.len() - trimmed.len();
        if flow == 0 {
            while indents.last().is_some_and(|&i| i >= col) {
                indents.pop();
            }
            indents.push(col);
        }
        // `- - - x`: each dash opens a level.
        let mut rest = trimmed;
        let mut dashes = 0;
        while let Some(after) = rest.strip_prefix("- ") {
            dashes += 1;
            col += 2;
            rest = after.trim_start_matches(' ');
        }
        if indents.len() + dashes > MAX_DEPTH {
            return Some((n + 1, col + 1));
        }
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            match quote {
                Some('"') if escaped => escaped = false,
                Some('"') if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' => quote = Some(c),
                    '#' if rest[..i].ends_with([' ', '\t']) => break,
                    '[' | '{' => {
                        flow += 1;
                        if indents.len() + dashes + flow > MAX_DEPTH {
                            return Some((n + 1, col + i + 1));
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_are_found_where_they_pass_the_limit() {
        let flow = format!("nodes: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(too_deep(&flow), Some((1, 8 + MAX_DEPTH - 1)));
        let dashes = format!("a:\n  {}x\n", "- ".repeat(MAX_DEPTH + 5));
        assert!(too_deep(&dashes).is_some_and(|(line, _)| line == 2));
        let block: String = (0..MAX_DEPTH + 1).map(|d| format!("{}k{d}:\n", " ".repeat(d))).collect();
        assert_eq!(too_deep(&block).map(|(l, _)| l), Some(MAX_DEPTH + 1));
        // The shipped specs, quoted brackets and comments are fine.
        let ok = "flow: 1\nnodes:\n  a: {kind: load, path: \"[[[[[[\"}  # {{{{{{{\n  b: '[[[['\n";
        assert_eq!(too_deep(ok), None);
        for spec in ["demo", "eval", "ab", "templated", "self-improve"] {
            let path = format!("{}/../specs/{spec}.yaml", env!("CARGO_MANIFEST_DIR"));
            assert_eq!(too_deep(&std::fs::read_to_string(path).unwrap()), None, "{spec}");
        }
    }
}
