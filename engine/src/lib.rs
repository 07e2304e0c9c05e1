//! flow-engine: a YAML spec compiled to a typed petgraph [`Plan`], assessed
//! against the content-addressed cache, and streamed through a tokio
//! scheduler.
//!
//! The engine knows no stage kind by name. It defines the [`Node`] trait,
//! the record type and ports, and the [`Registry`]; `flow-nodes` registers
//! the kinds and the CLI wires the two together.

pub mod assess;
pub mod calls;
mod check;
pub mod compile;
pub mod diag;
pub mod key;
pub mod meter;
pub mod node;
pub mod record;
pub mod render;
pub mod run;
pub mod schema;
pub mod shard;
pub mod spec;
pub mod spill;
pub mod template;

pub use assess::{assess, Assessment, Force, Reason, State};
pub use compile::{compile, compile_in, compile_with_env, Plan, PlanNode};
pub use diag::{Diagnostic, Diagnostics};
pub use meter::{Backoff, Meter};
pub use node::{
    kind, Arity, Artifact, BarrierOutput, BarrierStage, BatchStream, BuildCx, CheckCx, FileInput, Kind, MapStage, Node,
    NodeError, OutputRecords, PlannedCall, RecordStream, Registry, RunContext, Shape, SourceStage, Stage, StreamStage,
    Tokens, GATE_FAILED, META_JSON, SUMMARY_MD, WARNINGS_TXT,
};
pub use record::{Batch, FieldSet, Fields, PortType, Record, BATCH_SIZE};
pub use run::{run, RunEvent, RunOptions};
pub use spec::{BackendSpec, Price, Provider};
pub use spill::Spool;
pub use template::Template;

pub use flow_cache as cache;
