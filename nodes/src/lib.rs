//! flow-nodes: the stage kinds, one module each, and the one list of them.

pub mod evaluate;
pub mod load;

use flow_engine::{kind, Registry};

/// Every kind this build of flow knows.
pub fn registry() -> Registry {
    Registry::new(vec![kind::<load::Load>(), kind::<evaluate::Evaluate>()])
}
