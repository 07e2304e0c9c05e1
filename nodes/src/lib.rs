//! flow-nodes: the stage kinds, one folder each, and the one list of them.
//!
//! A kind is a folder under `nodes/src/` that owns its whole face: its
//! config and stage (the engine's [`Node`]), its view in the run report
//! (`view.rs` and `view.js`), its offline answers for `provider: sim` (next
//! to the prompt they answer), its docs (the `ABOUT` line and the config's
//! doc comments, which `docs/kinds/` and the README's table are generated
//! from) and its tests. Adding a kind is that folder and one line in
//! [`KINDS`].

pub mod backend;
pub mod docs;
pub mod process;
pub mod view;

use flow_engine::{Kind, Node, Registry};

use backend::Answer;
use view::View;

/// What a kind brings besides its stage: its view in the run report and the
/// answers `provider: sim` gives to the prompts it writes.
pub trait Face: Node {
    /// Its report view: by default the generic one (its meta, text artifacts
    /// and records); `None` for none.
    const VIEW: Option<&'static View> = Some(&view::GENERIC);
    /// The offline answers to its own prompts.
    const SIM_ANSWERS: &'static [Answer] = &[];
}

/// A kind in the list: its engine kind and its face.
pub struct Entry {
    pub name: &'static str,
    kind: fn() -> Box<dyn Kind>,
    pub view: Option<&'static View>,
    pub sim_answers: &'static [Answer],
}

const fn entry<N: Face>() -> Entry {
    Entry { name: N::KIND, kind: flow_engine::kind::<N>, view: N::VIEW, sim_answers: N::SIM_ANSWERS }
}

/// Declares each kind's module and lists it in [`KINDS`].
macro_rules! kinds {
    ($($module:ident :: $kind:ident),* $(,)?) => {
        $(pub mod $module;)*
        /// Every kind this build of flow knows, in the order `flow schema`
        /// and the docs list them.
        pub const KINDS: &[Entry] = &[$(entry::<$module::$kind>()),*];
    };
}

// One line per kind: its folder and its `Node` (which implements `Face`).
kinds![
    load::Load,
    generate::Generate,
    run::Run,
    evaluate::Evaluate,
    compare::Compare,
    synthesize::Synthesize,
    extract::Extract,
    train::Train,
    sample::Sample,
    query::Query,
    exec::Exec,
];

/// The engine's registry of [`KINDS`].
pub fn registry() -> Registry {
    Registry::new(KINDS.iter().map(|e| (e.kind)()).collect())
}

/// The report view of a node of kind `kind`: its kind's, none for a kind
/// without one, and the generic one for a kind this build does not know (a
/// run written by another version of flow).
pub fn view_for(kind: &str) -> Option<&'static View> {
    match KINDS.iter().find(|e| e.name == kind) {
        Some(e) => e.view,
        None => Some(&view::GENERIC),
    }
}

/// Every view a report may show, each once: the generic one and the kinds'.
pub fn views() -> Vec<&'static View> {
    let mut all: Vec<&'static View> = vec![&view::GENERIC];
    for v in KINDS.iter().filter_map(|e| e.view) {
        if !all.iter().any(|x| x.name == v.name) {
            all.push(v);
        }
    }
    all
}

/// What `provider: sim` answers the kinds' prompts with.
pub fn sim_answers() -> Vec<Answer> {
    KINDS.iter().flat_map(|e| e.sim_answers.iter().copied()).collect()
}
