//! What a node name written in a spec or a template refers to.
//!
//! Templates expand under a namespace: the nodes of `baseline: {uses:
//! templates/eval.yaml}` are `baseline.answers` and `baseline.scores`. Each
//! file instance is a [`Scope`]: inside the template, `input: answers` means
//! `baseline.answers`; in the spec, `baseline.scores` names the template's
//! node. A template's `node` inputs are bound to nodes of the scope that
//! uses it, and a `matrix:` node's name stands for all its copies. Names are
//! resolved once every scope is complete, so a node may name one written
//! after it, as in a spec.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::matrix::name_chars;
use super::SpecFile;
use crate::diag::suggest;

/// The nodes one file instance (the spec, or one use of a template) defines.
#[derive(Debug)]
pub struct Scope {
    /// The scope of the file that uses this template; `None` for the spec.
    pub parent: Option<usize>,
    /// Prepended to the names written here: `baseline.` for the nodes of
    /// template instance `baseline`, empty for the spec's own nodes.
    pub prefix: String,
    pub file: Arc<SpecFile>,
    /// Every node reachable from here by the name written here (`answers`,
    /// `answers[model=a]`, `inner.scores` for a nested template's node) →
    /// its full name.
    pub(super) locals: BTreeMap<String, String>,
    /// `matrix:` nodes by the name written → their copies' local names, in
    /// matrix order.
    pub(super) groups: BTreeMap<String, Vec<String>>,
    /// The template's `node` inputs → the full name of the node of the using
    /// scope each is bound to (`None`: missing or rejected, already reported).
    pub(super) bindings: BTreeMap<String, Option<String>>,
    /// The template's inputs that are values, not nodes (for the hint when
    /// one is read as a node).
    pub(super) value_inputs: BTreeSet<String>,
    /// Names (and namespaces) whose definition was rejected: a reference to
    /// one is not reported a second time.
    pub(super) broken: BTreeSet<String>,
}

impl Scope {
    pub(super) fn new(parent: Option<usize>, prefix: String, file: Arc<SpecFile>) -> Self {
        Self {
            parent,
            prefix,
            file,
            locals: BTreeMap::new(),
            groups: BTreeMap::new(),
            bindings: BTreeMap::new(),
            value_inputs: BTreeSet::new(),
            broken: BTreeSet::new(),
        }
    }

    fn is_broken(&self, name: &str) -> bool {
        self.broken.iter().any(|b| {
            name == b
                || name.strip_prefix(b.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    /// Local names under namespace or matrix `name` (`baseline` →
    /// `baseline.answers`, `baseline.scores`).
    fn under(&self, name: &str) -> Vec<&str> {
        self.locals
            .keys()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('[')))
            .map(String::as_str)
            .collect()
    }
}

/// Every scope of a spec: index 0 is the spec itself.
#[derive(Debug, Default)]
pub struct Scopes(pub Vec<Scope>);

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Full names of the nodes it names (several for a matrix node read
    /// with `inputs:`).
    Nodes(Vec<String>),
    /// It names something whose problem is already reported.
    Reported,
}

/// Why a reference does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// Nothing has this name; the hint says what is close.
    Unknown { hint: String },
    /// A `matrix:` node read where one node is expected; `first` is the
    /// local name of its first copy.
    Matrix { copies: usize, first: String, hint: String },
}

impl Scopes {
    pub fn get(&self, scope: usize) -> &Scope {
        &self.0[scope]
    }

    /// Resolves `written`, a node name as written in `scope` by the node
    /// whose local name is `reader` (left out of did-you-means). With
    /// `many` (`inputs: [...]`), a matrix node's name stands for all its
    /// copies; otherwise it must have one.
    pub fn resolve(&self, scope: usize, written: &str, many: bool, reader: &str) -> Result<Resolved, Unresolved> {
        let s = &self.0[scope];
        let written = normalize(written);
        let written = written.as_str();
        if let Some(q) = s.locals.get(written) {
            return Ok(Resolved::Nodes(vec![q.clone()]));
        }
        if let Some(copies) = s.groups.get(written) {
            if many || copies.len() == 1 {
                // A copy past the node limit was never added (already reported).
                return Ok(Resolved::Nodes(copies.iter().filter_map(|c| s.locals.get(c).cloned()).collect()));
            }
            let hint = format!(
                "name one copy (`{}`), read them all with `inputs: [{written}]`, or give this node the same `matrix:` and read its copy: `{written}[{}]`",
                copies[0],
                matrix_pattern(&copies[0]),
            );
            return Err(Unresolved::Matrix { copies: copies.len(), first: copies[0].clone(), hint });
        }
        if let Some(bound) = s.bindings.get(written) {
            return Ok(match bound {
                Some(q) => Resolved::Nodes(vec![q.clone()]),
                None => Resolved::Reported,
            });
        }
        if s.is_broken(written) {
            return Ok(Resolved::Reported);
        }
        let hint = if s.value_inputs.contains(written) {
            format!(
                "`{written}` is an input of this template that holds a value; to read a node of the using spec, declare it `{written}: {{type: node}}`"
            )
        } else if let Some(nodes) = Some(s.under(written)).filter(|n| !n.is_empty()) {
            let shown: Vec<String> = nodes.iter().take(6).map(|n| format!("`{n}`")).collect();
            let more = if nodes.len() > 6 { format!(" and {} more", nodes.len() - 6) } else { String::new() };
            let what = if nodes.iter().all(|n| n[written.len()..].starts_with('.')) {
                "uses a template"
            } else {
                "is a matrix of template uses"
            };
            format!("`{written}` {what} and is not a node itself; name one of its nodes: {}{more}", shown.join(", "))
        } else {
            let names = s
                .locals
                .keys()
                .chain(s.groups.keys())
                .chain(s.bindings.keys())
                .map(String::as_str)
                .filter(|n| *n != reader)
                .collect::<BTreeSet<_>>();
            suggest(written, names.iter().copied(), "an input")
        };
        Err(Unresolved::Unknown { hint })
    }
}

/// `answers[model = a, temp = 0]` reads as `answers[model=a,temp=0]`, and
/// a value reads as it does in the copy's name: `answers[model=org/m]`
/// (or `[model=${matrix.model}]` with that value) names `answers[model=org_m]`.
fn normalize(written: &str) -> String {
    let Some((base, rest)) = written.split_once('[') else {
        return written.trim().to_string();
    };
    let Some((inner, tail)) = rest.split_once(']') else {
        return format!("{}[{}", base.trim(), rest.chars().filter(|c| !c.is_whitespace()).collect::<String>());
    };
    let is_key = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    // A `,` not followed by `key=` is part of a value (`[model=a,b]`).
    let mut pairs: Vec<(String, String)> = Vec::new();
    for piece in inner.split(',') {
        match (piece.split_once('=').filter(|(k, _)| is_key(k.trim())), pairs.last_mut()) {
            (Some((k, v)), _) => pairs.push((k.trim().to_string(), v.trim().to_string())),
            (None, Some((_, v))) => {
                v.push(',');
                v.push_str(piece.trim());
            }
            (None, None) => pairs.push((String::new(), piece.trim().to_string())),
        }
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| if k.is_empty() { name_chars(v) } else { format!("{k}={}", name_chars(v)) })
        .collect();
    // The rest (`.scores` after a matrix of template uses) may name another copy.
    format!("{}[{}]{}", base.trim(), inner.join(","), normalize(tail).trim_start())
}

/// `answers[model=a,temp=0]` → `model=${matrix.model},temp=${matrix.temp}`.
fn matrix_pattern(copy: &str) -> String {
    let inner = copy.rsplit_once('[').map(|(_, r)| r.trim_end_matches(']')).unwrap_or("");
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| format!("{k}=${{matrix.{k}}}")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Source;
    use crate::spec::LocationIndex;

    #[test]
    fn references_read_values_as_copy_names_do() {
        assert_eq!(normalize(" answers [model = llama3:8b, temp = 0.5] "), "answers[model=llama3_8b,temp=0.5]");
        assert_eq!(normalize("answers[model=org/m]"), "answers[model=org_m]");
        assert_eq!(normalize("answers[model=a,b]"), "answers[model=a_b]");
        assert_eq!(normalize("ab[model=x:y].scores"), "ab[model=x_y].scores");
        assert_eq!(normalize("plain"), "plain");
        assert_eq!(normalize("broken[model=a"), "broken[model=a");
    }

    fn file() -> Arc<SpecFile> {
        Arc::new(SpecFile {
            source: Source { path: "s.yaml".into(), text: "".into() },
            dir: ".".into(),
            index: LocationIndex::default(),
            template: true,
        })
    }

    fn scopes() -> Scopes {
        let mut root = Scope::new(None, String::new(), file());
        for (l, q) in [
            ("cases", "cases"),
            ("answers[model=a]", "answers[model=a]"),
            ("answers[model=b]", "answers[model=b]"),
            ("baseline.answers", "baseline.answers"),
            ("baseline.scores", "baseline.scores"),
        ] {
            root.locals.insert(l.into(), q.into());
        }
        root.groups.insert("answers".into(), vec!["answers[model=a]".into(), "answers[model=b]".into()]);
        let mut t = Scope::new(Some(0), "baseline.".into(), file());
        t.locals.insert("answers".into(), "baseline.answers".into());
        t.locals.insert("scores".into(), "baseline.scores".into());
        t.bindings.insert("cases".into(), Some("cases".into()));
        t.bindings.insert("rules".into(), None);
        t.value_inputs.insert("backend".into());
        Scopes(vec![root, t])
    }

    #[test]
    fn names_resolve_in_their_scope() {
        let s = scopes();
        let nodes = |v: &[&str]| Ok(Resolved::Nodes(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(s.resolve(1, "answers", false, "scores"), nodes(&["baseline.answers"]));
        assert_eq!(s.resolve(1, "cases", false, "answers"), nodes(&["cases"]));
        assert_eq!(s.resolve(1, "rules", false, "answers"), Ok(Resolved::Reported));
        assert_eq!(s.resolve(0, "baseline.scores", false, "ab"), nodes(&["baseline.scores"]));
        assert_eq!(s.resolve(0, "answers [model = b]", false, "x"), nodes(&["answers[model=b]"]));
        assert_eq!(s.resolve(0, "answers", true, "x"), nodes(&["answers[model=a]", "answers[model=b]"]));
    }

    #[test]
    fn misses_say_what_is_there() {
        let s = scopes();
        let hint = |r| match r {
            Err(Unresolved::Unknown { hint }) | Err(Unresolved::Matrix { hint, .. }) => hint,
            other => panic!("{other:?}"),
        };
        assert_eq!(hint(s.resolve(1, "scorez", false, "x")), "did you mean `scores`?");
        assert!(hint(s.resolve(1, "backend", false, "x")).contains("{type: node}"));
        assert!(hint(s.resolve(0, "baseline", false, "x")).contains("`baseline.answers`, `baseline.scores`"));
        let h = hint(s.resolve(0, "answers", false, "x"));
        assert!(h.contains("`answers[model=${matrix.model}]`"), "{h}");
    }
}
