//! How many backend calls `flow plan` expects each node to make: before a
//! run spends money, the plan says what it will cost in calls.
//!
//! A node's calls are its input records × its calls per record, less those
//! the call memo already answers. The records are read only where that is
//! cheap and runs nothing: a cached upstream's stored output, or a source
//! upstream that calls no backend (a `load` just reads its file). The node
//! kind turns each record into the memo keys of the requests it would send
//! ([`crate::Node::plan_calls`]), and the plan looks them up. Where the
//! records cannot be had, an upstream's record count (a cached one's, or
//! what a node that will run declares it outputs) still bounds the calls
//! ("up to"); past that the plan says only the calls per record.
//!
//! Each call the kind names comes with its tokens ([`Tokens`]): exactly
//! what the offline `sim` will count, or an estimate from the request
//! (prompt text, and `max_tokens` bounding the answer). The plan sums them
//! per backend for the calls the memo does not answer ([`BackendTokens`]),
//! and the command prices them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use serde::Serialize;

use flow_cache::{CallMemo, ContentHash, Store};

use crate::assess::{Assessment, Force, State};
use crate::compile::Plan;
use crate::node::{BuildCx, OutputRecords, Shape, Stage};
use crate::record::{Fields, Record};

/// Past this many input records the plan does not read them (it would
/// take longer than a plan should) and gives a bound or nothing.
pub const MAX_RECORDS: usize = 200_000;

/// What the plan can see of the call memo.
pub enum MemoLookup<'a> {
    /// There is no memo yet: nothing is memoized.
    Empty,
    /// The memo, to look keys up in.
    Open(&'a CallMemo),
    /// There is a memo, but it cannot be read (damaged, or an older flow's
    /// memo that the next run imports): memo hits are unknown.
    Unreadable,
}

/// One backend call a node would make, as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    /// Its call-memo key.
    pub key: ContentHash,
    /// The backend it goes to, by its name in the spec.
    pub backend: String,
    /// Its tokens, when the kind can tell (a chat or embeddings call; not
    /// a fine-tuning upload).
    pub tokens: Option<Tokens>,
}

/// The tokens of one call, before it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Tokens {
    pub prompt: u64,
    /// The answer's tokens, or a bound on them (the request's
    /// `max_tokens`); `None` when nothing bounds them.
    pub completion: Option<u64>,
    /// Both are what the backend will count (the offline `sim`'s answers
    /// are known before they are asked), not estimates.
    pub exact: bool,
}

/// The tokens of the calls a node will send one backend (memo hits are
/// free and not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BackendTokens {
    /// Calls sent.
    pub calls: u64,
    /// Of them, calls whose tokens the kind could not tell.
    pub unknown: u64,
    pub prompt: u64,
    /// The answers' tokens: exact, or at most (see `estimated`).
    pub completion: u64,
    /// Calls whose answer nothing bounds (no `max_tokens`): `completion`
    /// leaves them out.
    pub unbounded: u64,
    /// Some count is an estimate: prompts from their text, answers at
    /// their bound.
    pub estimated: bool,
}

impl BackendTokens {
    fn add(&mut self, t: Option<Tokens>) {
        self.calls += 1;
        let Some(t) = t else {
            self.unknown += 1;
            return;
        };
        self.prompt += t.prompt;
        match t.completion {
            Some(n) => self.completion += n,
            None => self.unbounded += 1,
        }
        self.estimated |= !t.exact;
    }

    /// Sums `other` into this.
    pub fn merge(&mut self, other: &BackendTokens) {
        self.calls += other.calls;
        self.unknown += other.unknown;
        self.prompt += other.prompt;
        self.completion += other.completion;
        self.unbounded += other.unbounded;
        self.estimated |= other.estimated;
    }
}

/// The calls a node is expected to make in the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallEstimate {
    /// Requests the backend will receive, when the input records are known.
    pub expected: Option<u64>,
    /// Calls answered from the call memo instead, when known.
    pub memo_hits: Option<u64>,
    /// An upper bound on the requests: `expected` when that is known, else
    /// input records × calls per record, when the record count is known.
    pub at_most: Option<u64>,
    /// Input records, when known.
    pub records: Option<u64>,
    /// Calls per input record the node declares (`repeat`, judge metrics).
    pub per_record: u64,
    /// The tokens of the requests sent, per backend name, when the input
    /// records are known (empty otherwise).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<String, BackendTokens>,
}

impl CallEstimate {
    fn unknown(per_record: u64) -> Self {
        Self { expected: None, memo_hits: None, at_most: None, records: None, per_record, tokens: BTreeMap::new() }
    }

    fn up_to(records: u64, per_record: u64) -> Self {
        Self { at_most: Some(records.saturating_mul(per_record)), records: Some(records), ..Self::unknown(per_record) }
    }

    /// Whether the node's requests are known call by call (and priced in
    /// [`CallEstimate::tokens`]), not only bounded.
    pub fn is_known(&self) -> bool {
        self.expected.is_some() || self.at_most == Some(0)
    }
}

impl std::fmt::Display for CallEstimate {
    /// `10`, `10 (90 memoized)`, `up to 100`, or `records × 2 per record`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.expected, self.memo_hits, self.at_most) {
            (Some(n), Some(hits), _) if hits > 0 => write!(f, "{n} ({hits} memoized)"),
            (Some(n), _, _) => write!(f, "{n}"),
            (None, _, Some(n)) => write!(f, "up to {n}"),
            (None, _, None) => write!(f, "records × {} per record", self.per_record),
        }
    }
}

/// What the next run is expected to send one backend, from the estimates
/// of the nodes that call it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackendCalls {
    /// Requests counted call by call (memo hits left out).
    pub requests: u64,
    /// `requests` is a bound: the memo could not be read, so hits are
    /// unknown.
    pub bounded: bool,
    /// More requests, bounded by record counts only: not priced.
    pub more_up_to: u64,
    /// The tokens of the counted requests.
    pub tokens: BackendTokens,
    /// Nodes whose calls here are not priced: their records are not known
    /// before the run (only counted, or not even that).
    pub not_priced: Vec<String>,
    /// Of them, nodes whose calls cannot even be bounded.
    pub uncounted: Vec<String>,
}

/// [`estimate`]'s figures per backend name, over the nodes that call each.
pub fn by_backend(plan: &Plan, calls: &[Option<CallEstimate>]) -> BTreeMap<String, BackendCalls> {
    let mut out: BTreeMap<String, BackendCalls> = BTreeMap::new();
    for (node, estimate) in plan.nodes.iter().zip(calls) {
        let Some(e) = estimate else { continue };
        for name in node.compiled.backends.keys() {
            let b = out.entry(name.clone()).or_default();
            if e.is_known() || !e.tokens.is_empty() {
                if let Some(t) = e.tokens.get(name) {
                    b.requests += t.calls;
                    b.tokens.merge(t);
                }
                b.bounded |= e.expected.is_none() && e.at_most != Some(0);
                continue;
            }
            b.not_priced.push(node.name.clone());
            match e.at_most {
                Some(n) => b.more_up_to += n,
                None => b.uncounted.push(node.name.clone()),
            }
        }
    }
    out
}

/// The records of a node's input, as far as the plan can know them.
enum Input {
    Records(Vec<Record>),
    Count(u64),
    Unknown,
}

/// The calls each node of the plan is expected to make, in plan order:
/// `None` for nodes that call no backend, zero for cached ones. Reads the
/// store and input files, writes nothing. Not for use inside an async
/// runtime: a source upstream is read on a runtime of its own.
pub fn estimate(
    plan: &Plan,
    assessed: &[Assessment],
    store: &Store,
    memo: &MemoLookup<'_>,
    force: &Force,
) -> Vec<Option<CallEstimate>> {
    let mut inputs: HashMap<usize, Input> = HashMap::new();
    let mut sent: HashSet<ContentHash> = HashSet::new();
    let mut out = Vec::with_capacity(plan.nodes.len());
    for (i, node) in plan.nodes.iter().enumerate() {
        let per_record = node.compiled.calls_per_record;
        if per_record == 0 {
            out.push(None);
            continue;
        }
        if assessed[i].state == State::Cached {
            let none = Some(0);
            out.push(Some(CallEstimate {
                expected: none,
                memo_hits: none,
                at_most: none,
                ..CallEstimate::unknown(per_record)
            }));
            continue;
        }
        // A node without input (`generate` without seeds) makes its calls
        // from its config alone.
        // `--no-cache` and `cache: false` send every call again.
        let reuse = !force.all && node.cache;
        let lookup = if reuse { memo } else { &MemoLookup::Empty };
        if node.main_inputs().is_empty() {
            out.push(Some(from_records(plan, i, &[], lookup, reuse.then_some(&mut sent), per_record)));
            continue;
        }
        // Kinds with several inputs pair records in their own ways.
        let [u] = node.main_inputs()[..] else {
            out.push(Some(CallEstimate::unknown(per_record)));
            continue;
        };
        let estimate = match input_of(plan, assessed, store, &mut inputs, u) {
            Input::Records(records) => from_records(plan, i, records, lookup, reuse.then_some(&mut sent), per_record),
            Input::Count(n) => CallEstimate::up_to(*n, per_record),
            Input::Unknown => CallEstimate::unknown(per_record),
        };
        out.push(Some(estimate));
    }
    out
}

/// Counts the calls node `i` makes for `records`, how many of them the
/// memo answers, and the tokens of the rest. With `sent` (the calls the
/// plan's nodes before it send), a request the run sends already is
/// answered by the memo (or shares the call in flight) when it comes
/// again, so it counts once; without (`--no-cache`), each time.
fn from_records(
    plan: &Plan,
    i: usize,
    records: &[Record],
    memo: &MemoLookup<'_>,
    mut sent_before: Option<&mut HashSet<ContentHash>>,
    per_record: u64,
) -> CallEstimate {
    let node = &plan.nodes[i];
    let (mut sent, mut hits) = (0u64, 0u64);
    let mut memo_known = !matches!(memo, MemoLookup::Unreadable);
    let Some(calls) = node.compiled.plan_calls(records, &plan.backends) else {
        return CallEstimate::up_to(records.len() as u64, per_record);
    };
    let mut tokens: BTreeMap<String, BackendTokens> = BTreeMap::new();
    for call in calls {
        let hit = match memo {
            MemoLookup::Open(m) => m.get(&call.key).unwrap_or_else(|_| {
                memo_known = false;
                None
            }),
            MemoLookup::Empty | MemoLookup::Unreadable => None,
        };
        let again = sent_before.as_deref_mut().is_some_and(|s| !s.insert(call.key));
        if hit.is_some() || again {
            hits += 1;
        } else {
            sent += 1;
            tokens.entry(call.backend).or_default().add(call.tokens);
        }
    }
    let records = Some(records.len() as u64);
    if memo_known {
        CallEstimate { expected: Some(sent), memo_hits: Some(hits), at_most: Some(sent), records, per_record, tokens }
    } else {
        // Hits unknown: every call is priced, as the most it can cost.
        CallEstimate { at_most: Some(sent + hits), records, tokens, ..CallEstimate::unknown(per_record) }
    }
}

/// [`read_input`] of node `u`, read once for the plan (a node's output is
/// the input of the nodes after it, and of its own projection).
fn input_of<'c>(
    plan: &Plan,
    assessed: &[Assessment],
    store: &Store,
    cache: &'c mut HashMap<usize, Input>,
    u: usize,
) -> &'c Input {
    if !cache.contains_key(&u) {
        let input = read_input(plan, assessed, store, cache, u);
        cache.insert(u, input);
    }
    &cache[&u]
}

/// The output records of plan node `u`, if knowable without running
/// anything costly; else how many there will be, if its kind can tell.
fn read_input(
    plan: &Plan,
    assessed: &[Assessment],
    store: &Store,
    cache: &mut HashMap<usize, Input>,
    u: usize,
) -> Input {
    let upstream = &plan.nodes[u];
    if let (State::Cached, Some(m)) = (assessed[u].state, &assessed[u].manifest) {
        if m.records > MAX_RECORDS as u64 {
            return Input::Count(m.records);
        }
        return match read_object(store, m) {
            Some(records) => Input::Records(records),
            None => Input::Count(m.records),
        };
    }
    let cheap_source =
        upstream.shape == Shape::Source && upstream.inputs.is_empty() && upstream.compiled.backends.is_empty();
    if assessed[u].state == State::WillRun && cheap_source {
        if let Some(records) = read_source(plan, u) {
            return Input::Records(records);
        }
    }
    // A node that will run, whose output its kind works out from its
    // input at no cost (a `run` on the offline sim; asked first of no
    // input, so its input is read only when it can).
    let projects = || upstream.compiled.plan_outputs(&[], &plan.backends).is_some();
    if let ([v], true) = (upstream.main_inputs(), projects()) {
        if let Input::Records(input) = input_of(plan, assessed, store, cache, *v) {
            if let Some(records) = upstream.compiled.plan_outputs(input, &plan.backends) {
                return Input::Records(records);
            }
        }
    }
    match output_count(plan, assessed, u, 0) {
        Some(n) => Input::Count(n),
        None => Input::Unknown,
    }
}

/// How many records node `u` will output, from what the kinds declare
/// (`run` outputs `repeat` records per input record): a cached node's
/// count, a source's declared count, or a count per input record times its
/// one input's. `depth` guards against a long chain.
fn output_count(plan: &Plan, assessed: &[Assessment], u: usize, depth: usize) -> Option<u64> {
    let node = &plan.nodes[u];
    if let (State::Cached, Some(m)) = (assessed[u].state, &assessed[u].manifest) {
        return Some(m.records);
    }
    if node.shard.is_some() || depth > 64 {
        return None;
    }
    let n = match node.compiled.records {
        OutputRecords::Exactly(n) => Some(n),
        OutputRecords::PerInput(k) => match node.main_inputs()[..] {
            [one] => output_count(plan, assessed, one, depth + 1).map(|n| n.saturating_mul(k)),
            _ => None,
        },
        OutputRecords::Unknown => None,
    }?;
    Some(node.limit.map_or(n, |l| n.min(l)))
}

/// A cached node's stored output (JSONL).
fn read_object(store: &Store, m: &flow_cache::NodeManifest) -> Option<Vec<Record>> {
    let file = store.open_object(&m.output).ok()?;
    let mut records = Vec::with_capacity(m.records as usize);
    for line in BufReader::with_capacity(256 * 1024, file).lines() {
        let fields: Fields = serde_json::from_str(&line.ok()?).ok()?;
        records.push(Arc::new(fields));
    }
    Some(records)
}

/// Every record a source node would produce, built as a run would build
/// it; `None` past [`MAX_RECORDS`] or on any error (a file that changed
/// since the plan hashed it, say).
fn read_source(plan: &Plan, u: usize) -> Option<Vec<Record>> {
    let node = &plan.nodes[u];
    let mut cx = BuildCx::new(&node.name, node.file.dir.clone());
    cx.files = node.compiled.files.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    runtime.block_on(async {
        let Stage::Source(mut source) = node.compiled.build(&cx).ok()? else {
            return None;
        };
        let limit = node.limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut records = Vec::new();
        while let Some(batch) = source.next_batch().await.ok()? {
            records.extend(batch);
            if records.len() >= limit {
                records.truncate(limit);
                break;
            }
            if records.len() > MAX_RECORDS {
                return None;
            }
        }
        if let Some(shard) = node.shard {
            records.retain(|r| shard.holds(r));
        }
        Some(records)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use futures::future::BoxFuture;
    use serde::Deserialize;

    use super::*;
    use crate::node::{kind, Arity, CheckCx, MapStage, Node, NodeError, PlannedCall, Registry, SourceStage};
    use crate::record::{FieldSet, PortType};
    use crate::spec::BackendSpec;
    use crate::RunOptions;

    /// Records `{"i": 0..n}`.
    struct Count;
    #[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
    struct CountConfig {
        n: u64,
    }
    struct CountStage(u64, u64);
    impl SourceStage for CountStage {
        fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Record>>, NodeError>> {
            Box::pin(async move {
                if self.0 >= self.1 {
                    return Ok(None);
                }
                let batch = (self.0..self.1).map(|i| Arc::new(fields(i))).collect();
                self.0 = self.1;
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
        fn check(c: &CountConfig, cx: &mut CheckCx<'_>) -> PortType {
            cx.output_records(OutputRecords::Exactly(c.n));
            PortType::records(FieldSet::Known(["i".to_string()].into()))
        }
        fn build(c: &CountConfig, _: &BuildCx) -> Result<Stage, NodeError> {
            Ok(Stage::Source(Box::new(CountStage(0, c.n))))
        }
    }

    fn fields(i: u64) -> Fields {
        serde_json::json!({"i": i}).as_object().unwrap().clone()
    }

    /// "Calls" twice per record, except record 3 (as if it lacked a prompt
    /// field); `salt` changes its key and its calls.
    struct Ask;
    #[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
    struct AskConfig {
        salt: u32,
    }
    struct Pass;
    impl MapStage for Pass {
        fn map(&self, r: &Record, out: &mut Vec<Record>) -> Result<(), NodeError> {
            out.push(r.clone());
            Ok(())
        }
    }
    impl Node for Ask {
        type Config = AskConfig;
        const KIND: &'static str = "ask";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "two calls per record";
        const INPUTS: Arity = Arity::One;
        const SHAPE: Shape = Shape::Streaming;
        fn check(_: &AskConfig, cx: &mut CheckCx<'_>) -> PortType {
            cx.calls_per_record(2);
            cx.output_records(OutputRecords::PerInput(1));
            cx.inputs()[0].ty.clone()
        }
        fn build(_: &AskConfig, _: &BuildCx) -> Result<Stage, NodeError> {
            Ok(Stage::Map(Box::new(Pass)))
        }
        /// Record `i`'s prompt is `i` tokens; the first sample's answer
        /// 2 tokens at most, the second's unbounded.
        fn plan_calls(c: &AskConfig, r: &Record, _: &BTreeMap<String, BackendSpec>) -> Option<Vec<PlannedCall>> {
            let i = r["i"].as_u64().unwrap();
            let call = |s: u32| PlannedCall {
                key: key(c.salt, i, s),
                backend: "b".into(),
                tokens: Some(Tokens { prompt: i, completion: (s == 0).then_some(2), exact: false }),
            };
            Some(if i == 3 { Vec::new() } else { (0..2).map(call).collect() })
        }
    }

    fn key(salt: u32, i: u64, sample: u32) -> ContentHash {
        CallMemo::key(&"ask", &(salt, i, sample))
    }

    /// Declares a call per record but cannot name its keys.
    struct Guess;
    impl Node for Guess {
        type Config = AskConfig;
        const KIND: &'static str = "guess";
        const VERSION: u32 = 1;
        const ABOUT: &'static str = "one call per record, keys unknown";
        const INPUTS: Arity = Arity::One;
        const SHAPE: Shape = Shape::Streaming;
        fn check(_: &AskConfig, cx: &mut CheckCx<'_>) -> PortType {
            cx.calls_per_record(1);
            cx.inputs()[0].ty.clone()
        }
        fn build(_: &AskConfig, _: &BuildCx) -> Result<Stage, NodeError> {
            Ok(Stage::Map(Box::new(Pass)))
        }
    }

    fn registry() -> Registry {
        Registry::new(vec![kind::<Count>(), kind::<Ask>(), kind::<Guess>()])
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn plan(&self, salt: u32) -> Plan {
            let spec = format!(
                "flow: 1\nname: t\nnodes:\n  src: {{kind: count, n: 5}}\n  ask: {{kind: ask, input: src, salt: {salt}}}\n  guess: {{kind: guess, input: src, salt: 0}}\n  then: {{kind: ask, input: ask, salt: 0}}\n  twin: {{kind: ask, input: src, salt: {salt}}}\n"
            );
            let path = self.dir.path().join("spec.yaml");
            std::fs::write(&path, spec).unwrap();
            crate::compile(&path, &[], &registry()).unwrap_or_else(|d| panic!("{d}"))
        }

        fn store(&self) -> Store {
            Store::open(self.dir.path().join(".flow"))
        }

        fn estimate(&self, plan: &Plan, memo: &MemoLookup<'_>, force: &Force) -> Vec<Option<CallEstimate>> {
            let assessed = crate::assess(plan, &self.store(), force).unwrap();
            estimate(plan, &assessed, &self.store(), memo, force)
        }
    }

    fn exact(expected: u64, memo_hits: u64, records: u64, per_record: u64) -> Option<CallEstimate> {
        Some(CallEstimate {
            expected: Some(expected),
            memo_hits: Some(memo_hits),
            at_most: Some(expected),
            records: Some(records),
            ..CallEstimate::unknown(per_record)
        })
    }

    /// The estimates without their tokens.
    fn counts(mut e: Vec<Option<CallEstimate>>) -> Vec<Option<CallEstimate>> {
        for c in e.iter_mut().flatten() {
            c.tokens.clear();
        }
        e
    }

    #[test]
    fn counts_calls_from_records_less_memo_hits() {
        let f = Fixture { dir: tempfile::tempdir().unwrap() };
        let plan = f.plan(0);
        let none = Force::default();
        // Nothing run yet: the source is read; record 3 makes no call.
        let e = f.estimate(&plan, &MemoLookup::Empty, &none);
        let b = e[1].as_ref().unwrap().tokens["b"];
        assert_eq!((b.calls, b.unknown, b.prompt, b.completion, b.unbounded), (8, 0, 2 * (1 + 2 + 4), 8, 4));
        assert!(b.estimated);
        let e = counts(e);
        assert_eq!(e[0], None, "a source that calls nothing");
        assert_eq!(e[1], exact(8, 0, 5, 2));
        assert_eq!(e[2], Some(CallEstimate::up_to(5, 1)), "keys unknown: a bound");
        assert_eq!(e[3], Some(CallEstimate::up_to(5, 2)), "its input: as many records as `ask` will output");
        assert_eq!(e[1].as_ref().unwrap().to_string(), "8");
        assert_eq!(e[2].as_ref().unwrap().to_string(), "up to 5");
        assert_eq!(e[3].as_ref().unwrap().to_string(), "up to 10");
        // The same requests again (`twin` asks what `ask` asks): the run
        // answers them from the memo, or shares the call in flight.
        assert_eq!(e[4], exact(0, 8, 5, 2), "sent once");
        let no_cache = Force { all: true, ..none.clone() };
        assert_eq!(counts(f.estimate(&plan, &MemoLookup::Empty, &no_cache))[4], exact(8, 0, 5, 2), "each time");

        let memo = CallMemo::open(&f.dir.path().join("memo.sqlite")).unwrap();
        memo.put_many(&[(key(0, 0, 0), b"a".to_vec()), (key(0, 4, 1), b"b".to_vec())]).unwrap();
        let e = f.estimate(&plan, &MemoLookup::Open(&memo), &none);
        let b = e[1].as_ref().unwrap().tokens["b"];
        assert_eq!((b.calls, b.prompt, b.completion, b.unbounded), (6, 2 * (1 + 2 + 4) - 4, 6, 3), "hits are free");
        let e = counts(e);
        assert_eq!(e[1], exact(6, 2, 5, 2));
        assert_eq!(e[1].as_ref().unwrap().to_string(), "6 (2 memoized)");
        // `--no-cache` reads no memoized answer.
        assert_eq!(
            counts(f.estimate(&plan, &MemoLookup::Open(&memo), &Force { all: true, ..none.clone() }))[1],
            exact(8, 0, 5, 2)
        );
        let unreadable = f.estimate(&plan, &MemoLookup::Unreadable, &none)[1].clone().unwrap();
        assert_eq!((unreadable.expected, unreadable.memo_hits, unreadable.at_most), (None, None, Some(8)));

        // Once run, cached nodes make no calls, and a changed node reads
        // its cached upstream's output.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let options = RunOptions { force: none.clone(), context: None };
        let (plan0, store) = (Arc::new(f.plan(0)), f.store());
        let assessed = crate::assess(&plan0, &store, &none).unwrap();
        let m = runtime.block_on(crate::run(plan0, store, assessed, options, tx, std::future::pending())).unwrap();
        assert_eq!(m.status, flow_cache::RunStatus::Succeeded, "{:?}", m.error);
        let e = f.estimate(&plan, &MemoLookup::Open(&memo), &none);
        assert_eq!(e[1], Some(CallEstimate { records: None, ..exact(0, 0, 0, 2).unwrap() }));
        let changed = f.plan(7);
        let e = counts(f.estimate(&changed, &MemoLookup::Open(&memo), &none));
        assert_eq!(e[1], exact(8, 0, 5, 2), "from the cached source's output");
        assert_eq!(e[3], Some(CallEstimate::up_to(5, 2)));
    }
}
