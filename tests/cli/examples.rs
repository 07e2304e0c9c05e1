//! The shipped GitHub Actions workflow uses only what `flow` has: every
//! `flow SUBCOMMAND --flag` in `examples/github-actions/flow-eval.yml` is
//! in that subcommand's `--help`.

use crate::common::{repo, Project};

#[test]
fn the_github_actions_workflow_uses_only_flags_that_exist() {
    let text = std::fs::read_to_string(repo().join("examples/github-actions/flow-eval.yml")).unwrap();
    let p = Project::empty();
    let mut checked = 0;
    // The shell lines (`run: ...`), where flow is called.
    for line in text.lines().filter(|l| l.trim_start().starts_with("run: ")) {
        let Some(at) = line.find("flow ").filter(|&i| line[i + 5..].starts_with(|c: char| c.is_ascii_lowercase()))
        else {
            continue;
        };
        let words: Vec<&str> = line[at + 5..].split_whitespace().collect();
        // `flow cache gc` has a subcommand of its own.
        let n = if words[0] == "cache" { 2 } else { 1 };
        let sub = &words[..n];
        let help = p.flow(&[sub, &["--help"]].concat());
        assert_eq!(help.code, 0, "`flow {}` is not a command: {}", sub.join(" "), help.stderr);
        for flag in words[n..].iter().filter(|w| w.starts_with('-')) {
            let flag = flag.trim_end_matches(['"', ')']);
            assert!(help.stdout.contains(flag), "`flow {}` has no {flag}:\n{}", sub.join(" "), help.stdout);
            checked += 1;
        }
    }
    assert!(checked >= 6, "the workflow's flow commands were not found ({checked} flags)");
}
