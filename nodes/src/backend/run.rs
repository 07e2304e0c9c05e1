//! The backends of one run ([`Backends`]): built from the spec's
//! `backends:` for the nodes that will run, each with its transport, limits
//! and prices, sharing the run's call memo writer.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};

use flow_engine::cache::CallMemo;
use flow_engine::{BackendSpec, BuildCx, NodeError, Plan, Price, Provider};
use governor::{Quota, RateLimiter};

use super::price::Prices;
use super::slots::Slots;
use super::{local, openai, sim, Answer, Backend, Endpoint, MemoFailed, MemoWriter, Transport};

/// Problems building the backends before a run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{backend}`: environment variable `{var}` (its `api_key_env`) is not set")]
    MissingKey { backend: String, var: String },
    #[error("backend `{backend}`: {source}")]
    Invalid { backend: String, source: openai::ClientError },
    /// A `local` backend's model folder, checked again when the backends
    /// are built outside the spec loader.
    #[error("backend `{backend}`: {source}")]
    ModelDir { backend: String, source: flow_engine::spec::local_model::ModelDirError },
    /// An `http` backend that cannot be built: a header's `${env.X}` unset.
    #[error("backend `{backend}`: {source}")]
    Http { backend: String, source: super::http::HttpError },
}

/// Where the backends' news for the user goes (a batch created, its
/// state): the command's display, once it says where ([`Backends::tell`]);
/// the log at `info` always. The backends print nothing themselves.
#[derive(Default)]
pub(crate) struct Notes(OnceLock<Box<dyn Fn(String) + Send + Sync>>);

impl Notes {
    pub fn say(&self, text: String) {
        tracing::info!("{text}");
        if let Some(tell) = self.0.get() {
            tell(text);
        }
    }
}

/// The backends of one run, and the call memo they write to.
pub struct Backends {
    backends: BTreeMap<String, Arc<Backend>>,
    memo: Option<Arc<MemoWriter>>,
    notes: Arc<Notes>,
}

impl Backends {
    /// Builds the backends that `used` names (the others need no key).
    /// Keys are read from the environment here, once, and live only in the
    /// HTTP client. `answers` are what a `sim` backend answers the kinds'
    /// own prompts with ([`crate::sim_answers`]).
    pub fn new(
        specs: &BTreeMap<String, BackendSpec>,
        prices: &BTreeMap<String, Price>,
        used: &[String],
        memo: Option<CallMemo>,
        answers: &[Answer],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, BackendError> {
        let memo = memo.map(|m| Arc::new(MemoWriter::start(m)));
        let answers: Arc<[Answer]> = answers.into();
        let prices = Arc::new(Prices::new(prices.clone()));
        let flights = Arc::new(super::flight::Flights::default());
        let notes = Arc::new(Notes::default());
        let mut backends = BTreeMap::new();
        for name in used {
            let Some(spec) = specs.get(name) else { continue };
            let checked;
            let spec = match local::unchecked(spec) {
                Some(dir) => {
                    checked = local::checked(spec, dir)
                        .map_err(|source| BackendError::ModelDir { backend: name.clone(), source })?;
                    &checked
                }
                None => spec,
            };
            let transport = match spec.provider {
                Provider::Sim => Transport::Sim(sim::Sim::new(spec, answers.clone())),
                Provider::Local => Transport::Local(local::Local::new(name, spec)),
                Provider::Openai | Provider::Anthropic | Provider::Azure => {
                    let key = key_of(name, spec, env)?;
                    let client = openai::Client::new(spec, key)
                        .map_err(|source| BackendError::Invalid { backend: name.clone(), source })?;
                    Transport::Openai(client)
                }
                Provider::Http => {
                    let client = super::http::Client::new(spec, key_of(name, spec, env)?, env)
                        .map_err(|source| BackendError::Http { backend: name.clone(), source })?;
                    Transport::Http(Box::new(client))
                }
                Provider::Exec => Transport::Exec(super::exec::Client::new(spec)),
            };
            let batch_key =
                if spec.provider.is_remote() && spec.batch.is_some() { key_of(name, spec, env)? } else { None };
            let mut batch = Vec::new();
            for endpoint in [Endpoint::Chat, Endpoint::Embeddings] {
                let key = batch_key.clone();
                let b = super::batch::Batcher::of(name, spec, key, &answers, memo.clone(), notes.clone(), endpoint)
                    .map_err(|source| BackendError::Invalid { backend: name.clone(), source })?;
                batch.extend(b);
            }
            let per_minute = |n: u32| NonZeroU32::new(n).map(|n| RateLimiter::direct(Quota::per_minute(n)));
            let backend = Backend {
                name: name.clone(),
                identity: spec.identity(),
                transport,
                slots: Slots::new(spec.max_concurrency()),
                rpm: spec.rpm.and_then(per_minute),
                tpm: spec.tpm.and_then(|n| per_minute(n).map(|l| (l, n))),
                prices: prices.clone(),
                memo: memo.clone(),
                flights: flights.clone(),
                batch,
                spec: spec.clone(),
            };
            backends.insert(name.clone(), Arc::new(backend));
        }
        Ok(Self { backends, memo, notes })
    }

    /// Where the backends' news goes from now on (once: a second call is
    /// ignored).
    pub fn tell(&self, to: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.notes.0.set(Box::new(to));
    }

    /// The first backend of `used` whose key is missing from the
    /// environment, checked before anything is created or written.
    pub fn check_keys(
        specs: &BTreeMap<String, BackendSpec>,
        used: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), BackendError> {
        for name in used {
            if let Some(spec) = specs.get(name).filter(|s| s.provider.is_remote()) {
                key_of(name, spec, env)?;
                if spec.provider == Provider::Http {
                    super::http::headers(spec, env)
                        .map_err(|source| BackendError::Http { backend: name.clone(), source })?;
                }
            }
        }
        Ok(())
    }

    /// The names of the backends that the nodes of `plan` call.
    pub fn used_by(plan: &Plan, nodes: impl Fn(usize) -> bool) -> Vec<String> {
        let mut names: Vec<String> = plan
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| nodes(*i))
            .flat_map(|(_, n)| n.compiled.backends.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    pub fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.backends.get(name).cloned()
    }

    /// The backend `name` of the run a stage is built for.
    pub fn of(cx: &BuildCx, name: &str) -> Result<Arc<Backend>, NodeError> {
        let all = cx.context::<Backends>().ok_or_else(|| {
            NodeError::new(format!("node `{}` calls a backend, but the run has none set up", cx.node))
        })?;
        all.get(name).ok_or_else(|| NodeError::new(format!("backend `{name}` is not set up for this run")))
    }

    /// `flow run --detach`: batch backends leave their batches at the
    /// provider once created and recorded.
    pub fn detach_batches(&self) {
        for b in self.backends.values() {
            b.detach_batch();
        }
    }

    /// Detached: the batches left at the provider, once every call of the
    /// batch backends in use waits on one (the run can then be left), and
    /// at least one does; `None` while calls are still being batched.
    pub fn batches_left(&self) -> Option<Vec<String>> {
        let batching: Vec<_> = self.backends.values().filter(|b| b.batch_has_calls()).collect();
        if batching.is_empty() || !batching.iter().all(|b| b.batch_all_left()) {
            return None;
        }
        Some(
            batching
                .iter()
                .flat_map(|b| b.batches_seen())
                .filter(|s| s.state.ends_with("(left)"))
                .map(|s| s.id)
                .collect(),
        )
    }

    /// Waits until every answer is in the call memo on disk; an error when
    /// some could not be recorded (the run failed then).
    pub fn close(&self) -> Result<(), MemoFailed> {
        match &self.memo {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The key of backend `name` from the environment, if it names a variable
/// and the key may go where the backend points ([`withheld_key`]).
fn key_of(
    name: &str,
    spec: &BackendSpec,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, BackendError> {
    match &spec.api_key_env {
        Some(_) if withheld_key(spec).is_some() => Ok(None),
        Some(var) => env(var)
            .filter(|k| !k.is_empty())
            .map(Some)
            .ok_or_else(|| BackendError::MissingKey { backend: name.to_string(), var: var.clone() }),
        None => Ok(None),
    }
}

/// A key that is not sent, and why: its variable is a provider's own
/// (`OPENAI_API_KEY` is for api.openai.com) and the backend points at
/// another host without `send_key_anywhere: true`. Such a key is neither
/// sent nor required, so a local server that needs none just works.
pub struct Withheld {
    /// The variable's name.
    pub var: String,
    /// The host the backend points at.
    pub host: String,
    /// The provider whose API the key is for.
    pub owner: Provider,
}

/// The key `spec` holds back ([`Withheld`]), if any.
pub fn withheld_key(spec: &BackendSpec) -> Option<Withheld> {
    let var = spec.api_key_env.as_deref()?;
    let owner = match var {
        "OPENAI_API_KEY" => Provider::Openai,
        "ANTHROPIC_API_KEY" => Provider::Anthropic,
        "AZURE_OPENAI_API_KEY" | "AZURE_API_KEY" => Provider::Azure,
        _ => return None,
    };
    let host = super::price::host_of(spec)?;
    if spec.send_key_anywhere || super::price::is_own_host(owner, &host) {
        return None;
    }
    Some(Withheld { var: var.to_string(), host, owner })
}
