//! The shipped examples use only what `flow` has: every `flow SUBCOMMAND
//! --flag` in a file under `examples/` (the GitHub Actions workflows, the
//! Slurm script, the Kubernetes Jobs) is in that subcommand's `--help`.

use crate::common::{files_under, repo, Project};

const SUBCOMMANDS: &[&str] = &["run", "plan", "validate", "show", "runs", "view", "schema", "init", "cache", "compare"];

#[test]
fn the_examples_use_only_flags_that_exist() {
    let p = Project::empty();
    let mut checked = Vec::new();
    for file in files_under(&repo().join("examples")).into_iter().filter(|p| p.extension().is_some_and(|x| x != "md")) {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut flags = 0;
        // Command lines, not comments.
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let mut rest = line;
            while let Some(at) = rest.find("flow ") {
                let words: Vec<&str> = rest[at + 5..]
                    .split_whitespace()
                    .take_while(|w| !matches!(*w, "&&" | "||" | "|" | ";" | "\""))
                    .collect();
                rest = &rest[at + 5..];
                let Some(first) = words.first().filter(|w| SUBCOMMANDS.contains(w)) else { continue };
                // `flow cache gc` has a subcommand of its own.
                let n = if *first == "cache" { 2 } else { 1 };
                let sub = &words[..n.min(words.len())];
                let help = p.flow(&[sub, &["--help"]].concat());
                assert_eq!(
                    help.code,
                    0,
                    "{}: `flow {}` is not a command: {}",
                    file.display(),
                    sub.join(" "),
                    help.stderr
                );
                for flag in words[n.min(words.len())..].iter().filter(|w| w.starts_with('-')) {
                    let flag = flag.trim_end_matches(['"', ')', '&']);
                    assert!(
                        help.stdout.contains(flag),
                        "{}: `flow {}` has no {flag}:\n{}",
                        file.display(),
                        sub.join(" "),
                        help.stdout
                    );
                    flags += 1;
                }
            }
        }
        checked.push((file.file_name().unwrap().to_string_lossy().into_owned(), flags));
    }
    for (file, flags) in &checked {
        assert!(*flags >= 2, "no flow command with flags found in {file}: {checked:?}");
    }
    assert!(checked.len() >= 5, "{checked:?}");
}
