//! A deterministic spec fuzzer: the shipped specs and the invalid fixtures,
//! mutated by a seeded PRNG (line, character and structure edits, invalid
//! UTF-8, deep nesting), each checked with `flow validate` in a copy of its
//! folder. Whatever the input, `flow` must answer 0 or 2 (never a panic or a
//! signal), within 2 s, and write nothing.
//!
//! `FLOW_FUZZ_CASES` (default 2000) and `FLOW_FUZZ_SEED` pick the cases; a
//! failing case is written to `target/tmp/fuzz-failures/` with its seed and
//! number, and `FLOW_FUZZ_CASE=N` reruns that one case alone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{repo, Rng, FLOW};

const DEFAULT_CASES: u64 = 2000;
const DEFAULT_SEED: u64 = 0x5eed_f10e;
const THREADS: u64 = 4;
const CASE_LIMIT: Duration = Duration::from_secs(2);

/// Characters that mean something to YAML, and bytes that mean trouble.
const SIGNIFICANT: &[&[u8]] = &[
    b":",
    b"-",
    b"[",
    b"]",
    b"{",
    b"}",
    b"#",
    b"&",
    b"*",
    b"!",
    b"|",
    b">",
    b"'",
    b"\"",
    b"%",
    b"@",
    b"`",
    b"\t",
    b"\0",
    b"\xef\xbb\xbf",
    b"\n",
    b" ",
    b": ",
    b"- ",
    b"\\",
    b"?",
    b",",
    b"${",
    b"{{",
];

const INVALID_UTF8: &[&[u8]] = &[b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82"];

fn scalars() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "[1, 2]",
        "{a: 1}",
        "[]",
        "{}",
        "1e400",
        "-1e400",
        "-0",
        "18446744073709551616",
        "-9223372036854775809",
        "340282366920938463463374607431768211456",
        "0x7fffffffffffffffffff",
        ".nan",
        ".inf",
        "-.inf",
        "~",
        "null",
        "true",
        "\"\"",
        "''",
        "-1",
        "0",
        "0.0000000000000000000001",
        "*nope",
        "&a x",
        "!!binary aGk=",
        "!custom x",
        "|\n  block",
        ">-\n  folded",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "99999999999s",
        "1e400ms",
        "- a\n- b",
        "\n  a: 1\n  b: [x]",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![b'x'; 200_000]);
    v.push(format!("\"{}\"", "\\u00e9".repeat(20_000)).into_bytes());
    v.push("{{ ".repeat(2_000).into_bytes());
    v
}

/// A few fixed shapes that stress the parsers' depth and alias handling.
fn deep(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(20_000);
    match rng.below(5) {
        0 => format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes(),
        1 => format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)).into_bytes(),
        2 => {
            let mut s = String::new();
            for i in 0..n.min(3_000) {
                s.push_str(&" ".repeat(i));
                s.push_str("a:\n");
            }
            s.into_bytes()
        }
        3 => "- ".repeat(n).into_bytes(),
        _ => {
            // Billion laughs: each alias doubles the one before.
            let mut s = String::from("a0: &a0 [lol, lol]\n");
            for i in 1..30 {
                s.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}]\n", p = i - 1));
            }
            s.into_bytes()
        }
    }
}

fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n').map(|l| l.to_vec()).collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.join(&b'\n')
}

/// One mutation of `text`; returns its name for the failure report.
fn mutate(rng: &mut Rng, text: &mut Vec<u8>, scalars: &[Vec<u8>]) -> &'static str {
    let len = text.len();
    match rng.below(14) {
        0..=2 => {
            let mut ls = lines(text);
            let i = rng.below(ls.len());
            let name = match rng.below(5) {
                0 => {
                    ls.remove(i);
                    "delete line"
                }
                1 => {
                    let l = ls[i].clone();
                    ls.insert(i, l);
                    "duplicate line"
                }
                2 => {
                    let j = rng.below(ls.len());
                    ls.swap(i, j);
                    "swap lines"
                }
                3 => {
                    let by = *rng.pick(&[1usize, 2, 4]);
                    ls[i].splice(0..0, std::iter::repeat_n(b' ', by));
                    "indent line"
                }
                _ => {
                    let n = ls[i].iter().take(2).take_while(|&&b| b == b' ').count();
                    ls[i].drain(..n);
                    "dedent line"
                }
            };
            if ls.is_empty() {
                ls.push(Vec::new());
            }
            *text = join(&ls);
            name
        }
        3..=5 => {
            let at = rng.below(len + 1);
            let s = rng.pick(SIGNIFICANT);
            text.splice(at..at, s.iter().copied());
            "insert char"
        }
        6 => {
            if len > 0 {
                text.remove(rng.below(len));
            }
            "delete char"
        }
        7 => {
            if len > 0 {
                let at = rng.below(len);
                let s = rng.pick(SIGNIFICANT);
                text.splice(at..at + 1, s.iter().copied());
            }
            "replace char"
        }
        8..=10 => {
            // A `key: value` line's value replaced by another shape.
            let mut ls = lines(text);
            let candidates: Vec<usize> = (0..ls.len()).filter(|&i| find(&ls[i], b": ").is_some()).collect();
            if let Some(&i) = candidates.get(rng.below(candidates.len())) {
                let at = find(&ls[i], b": ").unwrap() + 2;
                ls[i].truncate(at);
                let value: &Vec<u8> = rng.pick(scalars);
                ls[i].extend_from_slice(value);
                *text = join(&ls);
            }
            "replace scalar"
        }
        11 => {
            let at = rng.below(len + 1);
            let s = rng.pick(INVALID_UTF8);
            text.splice(at..at, s.iter().copied());
            "invalid utf-8"
        }
        12 => {
            match rng.below(3) {
                0 => drop(text.splice(0..0, b"\xef\xbb\xbf".iter().copied())),
                1 => text.truncate(rng.below(len + 1)),
                _ => drop(text.splice(0..0, b"%YAML 1.1\n---\n".iter().copied())),
            }
            "bom / truncate / directive"
        }
        _ => {
            // Deep nesting, rarely, as a value or as the whole file.
            if rng.below(4) == 0 {
                let mut ls = lines(text);
                let candidates: Vec<usize> = (0..ls.len()).filter(|&i| find(&ls[i], b": ").is_some()).collect();
                if let Some(&i) = candidates.get(rng.below(candidates.len())) {
                    let at = find(&ls[i], b": ").unwrap() + 2;
                    ls[i].truncate(at);
                    ls[i].extend_from_slice(&deep(rng));
                    *text = join(&ls);
                } else {
                    *text = deep(rng);
                }
                "deep nesting"
            } else {
                let at = rng.below(len + 1);
                text.splice(at..at, b"\t".iter().copied());
                "insert tab"
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The specs to mutate, as paths relative to the repository root.
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["specs", "specs/templates", "tests/fixtures/invalid"] {
        let mut here: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| p.strip_prefix(repo()).unwrap().to_path_buf())
            .collect();
        here.sort();
        out.extend(here);
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == ".flow" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

fn listing(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.insert(e.path());
        if e.file_type().unwrap().is_dir() {
            listing(&e.path(), out);
        }
    }
}

fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    listing(dir, &mut out);
    out
}

/// The mutated text of case `n`: the source it came from, the edits made.
fn case(
    seed: u64,
    n: u64,
    sources: &[PathBuf],
    originals: &[Vec<u8>],
    scalars: &[Vec<u8>],
) -> (usize, Vec<u8>, Vec<&'static str>) {
    let mut rng = Rng(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let src = (n as usize) % sources.len();
    let mut text = originals[src].clone();
    let edits = 1 + rng.below(3);
    let ops = (0..edits).map(|_| mutate(&mut rng, &mut text, scalars)).collect();
    (src, text, ops)
}

struct Failure {
    n: u64,
    source: PathBuf,
    ops: Vec<&'static str>,
    why: String,
    saved: PathBuf,
}

/// Runs `flow validate` on one mutated file; `Err` says what went wrong.
fn check(root: &Path, rel: &Path, text: &[u8], before: &BTreeSet<PathBuf>, out_dir: &Path) -> Result<(), String> {
    let file = root.join(rel);
    std::fs::write(&file, text).unwrap();
    let stdout = std::fs::File::create(out_dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(out_dir.join("stderr")).unwrap();
    let start = Instant::now();
    let mut child = Command::new(FLOW)
        .arg("validate")
        .arg(rel)
        .current_dir(root)
        .env_remove("FLOW_LOG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("flow starts");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > CASE_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("took over {CASE_LIMIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&std::fs::read(out_dir.join("stderr")).unwrap()).into_owned();
    let after = tree(root);
    let mut problems = Vec::new();
    match status.code() {
        Some(0) | Some(2) => {}
        Some(c) => problems.push(format!("exit code {c}")),
        None => problems.push(format!("killed by a signal ({status})")),
    }
    if err.contains("panicked") {
        problems.push("stderr says panicked".into());
    }
    if took > CASE_LIMIT {
        problems.push(format!("took {took:?}"));
    }
    if after != *before {
        let new: Vec<_> = after.difference(before).collect();
        problems.push(format!("wrote {new:?}"));
        for p in new {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\nstderr:\n{}", problems.join("; "), err.chars().take(2_000).collect::<String>()))
    }
}

#[test]
fn mutated_specs_never_panic_hang_or_write() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("FLOW_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    let seed = env("FLOW_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let only = env("FLOW_FUZZ_CASE");
    let sources = sources();
    let originals: Vec<Vec<u8>> = sources.iter().map(|p| std::fs::read(repo().join(p)).unwrap()).collect();
    let scalars = scalars();
    let failures_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let started = Instant::now();

    let failures: Vec<Failure> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (sources, originals, scalars, failures_dir) = (&sources, &originals, &scalars, &failures_dir);
                s.spawn(move || {
                    let work = tempfile::tempdir().unwrap();
                    let root = work.path().join("project");
                    for dir in ["specs", "tests/fixtures/invalid"] {
                        copy_tree(&repo().join(dir), &root.join(dir));
                    }
                    let before = tree(&root);
                    let mut failures = Vec::new();
                    let numbers: Vec<u64> = match only {
                        Some(n) if t == 0 => vec![n],
                        Some(_) => vec![],
                        None => (t..cases).step_by(THREADS as usize).collect(),
                    };
                    for n in numbers {
                        let (src, text, ops) = case(seed, n, sources, originals, scalars);
                        let rel = &sources[src];
                        let result = check(&root, rel, &text, &before, work.path());
                        std::fs::write(root.join(rel), &originals[src]).unwrap();
                        if let Err(why) = result {
                            std::fs::create_dir_all(failures_dir).unwrap();
                            let saved = failures_dir.join(format!("seed-{seed}-case-{n}.yaml"));
                            std::fs::write(&saved, &text).unwrap();
                            failures.push(Failure { n, source: rel.clone(), ops, why, saved });
                        }
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });

    let mut report = String::new();
    for f in failures.iter().take(10) {
        report.push_str(&format!(
            "\ncase {} (FLOW_FUZZ_SEED={seed} FLOW_FUZZ_CASE={}) from {} by {:?}: {}\n  mutated text: {}\n",
            f.n,
            f.n,
            f.source.display(),
            f.ops,
            f.why,
            f.saved.display()
        ));
    }
    let ran = if only.is_some() { 1 } else { cases };
    assert!(failures.is_empty(), "{} of {ran} fuzz cases failed (seed {seed}):{report}", failures.len());
    eprintln!("fuzz: {ran} cases, seed {seed}, {:.1?}", started.elapsed());
}
