//! Template files (`uses: templates/eval.yaml`): read once per spec, their
//! typed `inputs:` declared, and the values a `with:` gives them checked.
//!
//! A template is a spec fragment: `flow: 1`, an optional `description`, the
//! `inputs:` it takes and the `nodes:` it adds. It declares no params,
//! backends or prices: it reads values through its inputs and calls the
//! backends of the spec that uses it, by the names it is given.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use serde_yaml::{Mapping, Value};

use super::interp::{Interp, Vars};
use super::{check_version, coerce, infer_type, read_yaml, unknown_fields, yaml_brief, SpecFile, YamlPath};
use crate::diag::{did_you_mean, suggest, Diagnostic};

const TEMPLATE_FIELDS: &[&str] = &["flow", "description", "inputs", "nodes"];
const INPUT_FIELDS: &[&str] = &["type", "default", "description", "values"];
const INPUT_TYPES: &[&str] = &["string", "int", "float", "bool", "enum", "list", "node"];

/// A template file, read and checked.
#[derive(Debug)]
pub(super) struct TemplateFile {
    pub file: Arc<SpecFile>,
    /// The file's canonical path: what cycles and the cache compare.
    pub canonical: PathBuf,
    pub inputs: Vec<InputDecl>,
    /// The `nodes:` value, expanded once per use.
    pub nodes: Option<Value>,
}

/// One entry of a template's `inputs:`.
#[derive(Debug)]
pub(super) struct InputDecl {
    pub name: String,
    pub ty: InputType,
    pub default: Option<serde_json::Value>,
    pub description: Option<String>,
    /// Where it is declared (`inputs.<name>`).
    pub path: YamlPath,
    /// The declaration was rejected (reported): a use gives it no value,
    /// and says nothing more about it.
    pub broken: bool,
}

impl InputDecl {
    fn broken(name: String, path: YamlPath) -> Self {
        Self { name, ty: InputType::String, default: None, description: None, path, broken: true }
    }
}

/// What an input holds.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum InputType {
    String,
    Int,
    Float,
    Bool,
    Enum(Vec<String>),
    List,
    /// A node of the using spec, which the template's nodes may read.
    Node,
}

impl InputType {
    fn name(&self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Int => "int",
            InputType::Float => "float",
            InputType::Bool => "bool",
            InputType::Enum(_) => "enum",
            InputType::List => "list",
            InputType::Node => "node",
        }
    }

    /// What a value must be, for messages.
    fn must_be(&self) -> String {
        match self {
            InputType::String => "a string".into(),
            InputType::Int => "an int (a whole number)".into(),
            InputType::Float => "a float".into(),
            InputType::Bool => "true or false".into(),
            InputType::Enum(values) => {
                format!("one of {}", super::backticked(&values.iter().map(String::as_str).collect::<Vec<_>>()))
            }
            InputType::List => "a list".into(),
            InputType::Node => "the name of a node".into(),
        }
    }

    /// An example value, for the hint when one is missing.
    fn example(&self) -> String {
        match self {
            InputType::String => "<text>".into(),
            InputType::Int => "<whole number>".into(),
            InputType::Float => "<number>".into(),
            InputType::Bool => "true".into(),
            InputType::Enum(values) => values.first().cloned().unwrap_or_default(),
            InputType::List => "[...]".into(),
            InputType::Node => "<a node of this spec>".into(),
        }
    }

    /// `v` as a value of this type.
    fn check(&self, v: &Value) -> Option<serde_json::Value> {
        match self {
            InputType::String => match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => coerce(v, "string"),
                _ => None,
            },
            InputType::Int => coerce(v, "int"),
            InputType::Float => coerce(v, "float"),
            InputType::Bool => coerce(v, "bool"),
            InputType::Enum(values) => match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    let text = yaml_brief(v);
                    values.contains(&text).then_some(serde_json::Value::String(text))
                }
                _ => None,
            },
            InputType::List => match v {
                Value::Sequence(_) => serde_json::to_value(v).ok(),
                _ => None,
            },
            InputType::Node => match v {
                Value::String(s) => Some(serde_json::Value::String(s.clone())),
                _ => None,
            },
        }
    }
}

/// The template at `written` (relative to the folder of `from`, where the
/// `uses:` at `at` names it), read and checked once per spec; `None` when it
/// cannot be used (reported).
pub(super) fn load(
    from: &SpecFile,
    written: &str,
    at: &YamlPath,
    diags: &mut Vec<Diagnostic>,
    cache: &mut HashMap<PathBuf, Option<Rc<TemplateFile>>>,
) -> Option<Rc<TemplateFile>> {
    let shown = normalize(&from.resolve(written));
    let canonical = match std::fs::canonicalize(&shown) {
        Ok(c) => c,
        Err(_) => {
            // The resolved path, when it says more than the path written.
            let resolved = shown.display().to_string();
            let resolved = if resolved == written { String::new() } else { format!(" ({resolved})") };
            diags.push(
                from.at_value(at, format!("template `{written}` not found{resolved}"))
                    .hint(not_found_hint(from, written, &shown)),
            );
            return None;
        }
    };
    if let Some(t) = cache.get(&canonical) {
        return t.clone();
    }
    let t = read(&shown, canonical.clone(), from, written, at, diags).map(Rc::new);
    cache.insert(canonical, t.clone());
    t
}

fn not_found_hint(from: &SpecFile, written: &str, shown: &Path) -> String {
    let dir = shown.parent().unwrap_or(Path::new("."));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    names.sort();
    let file_name = shown.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let written_dir = written.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
    match did_you_mean(&file_name, names.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{written_dir}{c}`?"),
        None if !names.is_empty() => format!(
            "templates in {}: {}",
            dir.display(),
            names.iter().map(|n| format!("`{written_dir}{n}`")).collect::<Vec<_>>().join(", ")
        ),
        None => format!("paths resolve against the folder of the file that names them ({})", from.dir.display()),
    }
}

/// `specs/./templates/../t.yaml` → `specs/t.yaml`, for display.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn read(
    shown: &Path,
    canonical: PathBuf,
    from: &SpecFile,
    written: &str,
    at: &YamlPath,
    diags: &mut Vec<Diagnostic>,
) -> Option<TemplateFile> {
    let text = match std::fs::read(&canonical) {
        Ok(bytes) => match super::text::decode(shown, bytes) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                return None;
            }
        },
        Err(e) => {
            diags.push(from.at_value(at, format!("cannot read template `{written}` ({}): {e}", shown.display())));
            return None;
        }
    };
    let (file, value) = match read_yaml(shown, text) {
        Ok(x) => x,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let root = YamlPath::root();
    let Some(top) = value.as_mapping() else {
        diags.push(
            file.at_value(&root, "a template must be a YAML mapping")
                .hint("start it with `flow: 1`, then its `inputs:` and `nodes:`"),
        );
        return None;
    };
    check_version(&file, diags, top);
    for key in top.keys() {
        let k = yaml_brief(key);
        let hint = match k.as_str() {
            "params" => "declare `inputs:` instead (`inputs: {threshold: {type: float, default: 0.8}}`), read them as `${inputs.NAME}`, and pass values from the spec with `with:`",
            "backends" | "prices" => "declare them once in the spec that uses the template, and pass a backend's name as a `string` input",
            _ => continue,
        };
        diags.push(file.at_key(&root.key(k.clone()), format!("a template cannot declare `{k}`")).hint(hint));
    }
    let known = |k: &&Value| !matches!(yaml_brief(k).as_str(), "params" | "backends" | "prices");
    let rest: Mapping = top.iter().filter(|(k, _)| known(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    unknown_fields(&file, diags, &rest, &root, TEMPLATE_FIELDS, "at the top of the template");
    let nodes = top.get("nodes").cloned();
    let inputs = input_decls(&file, diags, top.get("inputs"), nodes.as_ref());
    Some(TemplateFile { file: Arc::new(SpecFile { template: true, ..file }), canonical, inputs, nodes })
}

/// Reads `inputs:`: each `name: {type, default, description, values}`, or
/// `name: <default>` with the type of the default.
fn input_decls(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    value: Option<&Value>,
    nodes: Option<&Value>,
) -> Vec<InputDecl> {
    let at = YamlPath::root().key("inputs");
    let map = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Mapping(m)) => m,
        Some(_) => {
            diags.push(
                file.at_value(&at, "`inputs` must be a mapping from input name to declaration")
                    .hint("write `inputs: {cases: {type: node}, threshold: {type: float, default: 0.8}}`"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let name = yaml_brief(k);
        let path = at.key(name.clone());
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            diags.push(
                file.at_key(&path, format!("invalid input name `{name}`"))
                    .hint("use letters, digits, `_` and `-`, starting with a letter"),
            );
            continue;
        }
        let (decl, default, description) = match v {
            Value::Mapping(decl) => {
                unknown_fields(file, diags, decl, &path, INPUT_FIELDS, &format!("in input `{name}`"));
                let description = decl.get("description").and_then(Value::as_str).map(str::to_string);
                (Some(decl), decl.get("default").cloned(), description)
            }
            scalar => (None, Some(scalar.clone()), None),
        };
        let ty = match decl.and_then(|d| d.get("type")).map(yaml_brief) {
            Some(t) => match t.as_str() {
                "string" => InputType::String,
                "int" => InputType::Int,
                "float" => InputType::Float,
                "bool" => InputType::Bool,
                "list" => InputType::List,
                "node" => InputType::Node,
                "enum" => match decl.and_then(|d| d.get("values")) {
                    Some(Value::Sequence(items))
                        if !items.is_empty()
                            && items
                                .iter()
                                .all(|i| matches!(i, Value::String(_) | Value::Number(_) | Value::Bool(_))) =>
                    {
                        InputType::Enum(items.iter().map(yaml_brief).collect())
                    }
                    Some(_) => {
                        diags.push(
                            file.at_value(
                                &path.key("values"),
                                format!("`values` of input `{name}` must be a non-empty list of strings"),
                            )
                            .hint("write `values: [strict, lenient]`"),
                        );
                        out.push(InputDecl::broken(name, path));
                        continue;
                    }
                    None => {
                        diags.push(
                            file.at_key(&path.key("type"), format!("input `{name}` is an enum with no `values`"))
                                .hint("list what it may be: `values: [strict, lenient]`"),
                        );
                        out.push(InputDecl::broken(name, path));
                        continue;
                    }
                },
                _ => {
                    diags.push(file.at_value(&path.key("type"), format!("unknown input type `{t}`")).hint(suggest(
                        &t,
                        INPUT_TYPES.iter().copied(),
                        "an input type",
                    )));
                    out.push(InputDecl::broken(name, path));
                    continue;
                }
            },
            None => match &default {
                Some(Value::Sequence(_)) => InputType::List,
                Some(d) => match infer_type(d) {
                    "int" => InputType::Int,
                    "float" => InputType::Float,
                    "bool" => InputType::Bool,
                    _ => InputType::String,
                },
                None => InputType::String,
            },
        };
        if ty != InputType::String
            && !matches!(ty, InputType::Enum(_))
            && decl.is_some_and(|d| d.contains_key("values"))
        {
            diags.push(
                file.at_key(
                    &path.key("values"),
                    format!("`values` is for enum inputs, and `{name}` is a {}", ty.name()),
                )
                .hint(format!("write `type: enum` to limit `{name}` to these values")),
            );
        }
        let mut broken = false;
        let default = match default {
            None => None,
            Some(_) if ty == InputType::Node => {
                diags.push(
                    file.at_key(&path.key("default"), format!("input `{name}` is a node and cannot have a default"))
                        .hint("the spec that uses the template names the node with `with:`"),
                );
                None
            }
            Some(d) => match ty.check(&d) {
                Some(v) => Some(v),
                None => {
                    diags.push(
                        file.at_value(
                            &path.key("default"),
                            format!("default of input `{name}` is not {}", ty.must_be()),
                        )
                        .hint(format!("`{name}` is declared `type: {}`", ty.name())),
                    );
                    broken = true;
                    None
                }
            },
        };
        if ty == InputType::Node && nodes.and_then(|n| n.get(name.as_str())).is_some() {
            diags.push(
                file.at_key(&path, format!("input `{name}` has the name of a node of the template"))
                    .hint("rename one: inside the template, a name in `input:` must say which node it means"),
            );
            broken = true;
        }
        out.push(InputDecl { name, ty, default, description, path, broken });
    }
    out
}

/// The values a `with:` gives a template's inputs.
pub(super) struct Bound {
    /// `${inputs.NAME}` values; `None` for an input that has none (reported).
    /// A `node` input's value is its own name, which the template's nodes
    /// read like one of their own.
    pub values: BTreeMap<String, Option<serde_json::Value>>,
    /// `node` inputs given: (input, node name as written, where in `with:`).
    pub nodes: Vec<(String, String, YamlPath)>,
}

/// Checks node `node`'s `with:` (at `path.with` in `file`) against the
/// template it `uses` (`written`).
#[allow(clippy::too_many_arguments)]
pub(super) fn bind(
    file: &SpecFile,
    diags: &mut Vec<Diagnostic>,
    tpl: &TemplateFile,
    written: &str,
    node: &str,
    path: &YamlPath,
    with: Option<&Value>,
    vars: &Vars,
) -> Bound {
    let wpath = path.key("with");
    let given: Mapping = match with {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Mapping(m)) => m.clone(),
        Some(_) => {
            diags.push(
                file.at_value(&wpath, format!("`with` of node `{node}` must map the template's inputs to values"))
                    .hint("write `with: {cases: cases, backend: bot}`"),
            );
            Mapping::new()
        }
    };
    for k in given.keys() {
        let k = yaml_brief(k);
        if !tpl.inputs.iter().any(|d| d.name == k) {
            let hint = if tpl.inputs.is_empty() {
                format!("the template declares no `inputs:` ({})", tpl.file.source.path.display())
            } else {
                suggest(&k, tpl.inputs.iter().map(|d| d.name.as_str()), "an input")
            };
            diags.push(
                file.at_key(&wpath.key(k.clone()), format!("template `{written}` has no input `{k}`")).hint(hint),
            );
        }
    }
    let mut bound = Bound { values: BTreeMap::new(), nodes: Vec::new() };
    for decl in &tpl.inputs {
        if decl.broken {
            bound.values.insert(decl.name.clone(), None);
            continue;
        }
        let declared =
            format!("`{}` is declared `type: {}` at {}", decl.name, decl.ty.name(), tpl.file.position(&decl.path));
        let value = match given.get(decl.name.as_str()) {
            Some(v) => {
                let at = wpath.key(decl.name.clone());
                let mut interp = Interp::new(file, diags);
                let v = interp.value(v, &at, vars);
                if interp.unresolved {
                    None
                } else if let Some(checked) = decl.ty.check(&v) {
                    if decl.ty == InputType::Node {
                        bound.nodes.push((decl.name.clone(), yaml_brief(&v), at));
                        Some(serde_json::Value::String(decl.name.clone()))
                    } else {
                        Some(checked)
                    }
                } else {
                    let shown = match &v {
                        Value::Sequence(_) => "a list".to_string(),
                        Value::Mapping(_) => "a mapping".to_string(),
                        other => format!("`{}`", yaml_brief(other)),
                    };
                    let hint = match &decl.ty {
                        InputType::Enum(values) if matches!(v, Value::String(_)) => {
                            match did_you_mean(&yaml_brief(&v), values.iter().map(String::as_str)) {
                                Some(c) => format!("did you mean `{c}`? {declared}"),
                                None => declared.clone(),
                            }
                        }
                        _ => declared.clone(),
                    };
                    diags.push(
                        file.at_value(
                            &at,
                            format!(
                                "input `{}` of template `{written}` must be {}, not {shown}",
                                decl.name,
                                decl.ty.must_be()
                            ),
                        )
                        .hint(hint),
                    );
                    None
                }
            }
            None => match &decl.default {
                Some(d) => Some(d.clone()),
                None => {
                    let about = decl.description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
                    let d = if with.is_some() {
                        file.at_key(
                            &wpath,
                            format!("node `{node}` gives no value for input `{}` of template `{written}`", decl.name),
                        )
                    } else {
                        file.at_value(
                            &path.key("uses"),
                            format!("node `{node}` gives no value for input `{}` of template `{written}`", decl.name),
                        )
                    };
                    diags.push(d.hint(format!("add `{}: {}` under `with:`{about}", decl.name, decl.ty.example())));
                    None
                }
            },
        };
        bound.values.insert(decl.name.clone(), value);
    }
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_types() {
        let v = |s: &str| serde_yaml::from_str::<Value>(s).unwrap();
        assert_eq!(InputType::Float.check(&v("1")), Some(serde_json::json!(1.0)));
        assert_eq!(InputType::Int.check(&v("1.5")), None);
        assert_eq!(InputType::String.check(&v("4")), Some(serde_json::json!("4")));
        assert_eq!(InputType::String.check(&v("[a]")), None);
        assert_eq!(InputType::Bool.check(&v("yes")), None);
        let e = InputType::Enum(vec!["strict".into(), "lenient".into()]);
        assert_eq!(e.check(&v("strict")), Some(serde_json::json!("strict")));
        assert_eq!(e.check(&v("strickt")), None);
        assert_eq!(InputType::List.check(&v("[1, 2]")), Some(serde_json::json!([1, 2])));
        assert_eq!(InputType::Node.check(&v("cases")), Some(serde_json::json!("cases")));
    }

    #[test]
    fn display_paths_are_normalized() {
        assert_eq!(normalize(Path::new("./templates/../t.yaml")), PathBuf::from("t.yaml"));
        assert_eq!(normalize(Path::new("specs/./templates/eval.yaml")), PathBuf::from("specs/templates/eval.yaml"));
        assert_eq!(normalize(Path::new("../t.yaml")), PathBuf::from("../t.yaml"));
    }
}
