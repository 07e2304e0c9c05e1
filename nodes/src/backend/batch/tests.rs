//! The batcher in process, on `sim`: one batch for a node's calls, and a
//! resume through the memo.

use std::collections::BTreeMap;

use flow_engine::cache::CallMemo;
use flow_engine::Meter;

use super::super::{Backends, Message};
use super::*;

fn backends(path: &std::path::Path) -> Backends {
    let spec: BackendSpec = serde_yaml::from_str("{provider: sim, batch: {poll: 20ms}}").unwrap();
    let specs = BTreeMap::from([("bot".to_string(), spec)]);
    let memo = CallMemo::open(path).unwrap();
    Backends::new(&specs, &BTreeMap::new(), &["bot".into()], Some(memo), &[], &|_| None).unwrap()
}

async fn ask_all(b: &Backend, meter: &Meter, n: usize) -> Vec<Result<String, CallError>> {
    let opts = CallOpts { meter, memo_reads: true, sample: 0 };
    let calls = (0..n).map(|i| {
        let m = vec![Message { role: "user".into(), content: format!("what is {i} + 1?") }];
        async move { b.chat(&m, false, opts).await.map(|a| a.text) }
    });
    let out = futures::future::join_all(calls);
    b.flush_batch();
    out.await
}

/// Calls made together go as one batch, answered and memoized; a new
/// run answers them from the memo, and a batch an earlier run left
/// pending is collected (here: gone, as sim batches are) before its
/// keys are submitted again.
#[tokio::test]
async fn calls_go_as_one_batch_and_resume_through_the_memo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memo.sqlite");
    let all = backends(&path);
    let b = all.get("bot").unwrap();
    let meter = Meter::default();
    let answers = ask_all(&b, &meter, 30).await;
    assert!(answers.iter().all(|a| a.is_ok()), "{answers:?}");
    assert_eq!(answers[4].as_deref().unwrap(), "5");
    let seen = b.batches_seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].requests, seen[0].state.as_str()), (30, "completed"));
    drop(b);
    all.close().unwrap();
    drop(all);
    let memo = CallMemo::open(&path).unwrap();
    assert_eq!(memo.len().unwrap(), 30);
    assert!(memo.pending_batches(None).unwrap().is_empty());
    assert_eq!(memo.all_batches(None).unwrap().len(), 1);

    // A batch left pending for three of the keys, and five new keys.
    let spec: BackendSpec = serde_yaml::from_str("{provider: sim, batch: {poll: 20ms}}").unwrap();
    let held: Vec<ContentHash> = (30..33)
        .map(|i| {
            let m = vec![Message { role: "user".into(), content: format!("what is {i} + 1?") }];
            super::super::memo_key(
                &spec,
                super::super::Endpoint::Chat,
                &super::super::chat_body(&spec, &m, false, 0),
                0,
            )
        })
        .collect();
    memo.record_batch(&BatchRecord {
        id: "batch_sim_gone".into(),
        provider: "sim".into(),
        backend: flow_engine::cache::hash_json(&spec.identity()).hex(),
        created_at: flow_engine::cache::now_rfc3339(),
        state: "in_progress".into(),
        done: false,
        info: "{}".into(),
        keys: held,
    })
    .unwrap();
    drop(memo);
    let all = backends(&path);
    let b = all.get("bot").unwrap();
    let meter = Meter::default();
    let answers = ask_all(&b, &meter, 35).await;
    let failed: Vec<_> = answers.iter().enumerate().filter(|(_, a)| a.is_err()).map(|(i, _)| i).collect();
    assert_eq!(failed, vec![30, 31, 32], "the pending batch's keys wait on it: {answers:?}");
    assert!(answers[30].as_ref().unwrap_err().retryable);
    let counts = meter.snapshot().unwrap();
    assert_eq!((counts.memo_hits, counts.requests, counts.retryable_errors), (30, 2, 3), "{counts:?}");
    // The next run submits exactly those three.
    drop(b);
    all.close().unwrap();
    drop(all);
    let all = backends(&path);
    let b = all.get("bot").unwrap();
    let meter = Meter::default();
    assert!(ask_all(&b, &meter, 35).await.iter().all(|a| a.is_ok()));
    assert_eq!(b.batches_seen().iter().map(|s| s.requests).sum::<usize>(), 3, "{:?}", b.batches_seen());
    assert_eq!(meter.snapshot().unwrap().memo_hits, 32);
}
