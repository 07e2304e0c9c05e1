//! End-to-end tests of the `flow` binary: real spec files, a real `.flow/`
//! cache directory in a temp folder, the real process (killed for real).
//! One integration binary with modules keeps link time down.

#[path = "../support/llm_server/mod.rs"]
mod llm_server;

#[cfg(target_os = "linux")]
#[path = "../support/browser.rs"]
mod browser;

#[path = "../support/paraphrase_logs.rs"]
mod paraphrase_logs;

#[path = "../support/app_server.rs"]
mod app_server;

#[path = "../support/postgres.rs"]
mod postgres;

#[path = "../support/weaviate.rs"]
mod weaviate;

#[path = "../support/s3.rs"]
mod s3;

mod ab;
mod apps;
mod backends;
mod batch;
mod cache;
mod common;
mod compare;
mod errors;
mod eval;
mod examples;
mod extract;
mod fuzz;
mod generate;
mod inspect;
mod interrupt;
mod local;
mod memo;
mod metrics;
mod openai;
mod outputs;
mod plan;
mod progress;
mod providers;
mod query;
mod report;
mod runids;
mod self_improve;
mod serve;
mod shard;
mod spill;
mod store;
mod synthesize;
mod templates;
mod throughput;
mod tools;
mod train;
mod workbench;
