//! The `flow` command line: argument parsing and wiring only. The engine
//! compiles and runs specs; the nodes crate provides the stage kinds.

mod cache_cmd;
mod compare;
mod explain;
mod init;
mod inspect;
mod out;
mod progress;
mod report;

use crate::out::{err, errln, out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use flow_engine::cache::{RunStatus, Store};
use flow_engine::calls::MemoLookup;
use flow_engine::diag::{suggest, Diagnostic, Diagnostics};
use flow_engine::{Assessment, Force, Plan, RunOptions};
use flow_nodes::backend::{BackendError, Backends};

// Records are built on one thread and freed on another (the output writer):
// mimalloc handles that cross-thread traffic better than glibc's malloc, which
// the streaming benchmark showed spending a quarter of its time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a bad spec or bad usage.
const EXIT_USAGE: u8 = 2;
/// Exit code for a run that failed.
const EXIT_FAILED: u8 = 1;
/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + SIGTERM), what `timeout`, CI runners and
/// Kubernetes send.
const EXIT_TERMINATED: u8 = 143;

#[derive(Parser)]
#[command(name = "flow", version, about = "Declarative, cached, streaming pipelines for LLM evaluation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct SpecArgs {
    /// The spec file (YAML).
    spec: PathBuf,
    /// Override a param: --set key=value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The cache and run folder [default: .flow next to the spec].
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
struct ForceArgs {
    /// Run every node, ignoring cached results.
    #[arg(long)]
    no_cache: bool,
    /// Run this node even if it is cached (repeatable).
    #[arg(long, value_name = "NODE")]
    rerun: Vec<String>,
    /// Only the first N records of every source (a quick subset; the full
    /// run after it reuses its answers from the call memo).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Dot,
    Mermaid,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a spec: stream records through its nodes, reusing cached results.
    Run {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        force: ForceArgs,
        /// Print run events as JSON lines on stdout instead of progress.
        #[arg(long)]
        json: bool,
    },
    /// Show what a run would do (cached, will run, unknown, and why); runs and writes nothing.
    Plan {
        #[command(flatten)]
        spec: SpecArgs,
        #[command(flatten)]
        force: ForceArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
        /// Explain one node: its cache key's fields and which changed since its last cached entry.
        #[arg(long, value_name = "NODE")]
        explain: Option<String>,
    },
    /// Check a spec (names, kinds, fields, port types, files) without running it.
    Validate {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Print a node's latest output as JSONL.
    Show {
        /// Node name.
        node: String,
        /// At most this many records.
        #[arg(long)]
        limit: Option<usize>,
        /// From this run instead of the latest that has the node.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// The .flow folder [default: found from the current folder].
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Compare a node's scored output between two stored runs (RUN_A is the baseline).
    Compare {
        /// The baseline run's id (`flow runs` lists them).
        run_a: String,
        /// The candidate run's id.
        run_b: String,
        /// The node to compare [default: the one node whose records have `scores`].
        #[arg(long)]
        node: Option<String>,
        /// The .flow folder [default: found from the current folder].
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// List recent runs.
    Runs {
        /// At most this many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The .flow folder [default: found from the current folder].
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Print the path of a run's HTML report and open it in the browser.
    View {
        /// The run's id [default: the latest run].
        run: Option<String>,
        /// Print the path only; do not open the report.
        #[arg(long)]
        no_open: bool,
        /// The .flow folder [default: found from the current folder].
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Print the JSON Schema of a spec (for editors: see the README).
    Schema,
    /// Write a runnable example spec and its data into a folder.
    Init {
        /// Which example.
        #[arg(long, value_enum, default_value = "eval")]
        template: init::Starter,
        /// The folder [default: the current one].
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Look at or reclaim the cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// The .flow folder [default: found from the current folder].
        #[arg(long, value_name = "DIR", global = true)]
        workspace: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// List cache entries (node outputs) with their size and last use.
    Ls,
    /// Remove runs beyond the newest N and whatever no kept run or current entry uses.
    Gc {
        /// Runs to keep, newest first.
        #[arg(long, default_value_t = 10)]
        keep_runs: usize,
        /// Spare files younger than this (a run may be writing them), e.g. 10m, 0s.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        min_age: std::time::Duration,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("FLOW_LOG"))
        .with_writer(std::io::stderr)
        // No colour codes in a log that goes to a file or a CI's capture.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(Failure::Usage(d)) => {
            err!("{d}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(e)) => {
            errln!("error: {}", out::chain(&e));
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// How a command failed: bad input (exit 2) or anything else (exit 1).
enum Failure {
    Usage(Diagnostics),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<Diagnostics> for Failure {
    fn from(d: Diagnostics) -> Self {
        Failure::Usage(d)
    }
}

impl From<Diagnostic> for Failure {
    fn from(d: Diagnostic) -> Self {
        Failure::Usage(d.into())
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    match cli.command {
        Command::Validate { spec } => {
            let plan = compile(&spec)?;
            outln!("spec `{}` is valid: {} nodes", plan.spec_name, plan.nodes.len());
            for n in &plan.nodes {
                outln!("  {}  {}  → {}", n.name, n.kind, n.compiled.output);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan { spec, force, format, explain } => {
            let mut plan = compile(&spec)?;
            let force = force_of(&mut plan, &force)?;
            let store = Store::open(workspace_of(&spec));
            let assessed = flow_engine::assess(&plan, &store, &force).map_err(anyhow::Error::from)?;
            if let Some(name) = explain {
                let Some(i) = plan.index_of(&name) else {
                    let names = plan.nodes.iter().map(|n| n.name.as_str());
                    return Err(Diagnostic::new(format!("--explain names unknown node `{name}`"))
                        .hint(suggest(&name, names, "a node"))
                        .into());
                };
                out!("{}", explain::explain(&plan, &assessed, &store, i)?);
                return Ok(ExitCode::SUCCESS);
            }
            let calls = {
                // Plan writes nothing and takes no writer's lock: the memo is
                // read beside any run recording into it, or not created.
                let memo = store.read_call_memo();
                let seen = match &memo {
                    Ok(None) => MemoLookup::Empty,
                    Ok(Some(m)) => MemoLookup::Open(m),
                    Err(e) => {
                        tracing::debug!("plan counts no memo hits: {e}");
                        MemoLookup::Unreadable
                    }
                };
                flow_engine::calls::estimate(&plan, &assessed, &store, &seen, &force)
            };
            use flow_engine::render;
            match format {
                PlanFormat::Text => out!("{}", render::text(&plan, &assessed, &calls)),
                PlanFormat::Dot => out!("{}", render::dot(&plan, &assessed, &calls)),
                PlanFormat::Mermaid => out!("{}", render::mermaid(&plan, &assessed, &calls)),
                PlanFormat::Json => {
                    let json = render::json(&plan, &assessed, &calls);
                    outln!("{}", serde_json::to_string_pretty(&json).expect("json"))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, force, json } => {
            let mut plan = compile(&spec)?;
            let force = force_of(&mut plan, &force)?;
            let store = Store::open(workspace_of(&spec));
            run(plan, store, force, json)
        }
        Command::Show { node, limit, run, workspace } => {
            let store = Store::open(inspect::find_workspace(workspace)?);
            inspect::show(&store, &node, limit, run.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { run_a, run_b, node, workspace } => {
            let store = Store::open(inspect::find_workspace(workspace)?);
            compare::compare(&store, &run_a, &run_b, node.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { limit, workspace } => {
            let store = Store::open(inspect::find_workspace(workspace)?);
            inspect::runs(&store, limit)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::View { run, no_open, workspace } => {
            let store = Store::open(inspect::find_workspace(workspace)?);
            report::view(&store, run.as_deref(), !no_open)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            let schema = flow_engine::schema::spec_schema(&flow_nodes::registry());
            outln!("{}", serde_json::to_string_pretty(&schema).expect("a schema serializes"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Init { template, dir } => {
            let spec = init::init(template, &dir)?;
            outln!(
                "wrote {}; run it with `flow run {}` (offline, on the built-in `sim` backend)",
                spec.display(),
                spec.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache { action, workspace } => {
            let store = Store::open(inspect::find_workspace(workspace)?);
            match action {
                CacheAction::Ls => cache_cmd::ls(&store)?,
                CacheAction::Gc { keep_runs, min_age, dry_run } => cache_cmd::gc(&store, keep_runs, min_age, dry_run)?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Compiles the spec; a node may read past runs from its workspace (a
/// `compare` node's stored baseline).
fn compile(spec: &SpecArgs) -> Result<Plan, Diagnostics> {
    flow_engine::compile_in(&spec.spec, &spec.sets, &flow_nodes::registry(), &workspace_of(spec))
}

fn workspace_of(spec: &SpecArgs) -> PathBuf {
    spec.workspace.clone().unwrap_or_else(|| {
        let dir = spec.spec.parent().unwrap_or(Path::new(""));
        if dir.as_os_str().is_empty() {
            PathBuf::from(".flow")
        } else {
            dir.join(".flow")
        }
    })
}

/// What `args` asks regardless of the cache; `--limit` applies to `plan`.
fn force_of(plan: &mut Plan, args: &ForceArgs) -> Result<Force, Diagnostic> {
    if let Some(n) = args.limit {
        plan.limit_sources(n);
    }
    for name in &args.rerun {
        if plan.index_of(name).is_none() {
            return Err(Diagnostic::new(format!("--rerun names unknown node `{name}`")).hint(suggest(
                name,
                plan.nodes.iter().map(|n| n.name.as_str()),
                "a node",
            )));
        }
    }
    Ok(Force { all: args.no_cache, nodes: args.rerun.iter().cloned().collect() })
}

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

fn run(plan: Plan, store: Store, force: Force, json: bool) -> Result<ExitCode, Failure> {
    // One assessment for both the backends and the run: a cache entry that
    // appears or goes in between cannot make a node run without its backend.
    let assessed = flow_engine::assess(&plan, &store, &force).map_err(anyhow::Error::from)?;
    let backends = backends(&plan, &store, &assessed)?.map(Arc::new);
    let _lock = store.lock_run(&plan.spec_name).map_err(anyhow::Error::from)?;
    let context = backends.clone().map(|b| b as flow_engine::RunContext);
    let plan = Arc::new(plan);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(anyhow::Error::from)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let display = progress::Display::new(&plan, json);
    let signalled = std::sync::atomic::AtomicU8::new(EXIT_INTERRUPTED);
    let manifest = runtime.block_on(async {
        let printer = tokio::spawn(display.consume(rx));
        let interrupt = async {
            let code = interruption().await;
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
    let (mut manifest, display) = manifest.map_err(anyhow::Error::from)?;
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
                out::chain(e),
                manifest.run_id
            ));
            if let Err(e) = store.write_run_manifest(&manifest) {
                errln!("warning: the run manifest could not be updated: {e}");
            }
        }
    }
    display.finish(&store, &manifest);
    match report {
        Ok(path) if !json => outln!("report: {}", path.display()),
        Ok(_) => {}
        Err(e) => errln!("warning: no report: {}", out::chain(&e)),
    }
    Ok(match manifest.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Interrupted => ExitCode::from(signalled.load(std::sync::atomic::Ordering::Relaxed)),
        RunStatus::Failed | RunStatus::Running | RunStatus::Died => ExitCode::from(EXIT_FAILED),
    })
}
