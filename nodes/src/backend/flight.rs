//! Single flight: identical calls in flight at once (two nodes embedding
//! the same texts, two judges grading the same answer) are made once. The
//! first of them (the leader) goes through the pipeline; the others wait
//! for its answer and take it as a memo hit. A leader that fails, or is
//! dropped before it answers, lets each of them make its own call, so a
//! follower is never worse off than without single flight.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::watch;

use flow_engine::cache::ContentHash;

/// What a leader hands its followers: the answer's body and latency, or
/// `None` when they should call for themselves.
type Landed = Option<Option<(Value, u64)>>;

/// The calls in flight, by memo key.
#[derive(Default)]
pub struct Flights {
    in_flight: Mutex<HashMap<ContentHash, watch::Receiver<Landed>>>,
}

/// A call's place in its flight.
pub enum Seat<'a> {
    /// Make the call, then [`Leader::land`] it.
    Leader(Leader<'a>),
    /// Wait for the leader ([`follow`]).
    Follower(watch::Receiver<Landed>),
}

/// The call that is made; its drop (answered or not) ends the flight.
pub struct Leader<'a> {
    flights: &'a Flights,
    key: ContentHash,
    tx: watch::Sender<Landed>,
}

impl Flights {
    /// Boards the call `key`: the leader when none like it is in flight.
    pub fn board(&self, key: ContentHash) -> Seat<'_> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(&key) {
            return Seat::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Seat::Leader(Leader { flights: self, key, tx })
    }
}

impl Leader<'_> {
    /// Hands the answer to the followers.
    pub fn land(self, body: &Value, latency_ms: u64) {
        let _ = self.tx.send(Some(Some((body.clone(), latency_ms))));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        self.flights.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
        // Not landed: followers call for themselves.
        self.tx.send_if_modified(|v| {
            if v.is_none() {
                *v = Some(None);
                true
            } else {
                false
            }
        });
    }
}

/// The leader's answer, or `None` when the follower should call itself.
pub async fn follow(mut rx: watch::Receiver<Landed>) -> Option<(Value, u64)> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().flatten(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn followers_take_the_leaders_answer_or_call_themselves() {
        let flights = Flights::default();
        let key = ContentHash::of(b"call");
        let Seat::Leader(leader) = flights.board(key) else { panic!("the first is the leader") };
        let Seat::Follower(rx) = flights.board(key) else { panic!("the second follows") };
        leader.land(&json!({"a": 1}), 7);
        assert_eq!(follow(rx).await, Some((json!({"a": 1}), 7)));
        // The flight is over: the next call leads its own.
        let Seat::Leader(failed) = flights.board(key) else { panic!("a new flight") };
        let Seat::Follower(rx) = flights.board(key) else { panic!("follows") };
        drop(failed);
        assert_eq!(follow(rx).await, None, "a leader that did not answer lets followers call");
    }
}
