//! The `flow` command line: argument parsing and wiring only. The engine
//! compiles and runs specs; the nodes crate provides the stage kinds.

mod cache_cmd;
mod compare;
mod explain;
mod export;
mod init;
mod inspect;
mod out;
mod progress;
mod report;
mod run;
mod serve;

use crate::out::{err, errln, out, outln};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use flow_engine::cache::Store;
use flow_engine::calls::MemoLookup;
use flow_engine::diag::{suggest, Diagnostic, Diagnostics};
use flow_engine::{Force, Plan};

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
#[command(
    name = "flow",
    version,
    about = "Declarative, cached, streaming pipelines for LLM evaluation",
    after_help = "Environment:\n  FLOW_LOG   log filter on stderr, e.g. FLOW_LOG=debug or FLOW_LOG=flow_nodes=trace (wins over -v)\n  NO_COLOR   set to any value: no colour (colour is only ever used on a terminal)\n\nExit codes: 0 ok, 1 a run failed or a gate tripped, 2 bad spec or usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log on stderr: -v debug, -vv trace (FLOW_LOG, when set, wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
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
    /// Only shard I of N (0 ≤ I < N): the records whose id hashes to it,
    /// through the nodes that map records one by one; run each shard in its
    /// own process on a shared workspace, then a plain `flow run` merges.
    #[arg(long, value_name = "I/N")]
    shard: Option<flow_engine::shard::Shard>,
    /// A shared store behind the workspace, `s3://bucket/prefix`: node
    /// entries and call answers that other machines stored are reused, and
    /// what this run stores is written there too. Credentials from the AWS
    /// environment variables (AWS_ENDPOINT_URL for another S3-compatible
    /// server).
    #[arg(long, value_name = "URL", env = "FLOW_STORE")]
    store: Option<String>,
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
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// No progress and no summary: only errors, warnings and a tripped gate.
        #[arg(short, long)]
        quiet: bool,
        /// Also write the results here, in the format of the extension:
        /// .xml (JUnit), .csv, .jsonl, .json (repeatable).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        outputs: Vec<PathBuf>,
        /// With `batch:` backends: submit the batches, record them and exit
        /// 0 without waiting for their results; the next `flow run` collects
        /// them.
        #[arg(long)]
        detach: bool,
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
        /// From this run (an id, a unique prefix, or `latest`) instead of the latest that has the node.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Of this spec's runs [default: the one spec in the current folder, if there is one].
        #[arg(long, value_name = "SPEC")]
        spec: Option<PathBuf>,
        /// The .flow folder [default: next to --spec, else found from the current folder].
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
    },
    /// Compare a node's scored output between two stored runs (RUN_A is the baseline).
    Compare {
        /// The baseline run: an id (`flow runs` lists them), a unique prefix, or `latest`.
        run_a: String,
        /// The candidate run: an id, a unique prefix, or `latest`.
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
    /// Print the path of the index of runs, or of a run's HTML report, and open it in the browser;
    /// or, with --serve, serve them all on a local web server that shows runs live as they go.
    View {
        /// The run: an id, a unique prefix, or `latest` [default: the index of every run].
        #[arg(conflicts_with = "serve")]
        run: Option<String>,
        /// Print the path (or the URL) only; do not open the report.
        #[arg(long)]
        no_open: bool,
        /// Serve the index and every report on a local web server instead, until Ctrl-C: a page
        /// follows the runs going in this workspace live (each node's progress, its records as they
        /// are written) and shows the final report when a run ends. Prints `serving URL`.
        #[arg(long)]
        serve: bool,
        /// The port to serve on; 0 picks a free one.
        #[arg(long, requires = "serve", default_value_t = 8700)]
        port: u16,
        /// The address to listen on [default: 127.0.0.1: this machine only]. Only an address given
        /// here is used: another one (0.0.0.0: every interface) lets any machine that reaches this
        /// one read the reports.
        #[arg(long, requires = "serve", value_name = "ADDR")]
        host: Option<String>,
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
    /// Add the call memo of other workspaces (shards run elsewhere) to this
    /// one: a run here then answers their calls from the memo.
    Import {
        /// Their .flow folders (or memo.sqlite files).
        #[arg(required = true, value_name = "DIR")]
        from: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // FLOW_LOG, when set, says exactly what to log; else -v and -vv raise
    // flow's own crates to debug and trace, and the rest says warnings.
    let filter = match std::env::var("FLOW_LOG") {
        Ok(f) if !f.is_empty() => tracing_subscriber::EnvFilter::new(f),
        _ => tracing_subscriber::EnvFilter::new(match cli.verbose {
            0 => "warn",
            1 => "warn,flow=debug,flow_engine=debug,flow_nodes=debug,flow_cache=debug",
            _ => "warn,flow=trace,flow_engine=trace,flow_nodes=trace,flow_cache=trace",
        }),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in a log that goes to a file or a CI's capture.
        .with_ansi(progress::colour_on(std::io::IsTerminal::is_terminal(&std::io::stderr())))
        .init();
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
            let store = store_of(&spec, &force)?;
            let force = force_of(&mut plan, &force)?;
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
            // What the backends are, cost and are expected to be sent
            // (the offline `sim` is free and local: nothing to say, unless
            // `prices:` prices it).
            let expected = flow_engine::calls::by_backend(&plan, &calls);
            let used = flow_nodes::backend::Backends::used_by(&plan, |_| true);
            let shown: Vec<_> = used
                .iter()
                .filter_map(|n| plan.backends.get(n).map(|s| (n, s)))
                .filter(|(_, s)| flow_nodes::backend::shown_in_plan(s, &plan.prices))
                .collect();
            let none = flow_engine::calls::BackendCalls::default();
            match format {
                PlanFormat::Text => {
                    out!("{}", render::text(&plan, &assessed, &calls));
                    if !shown.is_empty() {
                        outln!();
                        let (mut costs, mut not_priced): (Vec<_>, Vec<String>) = (Vec::new(), Vec::new());
                        for (name, spec) in shown {
                            outln!("{}", flow_nodes::backend::describe(name, spec, &plan.prices));
                            let calls = expected.get(name.as_str()).unwrap_or(&none);
                            for line in flow_nodes::backend::expected(spec, &plan.prices, calls) {
                                outln!("  {line}");
                            }
                            costs.extend(flow_nodes::backend::expected_cost(spec, &plan.prices, calls));
                            for n in &calls.not_priced {
                                if !not_priced.contains(n) {
                                    not_priced.push(n.clone());
                                }
                            }
                        }
                        if let Some(line) = flow_nodes::backend::total(&costs, &not_priced) {
                            outln!("{line}");
                        }
                    }
                }
                PlanFormat::Dot => out!("{}", render::dot(&plan, &assessed, &calls)),
                PlanFormat::Mermaid => out!("{}", render::mermaid(&plan, &assessed, &calls)),
                PlanFormat::Json => {
                    let mut json = render::json(&plan, &assessed, &calls);
                    let backends: serde_json::Map<String, serde_json::Value> = used
                        .iter()
                        .filter_map(|n| plan.backends.get(n).map(|s| (n, s)))
                        .map(|(name, spec)| {
                            let calls = expected.get(name.as_str()).unwrap_or(&none);
                            (name.clone(), flow_nodes::backend::expected_json(spec, &plan.prices, calls))
                        })
                        .collect();
                    json["backends"] = serde_json::Value::Object(backends);
                    outln!("{}", serde_json::to_string_pretty(&json).expect("json"))
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { spec, force, json, quiet, outputs, detach } => {
            // An unknown format is bad usage: said before anything runs.
            let outputs = export::targets(&outputs)?;
            let mut plan = compile(&spec)?;
            let store = store_of(&spec, &force)?;
            let force = force_of(&mut plan, &force)?;
            run::run(plan, store, force, progress::Mode::pick(json, quiet), &outputs, detach)
        }
        Command::Show { node, limit, run, spec, workspace } => {
            // The spec named, else the one in this folder: its name picks
            // its runs, and its workspace is next to it.
            let named = spec.is_some();
            let spec = spec.or_else(inspect::spec_here);
            let (spec_name, workspace) = match spec {
                Some(path) => {
                    let args = SpecArgs { spec: path, sets: Vec::new(), workspace: workspace.clone() };
                    match compile(&args) {
                        Ok(plan) => (Some(plan.spec_name), Some(workspace_of(&args)).filter(|w| named || w.is_dir())),
                        Err(d) if named => return Err(d.into()),
                        Err(_) => (None, workspace),
                    }
                }
                None => (None, workspace),
            };
            let store = Store::open(inspect::find_workspace(workspace)?);
            inspect::show(&store, &node, limit, run.as_deref(), spec_name.as_deref())?;
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
        Command::View { run: _, no_open, serve: true, port, host, workspace } => {
            let addr = serve::address(host.as_deref(), port)?;
            let store = Store::open(inspect::find_workspace(workspace)?);
            serve::serve(store, addr, !no_open)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::View { run, no_open, workspace, .. } => {
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
            // Importing into a workspace that does not exist yet makes it.
            let store = match (&action, &workspace) {
                (CacheAction::Import { .. }, Some(w)) => Store::open(w),
                _ => Store::open(inspect::find_workspace(workspace)?),
            };
            match action {
                CacheAction::Ls => cache_cmd::ls(&store)?,
                CacheAction::Gc { keep_runs, min_age, dry_run } => cache_cmd::gc(&store, keep_runs, min_age, dry_run)?,
                CacheAction::Import { from } => cache_cmd::import(&store, &from)?,
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

/// The workspace of `spec`, in front of the shared store `--store` names.
fn store_of(spec: &SpecArgs, args: &ForceArgs) -> Result<Store, Failure> {
    let store = Store::open(workspace_of(spec));
    match &args.store {
        None => Ok(store),
        Some(url) => {
            let remote = flow_engine::cache::Remote::connect(url).map_err(|e| {
                Failure::Usage(
                    Diagnostic::new(format!("--store: {e}"))
                        .hint("name a bucket as s3://bucket/prefix; credentials, region and endpoint come from the AWS_* environment variables")
                        .into(),
                )
            })?;
            Ok(store.with_remote(remote))
        }
    }
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
    if let Some(shard) = args.shard {
        let left = plan.shard(shard);
        if plan.nodes.is_empty() {
            return Err(Diagnostic::new(format!("--shard {shard}: no node of `{}` runs in a shard", plan.spec_name))
                .hint("a shard runs the sources (`load`, `query`) and the nodes that map their records one by one (`run`, `evaluate`)"));
        }
        if !left.is_empty() {
            errln!(
                "shard {shard}: {} node{} here; left to the merge (a plain `flow run` in this workspace): {}",
                plan.nodes.len(),
                if plan.nodes.len() == 1 { "" } else { "s" },
                left.join(", ")
            );
        }
    }
    Ok(Force { all: args.no_cache, nodes: args.rerun.iter().cloned().collect() })
}
