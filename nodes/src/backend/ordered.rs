//! Calls that complete in any order, results that come out in input order.
//!
//! `.buffered(n)` keeps order by holding at most `n` calls, finished or
//! not: once the oldest waits out a backoff (a 429 with `Retry-After: 20`),
//! the `n - 1` behind it finish and then nothing new starts until the
//! oldest is back, so one throttled call stops its whole node. Here a call
//! that finished leaves the set of calls under way at once, and its result
//! waits in a reorder buffer for the ones before it. What bounds the buffer
//! is memory, not a count: new calls keep starting while the inputs of the
//! calls under way plus the results waiting for an earlier one weigh less
//! than [`Window::bytes`]; the backend's slots, not the buffer, bound how
//! many are sent at once. Calls waiting out a backoff hold no slot, so they
//! do not count against [`Window::calls`] either (only their bytes do).
//!
//! When the buffer is full nothing new starts until the oldest call is in:
//! memory stays bounded whatever a server does.

use std::collections::VecDeque;
use std::future::Future;
use std::task::Poll;

use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde_json::Value;

/// How much an [`ordered`] stream may have under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Calls started and not waiting out a backoff: enough to keep the
    /// backend's slots busy (twice its `max_concurrency`, so a slot freed
    /// is taken at once by a call that already waits for one).
    pub calls: usize,
    /// Bytes held: the inputs of the calls under way and the results that
    /// wait for an earlier one.
    pub bytes: usize,
}

/// Runs `start(job)` for each job, at most `window` under way, and yields
/// the results in the jobs' order. `waiting()` counts the calls that wait
/// out a backoff now; `weigh_job` and `weigh_out` estimate the bytes a job
/// and a result hold. An `Err` is yielded as soon as it comes, out of turn,
/// and ends the stream: the node failed, what is still under way is dropped.
pub fn ordered<J, R, E, Fut>(
    jobs: BoxStream<'static, J>,
    window: Window,
    waiting: impl Fn() -> usize + Send + 'static,
    mut start: impl FnMut(J) -> Fut + Send + 'static,
    weigh_job: impl Fn(&J) -> usize + Send + 'static,
    weigh_out: impl Fn(&R) -> usize + Send + 'static,
) -> BoxStream<'static, Result<R, E>>
where
    J: Send + 'static,
    R: Send + 'static,
    E: Send + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
{
    // A call under way holds its future besides its input.
    let per_call = std::mem::size_of::<Fut>();
    let mut jobs = jobs.fuse();
    let mut jobs_done = false;
    let mut ended = false;
    let mut running = FuturesUnordered::new();
    // `done[i]` is the result of job `next + i`, once in.
    let mut done: VecDeque<Option<(R, usize)>> = VecDeque::new();
    let (mut next, mut seq) = (0u64, 0u64);
    let mut held = 0usize;
    futures::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        loop {
            if let Some(Some(_)) = done.front() {
                let (r, w) = done.pop_front().flatten().expect("checked");
                next += 1;
                held -= w;
                return Poll::Ready(Some(Ok(r)));
            }
            let room = |running: &FuturesUnordered<_>, held: usize| {
                running.len().saturating_sub(waiting()) < window.calls.max(1)
                    && (held < window.bytes || running.is_empty())
            };
            let mut jobs_pending = false;
            while !jobs_done && room(&running, held) {
                match jobs.poll_next_unpin(cx) {
                    Poll::Ready(Some(job)) => {
                        let w = per_call + weigh_job(&job);
                        held += w;
                        let n = seq;
                        seq += 1;
                        running.push(start(job).map(move |out| (n, w, out)));
                    }
                    Poll::Ready(None) => jobs_done = true,
                    Poll::Pending => {
                        jobs_pending = true;
                        break;
                    }
                }
            }
            match running.poll_next_unpin(cx) {
                Poll::Ready(Some((n, w, out))) => {
                    held -= w;
                    match out {
                        Ok(r) => {
                            let w = weigh_out(&r);
                            held += w;
                            let at = (n - next) as usize;
                            if done.len() <= at {
                                done.resize_with(at + 1, || None);
                            }
                            done[at] = Some((r, w));
                        }
                        Err(e) => {
                            ended = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(None) if jobs_done => return Poll::Ready(None),
                // Nothing under way: the jobs' stream wakes us.
                Poll::Ready(None) => return Poll::Pending,
                // Calls that began to wait out a backoff just now leave
                // room for more, which the jobs' stream may have at once.
                Poll::Pending if !jobs_done && !jobs_pending && room(&running, held) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .boxed()
}

/// About how many bytes a JSON value holds in memory: its strings, and a
/// node per value, entry and element. An estimate for [`Window::bytes`],
/// cheap enough to take for every record.
pub fn json_bytes(v: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    NODE + match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(json_bytes).sum(),
        // A B-tree entry: the key's string and its share of a node.
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + 24 + json_bytes(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn window(calls: usize, bytes: usize) -> Window {
        Window { calls, bytes }
    }

    /// Job 0 takes long; the others finish at once. They all start before
    /// job 0 finishes, and the results still come in order.
    #[tokio::test(start_paused = true)]
    async fn a_slow_call_does_not_hold_back_the_calls_behind_it() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let finished_before_slow = Arc::new(AtomicUsize::new(0));
        let (s, f) = (started.clone(), finished_before_slow.clone());
        let slow_done = Arc::new(AtomicUsize::new(0));
        let sd = slow_done.clone();
        let out: Vec<Result<u32, ()>> = ordered(
            futures::stream::iter(0..100u32).boxed(),
            window(4, 1 << 20),
            || 0,
            move |i| {
                s.lock().unwrap().push(i);
                let (f, sd) = (f.clone(), sd.clone());
                async move {
                    if i == 0 {
                        tokio::time::sleep(Duration::from_secs(20)).await;
                        sd.store(1, Ordering::SeqCst);
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if sd.load(Ordering::SeqCst) == 0 {
                            f.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(i)
                }
            },
            |_| 8,
            |_| 8,
        )
        .collect()
        .await;
        assert_eq!(out, (0..100).map(Ok).collect::<Vec<_>>());
        assert_eq!(finished_before_slow.load(Ordering::SeqCst), 99, "every other call finished during the slow one");
    }

    /// With no bytes to spare past the slow call's, nothing else starts
    /// until it is in: the buffer's bound holds.
    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_waits_for_the_oldest_call() {
        let peak = Arc::new(AtomicUsize::new(0));
        let under_way = Arc::new(AtomicUsize::new(0));
        let (p, u) = (peak.clone(), under_way.clone());
        let per_call = 1000;
        let out: Vec<Result<u32, ()>> = ordered(
            futures::stream::iter(0..50u32).boxed(),
            window(64, 5 * per_call),
            || 0,
            move |i| {
                let (p, u) = (p.clone(), u.clone());
                async move {
                    let now = u.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(if i % 10 == 0 { 500 } else { 1 })).await;
                    u.fetch_sub(1, Ordering::SeqCst);
                    Ok(i)
                }
            },
            move |_| per_call,
            move |_| per_call,
        )
        .collect()
        .await;
        assert_eq!(out, (0..50).map(Ok).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 5, "{peak} calls under way with room for 5 records");
    }

    /// Calls that wait out a backoff do not count against the call window.
    #[tokio::test(start_paused = true)]
    async fn calls_waiting_out_a_backoff_leave_room_for_others() {
        let waiting = Arc::new(AtomicUsize::new(0));
        let w = waiting.clone();
        let finished_early = Arc::new(AtomicUsize::new(0));
        let fe = finished_early.clone();
        let out: Vec<Result<u32, ()>> = ordered(
            futures::stream::iter(0..40u32).boxed(),
            window(4, 1 << 20),
            move || w.load(Ordering::SeqCst),
            move |i| {
                let (w, fe) = (waiting.clone(), fe.clone());
                async move {
                    if i < 4 {
                        w.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        w.fetch_sub(1, Ordering::SeqCst);
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        if w.load(Ordering::SeqCst) == 4 {
                            fe.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(i)
                }
            },
            |_| 8,
            |_| 8,
        )
        .collect()
        .await;
        assert_eq!(out, (0..40).map(Ok).collect::<Vec<_>>());
        assert_eq!(finished_early.load(Ordering::SeqCst), 36, "the calls behind four backing off ran meanwhile");
    }

    #[tokio::test]
    async fn an_error_comes_at_once_and_ends_the_stream() {
        let out: Vec<Result<u32, String>> = ordered(
            futures::stream::iter(0..10u32).boxed(),
            window(4, 1 << 20),
            || 0,
            |i| async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                if i == 2 {
                    Err("node failed".to_string())
                } else {
                    Ok(i)
                }
            },
            |_| 8,
            |_| 8,
        )
        .collect()
        .await;
        assert_eq!(out, vec![Err("node failed".to_string())]);
    }

    #[test]
    fn json_bytes_grows_with_content() {
        let small = serde_json::json!({"id": "c1"});
        let big = serde_json::json!({"id": "c1", "text": "x".repeat(10_000)});
        assert!(json_bytes(&small) < 200);
        assert!(json_bytes(&big) > 10_000 && json_bytes(&big) < 10_300);
    }
}
