//! The scheduler with small test kinds: a counting source, a map that can
//! be slowed or made to fail or panic, and a barrier that counts its
//! executions (and can panic).
//! Real spec files, a real `.flow/` store in a temp folder.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use flow_engine::cache::{NodeStatus, RunManifest, RunStatus, Store};
use flow_engine::{
    kind, Arity, Artifact, BarrierStage, BuildCx, CheckCx, FieldSet, Force, MapStage, Node, NodeError, PortType,
    Record, Registry, RunOptions, Shape, SourceStage, Stage,
};

static PRODUCED: AtomicUsize = AtomicUsize::new(0);
static MAX_AHEAD: AtomicUsize = AtomicUsize::new(0);
static BARRIER_RUNS: AtomicUsize = AtomicUsize::new(0);

struct Count;
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountConfig {
    n: usize,
    #[serde(default)]
    fail_after: Option<usize>,
}
struct CountStage {
    next: usize,
    n: usize,
    fail_after: Option<usize>,
}
impl SourceStage for CountStage {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
        Box::pin(async move {
            if self.next >= self.n {
                return Ok(None);
            }
            if self.fail_after.is_some_and(|f| self.next >= f) {
                return Err(NodeError::new("source broke"));
            }
            let end = (self.next + 100).min(self.n);
            let batch =
                (self.next..end).map(|i| Arc::new(serde_json::json!({"i": i}).as_object().unwrap().clone())).collect();
            PRODUCED.fetch_add(1, Ordering::SeqCst);
            self.next = end;
            Ok(Some(batch))
        })
    }
}
impl Node for Count {
    type Config = CountConfig;
    const KIND: &'static str = "count";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "records 0..n";
    const INPUTS: Arity = Arity::None;
    const SHAPE: Shape = Shape::Source;
    fn check(_: &CountConfig, _: &mut CheckCx<'_>) -> PortType {
        PortType::records(FieldSet::Known(["i".to_string()].into()))
    }
    fn build(c: &CountConfig, _: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Source(Box::new(CountStage { next: 0, n: c.n, fail_after: c.fail_after })))
    }
}

struct Tag;
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TagConfig {
    #[serde(default)]
    slow_ms: u64,
    #[serde(default)]
    fail_at: Option<u64>,
    #[serde(default)]
    panic_at: Option<u64>,
}
struct TagStage {
    cfg: TagConfig,
    seen: AtomicUsize,
}
impl MapStage for TagStage {
    fn map(&self, r: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        let i = r["i"].as_u64().unwrap();
        if Some(i) == self.cfg.fail_at {
            return Err(NodeError::new(format!("bad record {i}")));
        }
        if Some(i) == self.cfg.panic_at {
            panic!("boom at record {i}");
        }
        if i.is_multiple_of(100) && self.cfg.slow_ms > 0 {
            let consumed = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let ahead = PRODUCED.load(Ordering::SeqCst).saturating_sub(consumed);
            MAX_AHEAD.fetch_max(ahead, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(self.cfg.slow_ms));
        }
        let mut f = (**r).clone();
        f.insert("tagged".into(), true.into());
        out.push(Arc::new(f));
        Ok(())
    }
}
impl Node for Tag {
    type Config = TagConfig;
    const KIND: &'static str = "tag";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "adds tagged: true";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Streaming;
    fn check(_: &TagConfig, cx: &mut CheckCx<'_>) -> PortType {
        cx.inputs()[0].ty.extend("Tagged", &["tagged"])
    }
    fn build(c: &TagConfig, _: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Map(Box::new(TagStage { cfg: c.clone(), seen: AtomicUsize::new(0) })))
    }
}

struct Total;
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TotalConfig {
    /// Trip a gate with this message.
    #[serde(default)]
    gate: Option<String>,
    /// Panic with this message.
    #[serde(default)]
    panic: Option<String>,
}
struct TotalStage {
    gate: Option<String>,
    panic: Option<String>,
}
impl BarrierStage for TotalStage {
    fn run(
        self: Box<Self>,
        inputs: Vec<Vec<Record>>,
    ) -> BoxFuture<'static, Result<(Vec<Record>, Vec<Artifact>), NodeError>> {
        Box::pin(async move {
            BARRIER_RUNS.fetch_add(1, Ordering::SeqCst);
            if let Some(message) = self.panic {
                std::panic::panic_any(message);
            }
            let sizes: Vec<usize> = inputs.iter().map(Vec::len).collect();
            let rec = serde_json::json!({"sizes": sizes}).as_object().unwrap().clone();
            let mut artifacts = vec![Artifact { name: "note.txt".into(), bytes: b"done".to_vec() }];
            if let Some(g) = self.gate {
                artifacts.push(Artifact { name: flow_engine::GATE_FAILED.into(), bytes: g.into_bytes() });
            }
            Ok((vec![Arc::new(rec)], artifacts))
        })
    }
}
impl Node for Total {
    type Config = TotalConfig;
    const KIND: &'static str = "total";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "counts records per input";
    const INPUTS: Arity = Arity::Many;
    const SHAPE: Shape = Shape::Barrier;
    fn check(_: &TotalConfig, _: &mut CheckCx<'_>) -> PortType {
        PortType::records(FieldSet::Known(["sizes".to_string()].into()))
    }
    fn build(c: &TotalConfig, _: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Barrier(Box::new(TotalStage { gate: c.gate.clone(), panic: c.panic.clone() })))
    }
}

/// Adds to each record how many records its side input `extra` had.
struct Sided;
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SidedConfig {
    extra: String,
}
struct SidedStage(usize);
impl MapStage for SidedStage {
    fn map(&self, r: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
        let mut f = (**r).clone();
        f.insert("extra".into(), self.0.into());
        out.push(Arc::new(f));
        Ok(())
    }
}
impl Node for Sided {
    type Config = SidedConfig;
    const KIND: &'static str = "sided";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "counts its side input";
    const INPUTS: Arity = Arity::One;
    const SHAPE: Shape = Shape::Streaming;
    const SIDE_INPUTS: &'static [&'static str] = &["extra"];
    fn check(_: &SidedConfig, cx: &mut CheckCx<'_>) -> PortType {
        assert!(cx.side_input("extra").is_some(), "the side input is known at check time");
        assert_eq!(cx.inputs().len(), 1, "a side input is not a main input");
        cx.inputs()[0].ty.extend("Sided", &["extra"])
    }
    fn build(_: &SidedConfig, cx: &BuildCx) -> Result<Stage, NodeError> {
        Ok(Stage::Map(Box::new(SidedStage(cx.side_inputs["extra"].len()))))
    }
}

fn registry() -> Registry {
    Registry::new(vec![kind::<Count>(), kind::<Tag>(), kind::<Total>(), kind::<Sided>()])
}

async fn run_spec(dir: &std::path::Path, spec: &str, force: Force) -> RunManifest {
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let plan = Arc::new(flow_engine::compile(&path, &[], &registry()).unwrap_or_else(|d| panic!("{d}")));
    let store = Store::open(dir.join(".flow"));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let assessed = flow_engine::assess(&plan, &store, &force).unwrap();
    flow_engine::run(plan, store, assessed, RunOptions { force, context: None }, tx, std::future::pending())
        .await
        .unwrap()
}

fn status(m: &RunManifest, name: &str) -> NodeStatus {
    m.node(name).unwrap().status
}

// These tests share static counters, so they run one at a time inside one test.
#[test]
fn scheduler_behaviour() {
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    multi.block_on(async {
        fan_out_and_barrier_reuse().await;
        backpressure_bounds_the_producer().await;
        failure_cancels_and_keeps_finished_work().await;
        a_tripped_gate_fails_the_run_and_stays_cached().await;
        a_side_input_fed_by_the_main_input_does_not_deadlock().await;
        the_run_follows_the_assessment_it_is_given().await;
        a_panicking_map_fails_the_run_and_keeps_finished_work().await;
        a_panicking_barrier_fails_the_run().await;
    });
    // On one thread the consumer of a failed source often sees its input
    // close before the abort lands: it must not file partial output.
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for _ in 0..20 {
        single.block_on(consumer_of_a_failed_node_is_cancelled());
    }
}

/// `m` reads `src` and takes `side` (which also reads `src`) whole first:
/// `src` must not stall on `m`'s full channel while `side` still needs it.
async fn a_side_input_fed_by_the_main_input_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: s\nnodes:\n  src: {kind: count, n: 20000}\n  side: {kind: tag, input: src}\n  m: {kind: sided, input: src, extra: side}\n";
    let m = tokio::time::timeout(std::time::Duration::from_secs(30), run_spec(dir.path(), spec, Force::default()))
        .await
        .expect("the run finished");
    assert_eq!(m.status, RunStatus::Succeeded, "{:?}", m.error);
    assert_eq!(m.node("m").unwrap().records_out, 20000);
    let store = Store::open(dir.path().join(".flow"));
    let out = store.read_object(&m.node("m").unwrap().output.unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_slice(out.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["extra"], 20000, "the side input was whole when the node started");
    // The side input is part of the key: a second run reuses everything.
    let again = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(status(&again, "m"), NodeStatus::Cached);
}

/// The caller assesses once and decides from it (which backends to open);
/// a cache entry that appears before the run starts must not change what
/// runs.
async fn the_run_follows_the_assessment_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: a\nnodes:\n  src: {kind: count, n: 10}\n  m: {kind: tag, input: src}\n";
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    let plan = Arc::new(flow_engine::compile(&path, &[], &registry()).unwrap_or_else(|d| panic!("{d}")));
    let store = Store::open(dir.path().join(".flow"));
    let before = flow_engine::assess(&plan, &store, &Force::default()).unwrap();
    // Meanwhile, another run fills the cache.
    let first = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{:?}", first.error);
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let m = flow_engine::run(plan, store, before, RunOptions::default(), tx, std::future::pending()).await.unwrap();
    assert_eq!(m.status, RunStatus::Succeeded, "{:?}", m.error);
    assert_eq!(status(&m, "src"), NodeStatus::Ran, "assessed as will run: it runs");
    assert_eq!(status(&m, "m"), NodeStatus::Ran);
    assert_eq!(m.node("m").unwrap().output, first.node("m").unwrap().output, "the same output either way");
}

/// A stage that panics is a node that failed: never a success, and never
/// a node that quietly shows as cancelled.
async fn a_panicking_map_fails_the_run_and_keeps_finished_work() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: p\nnodes:\n  ok_src: {kind: count, n: 10}\n  ok: {kind: tag, input: ok_src}\n  src: {kind: count, n: 100000}\n  bad: {kind: tag, input: src, panic_at: 50000}\n  after: {kind: tag, input: bad}\n";
    let m = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.error.as_deref(), Some("node `bad` (tag) failed: panicked: boom at record 50000"));
    assert_eq!(status(&m, "bad"), NodeStatus::Failed);
    assert_eq!(m.node("bad").unwrap().error.as_deref(), Some("panicked: boom at record 50000"));
    assert_eq!(status(&m, "after"), NodeStatus::Cancelled);
    assert_eq!(status(&m, "ok"), NodeStatus::Ran);
    let store = Store::open(dir.path().join(".flow"));
    assert!(store.node_manifest(&m.node("ok").unwrap().key.unwrap()).unwrap().is_some(), "finished work is kept");
    assert!(store.last_manifest("p", "bad").unwrap().is_none(), "no manifest for the node that panicked");
    assert!(store.last_manifest("p", "after").unwrap().is_none(), "nor for its consumer");
    let m2 = run_spec(dir.path(), &spec.replace(", panic_at: 50000", ""), Force::default()).await;
    assert_eq!(m2.status, RunStatus::Succeeded, "{:?}", m2.error);
    assert_eq!(status(&m2, "ok"), NodeStatus::Cached);
}

async fn a_panicking_barrier_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: pb\nnodes:\n  src: {kind: count, n: 10}\n  sum: {kind: total, inputs: [src], panic: \"the barrier broke\"}\n";
    let m = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.error.as_deref(), Some("node `sum` (total) failed: panicked: the barrier broke"));
    assert_eq!(status(&m, "sum"), NodeStatus::Failed);
    assert!(m.node("sum").unwrap().output.is_none());
    assert_eq!(status(&m, "src"), NodeStatus::Ran, "what finished is kept");
    let again = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(again.status, RunStatus::Failed, "a node that panicked is not cached");
    assert_eq!(status(&again, "src"), NodeStatus::Cached);
    assert_eq!(status(&again, "sum"), NodeStatus::Failed);
}

async fn a_tripped_gate_fails_the_run_and_stays_cached() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: g\nnodes:\n  src: {kind: count, n: 10}\n  sum: {kind: total, inputs: [src], gate: \"accuracy dropped 0.2\"}\n";
    for run in 0..2 {
        let m = run_spec(dir.path(), spec, Force::default()).await;
        assert_eq!(m.status, RunStatus::Failed, "run {run}");
        assert_eq!(m.error.as_deref(), Some("gate tripped: node `sum`: accuracy dropped 0.2"), "run {run}");
        let expected = if run == 0 { NodeStatus::Ran } else { NodeStatus::Cached };
        assert_eq!(status(&m, "sum"), expected, "the node finished and is kept (run {run})");
        assert_eq!(m.node("sum").unwrap().gate_failed.as_deref(), Some("accuracy dropped 0.2"));
    }
}

async fn consumer_of_a_failed_node_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = String::from(
        "flow: 1\nname: c\nnodes:\n  src: {kind: count, n: 1000, fail_after: 300}\n  m: {kind: tag, input: src}\n",
    );
    for i in 0..10 {
        spec.push_str(&format!("  other{i}: {{kind: count, n: {}}}\n", 10 + i));
    }
    let m = run_spec(dir.path(), &spec, Force::default()).await;
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.error.as_deref(), Some("node `src` (count) failed: source broke"));
    assert_eq!(status(&m, "m"), NodeStatus::Cancelled, "partial input must not count as done");
    assert!(m.node("m").unwrap().output.is_none());
    let store = Store::open(dir.path().join(".flow"));
    assert!(store.last_manifest("c", "m").unwrap().is_none(), "no manifest for the consumer");
}

const DIAMOND: &str = "flow: 1\nname: t\nnodes:\n  src: {kind: count, n: 1000}\n  a: {kind: tag, input: src}\n  b: {kind: tag, input: src, slow_ms: 1}\n  sum: {kind: total, inputs: [a, b]}\n";

async fn fan_out_and_barrier_reuse() {
    let dir = tempfile::tempdir().unwrap();
    BARRIER_RUNS.store(0, Ordering::SeqCst);
    let m = run_spec(dir.path(), DIAMOND, Force::default()).await;
    assert_eq!(m.status, RunStatus::Succeeded, "{:?}", m.error);
    assert_eq!(m.node("a").unwrap().records_in, 1000, "fan-out delivers every record to each consumer");
    assert_eq!(m.node("b").unwrap().records_in, 1000);
    let store = Store::open(dir.path().join(".flow"));
    let out = store.read_object(&m.node("sum").unwrap().output.unwrap()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "{\"sizes\":[1000,1000]}\n");
    assert_eq!(std::fs::read_to_string(store.run_dir(&m.run_id).join("sum/note.txt")).unwrap(), "done");
    assert_eq!(BARRIER_RUNS.load(Ordering::SeqCst), 1);

    // Forcing `a` makes `sum` unknown at plan time; `a` reproduces the same
    // bytes, so the barrier finds its key cached once its input is in.
    let forced = Force { all: false, nodes: ["a".to_string()].into() };
    let m2 = run_spec(dir.path(), DIAMOND, forced).await;
    assert_eq!(status(&m2, "a"), NodeStatus::Ran);
    assert_eq!(status(&m2, "b"), NodeStatus::Cached);
    assert_eq!(status(&m2, "sum"), NodeStatus::Cached);
    assert_eq!(BARRIER_RUNS.load(Ordering::SeqCst), 1, "the barrier did not run again");
    assert_eq!(m2.node("sum").unwrap().output, m.node("sum").unwrap().output);
    assert!(
        store.run_dir(&m2.run_id).join("sum/note.txt").is_file(),
        "artifacts of reused nodes are in the run folder"
    );
}

async fn backpressure_bounds_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    PRODUCED.store(0, Ordering::SeqCst);
    MAX_AHEAD.store(0, Ordering::SeqCst);
    let spec =
        "flow: 1\nname: bp\nnodes:\n  src: {kind: count, n: 5000}\n  slow: {kind: tag, input: src, slow_ms: 5}\n";
    let m = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(m.status, RunStatus::Succeeded);
    assert_eq!(PRODUCED.load(Ordering::SeqCst), 50);
    // The edge holds 4 batches; one more can be in the producer's hand and
    // one in the consumer's.
    let ahead = MAX_AHEAD.load(Ordering::SeqCst);
    assert!(ahead <= 6, "producer ran {ahead} batches ahead of a slow consumer");
}

async fn failure_cancels_and_keeps_finished_work() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "flow: 1\nname: f\nnodes:\n  ok_src: {kind: count, n: 10}\n  ok: {kind: tag, input: ok_src}\n  src: {kind: count, n: 100000}\n  bad: {kind: tag, input: src, fail_at: 50000}\n";
    // Let the small branch finish first.
    let m = run_spec(dir.path(), spec, Force::default()).await;
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.error.as_deref(), Some("node `bad` (tag) failed: bad record 50000"));
    assert_eq!(status(&m, "bad"), NodeStatus::Failed);
    assert_eq!(status(&m, "ok"), NodeStatus::Ran);
    let store = Store::open(dir.path().join(".flow"));
    let ok_key = m.node("ok").unwrap().key.unwrap();
    assert!(store.node_manifest(&ok_key).unwrap().is_some(), "finished work is kept");
    let m2 = run_spec(dir.path(), &spec.replace(", fail_at: 50000", ""), Force::default()).await;
    assert_eq!(m2.status, RunStatus::Succeeded);
    assert_eq!(status(&m2, "ok"), NodeStatus::Cached);
}
