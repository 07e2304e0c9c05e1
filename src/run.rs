//! `flow run`: the backends opened, the run driven with its progress, then
//! the report, the `-o` files and the end-of-run summary, and the exit code.

use crate::out::errln;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use flow_engine::cache::{RunStatus, Store};
use flow_engine::diag::Diagnostic;
use flow_engine::{Assessment, Force, Plan, RunOptions};
use flow_nodes::backend::{BackendError, Backends};

use crate::export::Target;
use crate::progress::{self, Mode};
use crate::{report, Failure, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED};

/// The backends the nodes that will run (by `assessed`) call, with the
/// call memo. A key missing from the environment stops the run before
/// anything starts.
fn backends(plan: &Plan, store: &Store, assessed: &[Assessment]) -> Result<Option<Backends>, Failure> {
    let used = Backends::used_by(plan, |i| assessed[i].state != flow_engine::State::Cached);
    if used.is_empty() {
        return Ok(None);
    }
    let env = |n: &str| std::env::var(n).ok();
    let usage = |e: BackendError| {
        let hint = match &e {
            BackendError::MissingKey { var, .. } => {
                format!("export {var}=<your key> before `flow run`; the key is read from the environment only")
            }
            BackendError::Invalid { .. } => "check the backend's fields in the spec".to_string(),
            BackendError::ModelDir { .. } => flow_engine::spec::local_model::FETCH_HINT.to_string(),
            BackendError::Http { .. } => {
                "export the variables its `headers:` read (`${env.NAME}`) before `flow run`".to_string()
            }
        };
        Failure::Usage(Diagnostic::new(e.to_string()).hint(hint).into())
    };
    // A missing key is a usage error: nothing may be written before it.
    Backends::check_keys(&plan.backends, &used, &env).map_err(usage)?;
    store.create().map_err(anyhow::Error::from)?;
    let memo = store.call_memo().map_err(|e| anyhow::anyhow!("{e}; hint: {}", e.hint()))?;
    for notice in memo.notices() {
        errln!("{}: {notice}", if notice.is_warning() { "warning" } else { "note" });
    }
    // Answers a killed run here left unshared go first; then those paid
    // for elsewhere come in, and are not written back.
    if store.remote().is_some() {
        let sync = || -> Result<u64, flow_engine::cache::StoreError> {
            store.push_memo(&memo)?;
            let added = store.pull_memo(&memo)?;
            store.mark_memo_pushed(&memo)?;
            Ok(added)
        };
        let added = sync().map_err(anyhow::Error::from)?;
        if added > 0 {
            tracing::info!("{added} answers from the shared store's call memo");
        }
    }
    Backends::new(&plan.backends, &plan.prices, &used, Some(memo), &flow_nodes::sim_answers(), &env)
        .map(Some)
        .map_err(usage)
}

/// Waits for Ctrl-C or, on Unix, SIGTERM: both stop a run the same way
/// (interrupted, what finished kept, a report). The exit code is the
/// shell's for the signal.
async fn interruption() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return EXIT_INTERRUPTED,
                _ = term.recv() => return EXIT_TERMINATED,
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    EXIT_INTERRUPTED
}

/// With `--detach`: resolves, with the batch ids, once every call of the
/// batch backends waits on a batch left at the provider; never otherwise.
async fn batches_left(backends: Option<&Backends>, detach: bool) -> Vec<String> {
    let Some(b) = backends.filter(|_| detach) else { return std::future::pending().await };
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(ids) = b.batches_left() {
            return ids;
        }
    }
}

/// A run whose answers could not all be recorded failed, even when every
/// node finished; the memo's failure is the run's error, with the final
/// count of answers lost (a node it stopped says why too).
fn memo_failed_run(store: &Store, manifest: &mut flow_engine::cache::RunManifest, e: &flow_nodes::backend::MemoFailed) {
    if manifest.status == RunStatus::Interrupted {
        return;
    }
    manifest.status = RunStatus::Failed;
    manifest.error = Some(e.to_string());
    if let Err(e) = store.write_run_manifest(manifest) {
        errln!("warning: the run manifest could not be updated: {e}");
    }
}

/// Runs `plan`, shows it as `mode` says, writes the report and the `-o`
/// files (`outputs`), and returns the exit code: 0, 1 (failed, or a gate
/// tripped), or the signal's.
pub fn run(
    plan: Plan,
    store: Store,
    force: Force,
    mode: Mode,
    outputs: &[Target],
    detach: bool,
) -> Result<ExitCode, Failure> {
    // A bound that is not a size is bad input: refused before anything is
    // written (the engine reads it again when it starts).
    flow_engine::spill::bound_from_env().map_err(|e| flow_engine::diag::Diagnostic::new(e.to_string()))?;
    // One assessment for both the backends and the run: a cache entry that
    // appears or goes in between cannot make a node run without its backend.
    let assessed = flow_engine::assess(&plan, &store, &force).map_err(anyhow::Error::from)?;
    for (n, a) in plan.nodes.iter().zip(&assessed) {
        tracing::debug!(node = %n.name, state = ?a.state, key = ?a.key.map(|k| k.hex()), "assessed");
    }
    let backends = backends(&plan, &store, &assessed)?.map(Arc::new);
    if let (true, Some(b)) = (detach, &backends) {
        b.detach_batches();
    }
    // Shards of one spec run side by side; each shard once at a time.
    let lock = match plan.shard {
        Some(s) => format!("{} (shard {}-of-{})", plan.spec_name, s.index, s.count),
        None => plan.spec_name.clone(),
    };
    let _lock = store.lock_run(&lock).map_err(anyhow::Error::from)?;
    let context = backends.clone().map(|b| b as flow_engine::RunContext);
    let plan = Arc::new(plan);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    if let Some(b) = &backends {
        // Held weakly: the display ends when the run's own sender goes.
        let events = tx.downgrade();
        b.tell(move |text| {
            if let Some(tx) = events.upgrade() {
                let _ = tx.send(flow_engine::RunEvent::Note { text });
            }
        });
    }
    let display = progress::Display::new(&plan, mode).with_log(store.clone());
    let signalled = std::sync::atomic::AtomicU8::new(EXIT_INTERRUPTED);
    let left: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);
    let manifest = runtime.block_on(async {
        let printer = tokio::spawn(display.consume(rx));
        let interrupt = async {
            let code = tokio::select! {
                code = interruption() => code,
                ids = batches_left(backends.as_deref(), detach) => {
                    *left.lock().expect("left lock") = Some(ids);
                    EXIT_INTERRUPTED
                }
            };
            signalled.store(code, std::sync::atomic::Ordering::Relaxed);
        };
        let result =
            flow_engine::run(plan.clone(), store.clone(), assessed, RunOptions { force, context }, tx, interrupt).await;
        let display = printer.await.expect("progress printer");
        result.map(|m| (m, display))
    });
    // Every answer received is in the memo on disk before flow exits, or
    // the run failed.
    let memo_failed = backends.as_ref().and_then(|b| b.close().err());
    // This run's answers go to the shared store, whatever the run's end.
    if backends.is_some() && store.remote().is_some() {
        let pushed = store.call_memo().map_err(anyhow::Error::from).and_then(|m| Ok(store.push_memo(&m)?));
        if let Err(e) = pushed {
            errln!("warning: this run's answers were not written to the shared store: {}", crate::out::chain(&e));
        }
    }
    let (mut manifest, mut display) = manifest.map_err(anyhow::Error::from)?;
    let left = left.into_inner().expect("left lock");
    if let Some(ids) = &left {
        manifest.error = Some(format!(
            "left with --detach: batch{} {} at the provider; `flow run` again collects {}",
            if ids.len() == 1 { "" } else { "es" },
            ids.join(", "),
            if ids.len() == 1 { "it" } else { "them" }
        ));
        if let Err(e) = store.write_run_manifest(&manifest) {
            errln!("warning: the run manifest could not be updated: {e}");
        }
    }
    if let Some(e) = memo_failed {
        memo_failed_run(&store, &mut manifest, &e);
    }
    // A run that says it succeeded has its report: one that could not be
    // written (a full disk) fails the run, whose outputs stay cached; a run
    // that failed anyway only warns.
    let report = report::write(&store, Some(&plan), &manifest);
    if let Err(e) = &report {
        if manifest.status == RunStatus::Succeeded {
            manifest.status = RunStatus::Failed;
            manifest.error = Some(format!(
                "its report could not be written ({}); free space, then `flow view {}` writes it",
                crate::out::chain(e),
                manifest.run_id
            ));
            if let Err(e) = store.write_run_manifest(&manifest) {
                errln!("warning: the run manifest could not be updated: {e}");
            }
        }
    }
    // The index of runs lists this one; without it the run's own report
    // still stands.
    if let Err(e) = report::index::write(&store) {
        errln!("warning: the index of runs could not be written: {}", crate::out::chain(&e));
    }
    // The `-o` files say what CI reads: a run whose files could not be
    // written fails, whatever its nodes did.
    let exported = crate::export::write(outputs, &store, &plan, &manifest);
    let written: Vec<PathBuf> =
        if exported.is_ok() { outputs.iter().map(|t| t.path.clone()).collect() } else { Vec::new() };
    display.finish(&store, &manifest, report.as_ref().ok().map(PathBuf::as_path), &written);
    if let Err(e) = &exported {
        errln!("error: the -o files could not be written: {}", crate::out::chain(e));
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    if let Err(e) = &report {
        errln!("warning: no report: {}", crate::out::chain(e));
    }
    if let Some(ids) = &left {
        errln!(
            "note: {} batch{} left at the provider ({}); run `flow run` again to collect the results",
            ids.len(),
            if ids.len() == 1 { "" } else { "es" },
            ids.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    Ok(match manifest.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Interrupted => ExitCode::from(signalled.load(std::sync::atomic::Ordering::Relaxed)),
        RunStatus::Failed | RunStatus::Running | RunStatus::Died => ExitCode::from(EXIT_FAILED),
    })
}
