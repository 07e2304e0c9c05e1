//! Adaptive concurrency for one backend: how many calls may be in flight
//! at once, shared by every node that calls it.
//!
//! A fixed `max_concurrency` is either too low for a fast API or too high
//! for one that answers 429 past its own limit (a vLLM or TGI server, an
//! account's concurrency quota): every call beyond the limit is refused,
//! retried, refused again, until its retries are spent. So the cap adapts
//! as TCP's congestion window does (AIMD; inspect_ai's adaptive connections
//! do the same): it starts at `max_concurrency`, shrinks by a factor on
//! sustained 429s (multiplicative decrease) and grows back by one slot per
//! `cap` answers (additive increase), up to `max_concurrency`.
//!
//! Two guards keep it from shrinking for nothing:
//!
//! - **once per window**: a 429 shrinks the cap only if its call started
//!   under the current cap. The calls already in flight when the cap
//!   shrank were sent under the old one, and their 429s say nothing new.
//! - **a share, not one answer**: the cap shrinks only while 429s make more
//!   than [`PRESSURE`] of the recent answers (an exponential average over
//!   about [`MEMORY`] of them). A server that throttles a call here and
//!   there (2% of them, each with a `Retry-After`) is answered by waiting
//!   out each of those calls, not by slowing every other one: only a server
//!   that refuses a steady share of the calls sent is told to get fewer.
//!
//! 5xx answers, timeouts and refused connections leave the cap alone: they
//! are retried (see the backend), but fewer calls in flight would not make
//! them rarer.
//!
//! The slots are a tokio [`Semaphore`] (fair: calls get their slot in the
//! order they asked): growing adds a permit; shrinking forgets free ones
//! and, for the rest, leaves a debt that calls pay by forgetting their
//! permit on release instead of returning it.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// The cap is multiplied by this on a window of 429s (TCP CUBIC's 0.7:
/// gentler than halving, so the cap hovers closer to a server's limit).
const DECREASE: f64 = 0.7;

/// The share of recent answers that are 429s past which the cap shrinks.
pub const PRESSURE: f64 = 0.1;

/// How many answers the throttled share is averaged over, about.
pub const MEMORY: f64 = 50.0;

/// What an attempt came to, as far as the cap is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (with success, or a 4xx that is not 429).
    Answered,
    /// A 429: too many requests.
    Throttled,
    /// A 5xx, a timeout, a connection error: nothing about concurrency.
    Other,
}

/// The cap as it stands (see [`Slots::finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Calls allowed in flight now.
    pub now: u32,
    /// `max_concurrency`.
    pub max: u32,
}

/// The concurrency slots of one backend.
pub struct Slots {
    sem: Semaphore,
    max: usize,
    state: Mutex<State>,
}

struct State {
    /// The cap, fractional so that additive increase can add 1/cap per
    /// answer; `floor(cap)` permits circulate.
    cap: f64,
    /// Permits in circulation (free or held, less the debt): `floor(cap)`.
    permits: usize,
    /// Permits to forget as their calls release them.
    debt: usize,
    /// Bumped at each decrease: a call remembers the epoch it started in.
    epoch: u64,
    /// Exponential average of "this answer was a 429".
    pressure: f64,
}

/// One call's slot; released when dropped.
pub struct Slot<'a> {
    slots: &'a Slots,
    permit: Option<SemaphorePermit<'a>>,
    epoch: u64,
}

impl Slots {
    /// `max` slots (at least one), all open.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let state = State { cap: max as f64, permits: max, debt: 0, epoch: 0, pressure: 0.0 };
        Self { sem: Semaphore::new(max), max, state: Mutex::new(state) }
    }

    /// Waits for a free slot (in the order asked).
    pub async fn acquire(&self) -> Result<Slot<'_>, AcquireError> {
        let permit = self.sem.acquire().await?;
        let epoch = self.lock().epoch;
        Ok(Slot { slots: self, permit: Some(permit), epoch })
    }

    /// The cap now.
    #[cfg(test)]
    pub fn cap(&self) -> Cap {
        Cap { now: self.lock().permits as u32, max: self.max as u32 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain numbers that a panic cannot leave half changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `floor(cap)` permits in circulation.
    fn settle(&self, s: &mut State) {
        let target = (s.cap.floor() as usize).clamp(1, self.max);
        if target > s.permits {
            for _ in s.permits..target {
                if s.debt > 0 {
                    s.debt -= 1;
                } else {
                    self.sem.add_permits(1);
                }
            }
        } else if target < s.permits {
            let excess = s.permits - target;
            let forgotten = self.sem.forget_permits(excess);
            s.debt += excess - forgotten;
        }
        s.permits = target;
    }
}

impl Slot<'_> {
    /// Tells the cap how the attempt went; returns the cap after it.
    pub fn finish(&self, outcome: Outcome) -> Cap {
        let slots = self.slots;
        let mut s = slots.lock();
        let hit = if outcome == Outcome::Throttled { 1.0 } else { 0.0 };
        if outcome != Outcome::Other {
            s.pressure += (hit - s.pressure) / MEMORY;
        }
        match outcome {
            Outcome::Answered if s.cap < slots.max as f64 => {
                s.cap = (s.cap + 1.0 / s.cap).min(slots.max as f64);
                slots.settle(&mut s);
            }
            Outcome::Throttled if self.epoch == s.epoch && s.pressure > PRESSURE && s.cap > 1.0 => {
                s.cap = (s.cap * DECREASE).max(1.0);
                s.epoch += 1;
                slots.settle(&mut s);
            }
            _ => {}
        }
        Cap { now: s.permits as u32, max: slots.max as u32 }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let mut s = self.slots.lock();
        if s.debt > 0 {
            s.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays a server that refuses calls past `limit` in flight, with
    /// `width` calls finishing per round: returns the cap after each round.
    async fn against_limit(slots: &Slots, limit: usize, rounds: usize) -> Vec<u32> {
        let mut caps = Vec::new();
        for _ in 0..rounds {
            let cap = slots.cap().now as usize;
            let mut held = Vec::new();
            for _ in 0..cap {
                held.push(slots.acquire().await.unwrap());
            }
            for (i, slot) in held.iter().enumerate() {
                slot.finish(if i < limit { Outcome::Answered } else { Outcome::Throttled });
            }
            drop(held);
            caps.push(slots.cap().now);
        }
        caps
    }

    #[tokio::test]
    async fn the_cap_shrinks_to_a_servers_limit_and_hovers_there() {
        let slots = Slots::new(64);
        let caps = against_limit(&slots, 8, 200).await;
        assert!(caps[10] <= 9, "after 10 rounds the cap is still {}: {caps:?}", caps[10]);
        let settled = &caps[100..];
        let (low, high) = (*settled.iter().min().unwrap(), *settled.iter().max().unwrap());
        assert!(low >= 4 && high <= 10, "the cap swings {low}..={high} around a limit of 8: {caps:?}");
        assert_eq!(slots.sem.available_permits(), slots.cap().now as usize, "every permit back once all are released");
    }

    #[tokio::test]
    async fn a_429_now_and_then_leaves_the_cap_alone() {
        let slots = Slots::new(64);
        for i in 0..10_000 {
            let slot = slots.acquire().await.unwrap();
            slot.finish(if i % 50 == 49 { Outcome::Throttled } else { Outcome::Answered });
        }
        assert_eq!(slots.cap().now, 64);
    }

    #[tokio::test]
    async fn server_errors_leave_the_cap_alone_and_answers_grow_it_back() {
        let slots = Slots::new(16);
        // A burst of 429s from calls started under the full cap: one decrease.
        let held: Vec<_> = futures::future::join_all((0..16).map(|_| slots.acquire())).await;
        for s in held.iter().map(|s| s.as_ref().unwrap()) {
            s.finish(Outcome::Throttled);
        }
        drop(held);
        assert_eq!(slots.cap().now, 11, "16 × 0.7, once: the calls were all sent under the old cap");
        for _ in 0..100 {
            slots.acquire().await.unwrap().finish(Outcome::Other);
        }
        assert_eq!(slots.cap().now, 11);
        for _ in 0..200 {
            slots.acquire().await.unwrap().finish(Outcome::Answered);
        }
        assert_eq!(slots.cap().now, 16, "back to max_concurrency, not beyond");
        assert_eq!(slots.sem.available_permits(), 16);
    }

    /// Shrinking while every slot is held leaves a debt: the cap holds as
    /// the calls return their slots.
    #[tokio::test]
    async fn a_cap_shrunk_while_all_slots_are_held_holds_once_they_return() {
        let slots = Slots::new(10);
        let held: Vec<_> = futures::future::join_all((0..10).map(|_| slots.acquire())).await;
        let held: Vec<_> = held.into_iter().map(Result::unwrap).collect();
        {
            let mut s = slots.lock();
            s.pressure = 1.0;
        }
        held[0].finish(Outcome::Throttled);
        assert_eq!(slots.cap().now, 7);
        drop(held);
        assert_eq!(slots.sem.available_permits(), 7);
        let again: Vec<_> = (0..7).map(|_| slots.sem.try_acquire().unwrap()).collect();
        assert!(slots.sem.try_acquire().is_err(), "an eighth call got a slot");
        drop(again);
    }
}
