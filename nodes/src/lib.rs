//! flow-nodes: the stage kinds, one module each, and the one list of them.

pub mod backend;
pub mod compare;
pub mod evaluate;
pub mod extract;
pub mod generate;
pub mod load;
pub mod run;
pub mod synthesize;
pub mod train;

use flow_engine::{kind, Registry};

/// Every kind this build of flow knows.
pub fn registry() -> Registry {
    Registry::new(vec![
        kind::<load::Load>(),
        kind::<generate::Generate>(),
        kind::<run::Run>(),
        kind::<evaluate::Evaluate>(),
        kind::<compare::Compare>(),
        kind::<synthesize::Synthesize>(),
        kind::<extract::Extract>(),
        kind::<train::Train>(),
    ])
}
