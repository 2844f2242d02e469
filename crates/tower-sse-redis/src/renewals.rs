//! Which topics' keys this node renewed lately: [`Renewals`].
//!
//! Every publish call stored a topic's events and used to renew the expiry of
//! the topic's two keys (`PEXPIRE` twice). When a topic is busy, that renewed
//! the same keys thousands of times a second, for a TTL of minutes: two of the
//! five commands a topic costs each call, a tenth of Redis's work per publish
//! at 16 topics (`tools/redis_publish.sh`).
//!
//! Now a call renews a topic's keys only when this node has not renewed them
//! within the topic's renewal window ([`window`]: a sixteenth of the TTL, at
//! most one second), and renews them to the TTL **plus** that window. A key
//! then expires between one TTL and one TTL plus a window after the last
//! publish: never earlier than before. The window counts from before the call
//! that renewed was sent, and only a call that stored one of the topic's
//! events (so ran the renewal) counts. A topic the script creates (a new
//! topic, or one Redis lost: restarted empty, flushed, expired) is renewed
//! whatever the node asked. A call that fails (a lost connection, no answer
//! in time: Redis may have restarted, perhaps from an older snapshot whose
//! keys expire sooner) makes the node forget every renewal of that server, so
//! the next call renews each topic again; so does a lost Pub/Sub connection
//! (to a standalone server, or to any master of a cluster), because the
//! commands connection can come back without a call failing: it reconnects
//! by itself on RESP3, and a cluster's retries a call within its timeout.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::channels::lock;

/// The longest renewal window.
const MAX_WINDOW: Duration = Duration::from_secs(1);

/// How many topics are kept before the ones past their window are let go
/// (then twice what is left, so that the pruning costs O(1) per renewal).
const MIN_PRUNE_AT: usize = 1024;

/// The renewal window of a topic whose keys live `ttl_ms`, in ms: a
/// sixteenth of it, at most one second (0 for a TTL under 16 ms: every call
/// renews).
pub(super) fn window(ttl_ms: u64) -> u64 {
    (ttl_ms / 16).min(MAX_WINDOW.as_millis() as u64)
}

/// The topics (by stream key) whose keys this node renewed lately, and when
/// it decided to (see the module). Shared by every call to one server or
/// cluster.
#[derive(Debug)]
pub(super) struct Renewals {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    renewed: HashMap<String, Instant>,
    prune_at: usize,
}

impl Default for Renewals {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                renewed: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            }),
        }
    }
}

impl Renewals {
    /// Whether a call decided `now` must renew the keys of the topic whose
    /// stream is `stream` (within `window_ms` of the last renewal: no).
    pub(super) fn due(&self, stream: &str, window_ms: u64, now: Instant) -> bool {
        let state = lock(&self.state);
        match state.renewed.get(stream) {
            Some(&at) => now.saturating_duration_since(at) >= Duration::from_millis(window_ms),
            None => true,
        }
    }

    /// Records that a call decided `at` renewed the keys of `stream` (its
    /// script said so).
    pub(super) fn renewed(&self, stream: &str, at: Instant) {
        let mut state = lock(&self.state);
        match state.renewed.get_mut(stream) {
            Some(last) => *last = (*last).max(at),
            None => {
                if state.renewed.len() >= state.prune_at {
                    state
                        .renewed
                        .retain(|_, last| at.saturating_duration_since(*last) < MAX_WINDOW);
                    state.prune_at = (2 * state.renewed.len()).max(MIN_PRUNE_AT);
                }
                state.renewed.insert(stream.to_owned(), at);
            }
        }
    }

    /// Forgets every renewal: the next call renews each topic.
    pub(super) fn forget(&self) {
        lock(&self.state).renewed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_a_sixteenth_of_the_ttl_and_at_most_a_second() {
        assert_eq!(window(0), 0);
        assert_eq!(window(15), 0);
        assert_eq!(window(160), 10);
        assert_eq!(window(16_000), 1_000);
        assert_eq!(window(600_000), 1_000);
        assert_eq!(window(u64::MAX), 1_000);
    }

    #[test]
    fn a_topic_is_due_again_once_its_window_passed() {
        let renewals = Renewals::default();
        let start = Instant::now();
        assert!(renewals.due("a", 100, start));
        renewals.renewed("a", start);
        assert!(!renewals.due("a", 100, start));
        assert!(!renewals.due("a", 100, start + Duration::from_millis(99)));
        assert!(renewals.due("a", 100, start + Duration::from_millis(100)));
        assert!(renewals.due("b", 100, start), "another topic");
        // A window of 0 (a TTL under 16 ms): every call renews.
        assert!(renewals.due("a", 0, start));
        // A call decided earlier answering later does not move it back.
        renewals.renewed("a", start + Duration::from_millis(50));
        renewals.renewed("a", start);
        assert!(!renewals.due("a", 100, start + Duration::from_millis(149)));
        assert!(renewals.due("a", 100, start + Duration::from_millis(150)));
        // A failed call: everything is due again.
        renewals.forget();
        assert!(renewals.due("a", 100, start + Duration::from_millis(60)));
    }

    #[test]
    fn topics_past_their_window_are_let_go_as_the_map_grows() {
        let renewals = Renewals::default();
        let start = Instant::now();
        for i in 0..MIN_PRUNE_AT {
            renewals.renewed(&format!("old-{i}"), start);
        }
        let later = start + MAX_WINDOW;
        for i in 0..10 {
            renewals.renewed(&format!("new-{i}"), later);
        }
        let state = lock(&renewals.state);
        assert_eq!(state.renewed.len(), 10, "the old ones were let go");
        assert_eq!(state.prune_at, MIN_PRUNE_AT);
        drop(state);
        // Within the window, none is let go: the map grows, pruning less often.
        let renewals = Renewals::default();
        for i in 0..3 * MIN_PRUNE_AT {
            renewals.renewed(&format!("t-{i}"), start);
        }
        let state = lock(&renewals.state);
        assert_eq!(state.renewed.len(), 3 * MIN_PRUNE_AT);
        assert_eq!(state.prune_at, 4 * MIN_PRUNE_AT);
    }
}
