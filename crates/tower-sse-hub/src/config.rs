//! [`HubConfig`] and [`Lag`]: the bounds of a [`Hub`](crate::Hub).

use std::time::Duration;

/// What happens to a subscriber that falls more than
/// [`HubConfig::queue_capacity`] events behind (or behind what the history still
/// holds) because it reads more slowly than events are published.
///
/// Either way the publisher and the other subscribers are never held up, and the
/// slow subscriber holds no events of its own: every subscriber reads the topic's
/// one shared history from its own cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lag {
    /// End the subscriber's stream (after the events it already took) with a
    /// final `: lagged` comment and a `retry:` hint of `retry`. The subscriber is
    /// removed from its topic at once. A browser then reconnects with
    /// `Last-Event-ID` and gets the events it missed from the history, which
    /// outlives subscribers for [`HubConfig::history_ttl`] (or a `reset` event if
    /// the history no longer has them). The default, with `retry` of one second.
    Disconnect {
        /// The reconnection delay sent to the client.
        retry: Duration,
    },
    /// Skip to the newest event: the subscriber gets a `gap` event (`event: gap`,
    /// `id:` the last skipped id, data `{"skipped":N}` where `N` counts the events
    /// skipped) and then live events. The stream goes on.
    Skip,
}

impl Default for Lag {
    fn default() -> Self {
        Self::Disconnect {
            retry: Duration::from_secs(1),
        }
    }
}

/// The bounds of a [`Hub`](crate::Hub): history per topic and how long it is
/// kept, hub-wide bounds, how far a subscriber may fall behind, and the [`Lag`]
/// policy.
///
/// # Example
///
/// ```
/// use tower_sse_hub::{HubConfig, Lag};
///
/// let config = HubConfig::new()
///     .history_len(500)
///     .history_bytes(256 * 1024)
///     .history_ttl(std::time::Duration::from_secs(60))
///     .queue_capacity(64)
///     .lag(Lag::Skip);
/// assert_eq!(config.get_queue_capacity(), 64);
/// let hub = tower_sse_hub::Hub::with_config(config);
/// # drop(hub);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    history_len: usize,
    history_bytes: usize,
    history_ttl: Duration,
    max_topics: usize,
    max_total_history_bytes: usize,
    queue_capacity: usize,
    max_replay_bytes: usize,
    idempotency_window: Duration,
    lag: Lag,
}

impl HubConfig {
    /// The default cap on one subscriber's replay: 1 MiB.
    pub const DEFAULT_MAX_REPLAY_BYTES: usize = 1024 * 1024;

    /// Per topic, a history of 1 024 events and at most 1 MiB, kept for 10
    /// minutes after the topic's last publish or its last subscriber leaving; hub-wide, at most 100 000 topics
    /// and 256 MiB of history; subscribers may fall 1 024 events behind, then
    /// [`Lag::Disconnect`] with a one-second retry; one subscriber's replay is
    /// at most 1 MiB.
    ///
    /// Why 10 minutes: a phone switching networks or a tunnel on a commute is
    /// back within seconds to a minute, a laptop closed for a short break within
    /// minutes; all of them resume exactly. Beyond that a client gets a `reset`
    /// and reloads its state, which is what a user back from a long sleep
    /// expects anyway. The hub-wide bounds keep memory bounded whatever the TTL.
    pub fn new() -> Self {
        Self {
            history_len: 1024,
            history_bytes: 1024 * 1024,
            history_ttl: Duration::from_secs(600),
            max_topics: 100_000,
            max_total_history_bytes: 256 * 1024 * 1024,
            queue_capacity: 1024,
            max_replay_bytes: Self::DEFAULT_MAX_REPLAY_BYTES,
            idempotency_window: Duration::from_secs(300),
            lag: Lag::default(),
        }
    }

    /// Keeps at most `len` events per topic (at least 1). The history is what
    /// reconnecting clients replay from and what live subscribers read from, so
    /// it is also the furthest a subscriber can fall behind.
    pub fn history_len(mut self, len: usize) -> Self {
        self.history_len = len.max(1);
        self
    }

    /// Keeps at most `bytes` of encoded events per topic, the newest event always
    /// (so a live subscriber still gets an event larger than this).
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.history_bytes = bytes;
        self
    }

    /// How long a topic's history is kept once it has no subscribers: after
    /// its last publish or after its last subscriber left, whichever is later
    /// (a client that drops off can come back within the TTL and resume). A
    /// topic with subscribers is never freed; one whose retention has expired
    /// is (and a cursor into it then gets a `reset`). Saturates:
    /// `Duration::MAX` keeps histories until the hub-wide bounds evict them.
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = ttl;
        self
    }

    /// At most this many topics (at least 1). Creating one more first frees the
    /// topics without subscribers idle longest (since their last publish or
    /// their last subscriber leaving). Topics with
    /// subscribers are never evicted: when every topic has subscribers, a
    /// publish or subscribe that would create a new topic fails with
    /// [`HubError::Full`](crate::HubError::Full) (for 100 ms after a scan found
    /// nothing to evict, without scanning again). Concurrent creators may
    /// exceed the bound by at most their number.
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.max_topics = topics.max(1);
        self
    }

    /// At most this many bytes of history across all topics. Beyond it, the
    /// topics without subscribers idle longest are freed first;
    /// if that is not enough, the oldest events of the topic being published to
    /// are dropped from its history.
    ///
    /// Each topic counts its history's bytes in the hub-wide total to within
    /// a sixteenth (so that publishes of different topics do not all write
    /// one shared count), and the hub acts from fifteen sixteenths of this
    /// bound: what the histories hold stays within it.
    pub fn max_total_history_bytes(mut self, bytes: usize) -> Self {
        self.max_total_history_bytes = bytes;
        self
    }

    /// How many events a subscriber may fall behind the newest one before the
    /// [`Lag`] policy applies (at least 1). A subscriber also lags when the
    /// history no longer holds the next event it would read.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Replays at most `bytes` of history to one subscriber (default 1 MiB). A
    /// client whose `Last-Event-ID` asks for more gets the `reset` notice (with
    /// the id after which what follows is complete) and the newest events that
    /// fit: a small request cannot make the server send the whole history back.
    /// `0` replays nothing: every resume past the newest event is a `reset`.
    pub fn max_replay_bytes(mut self, bytes: usize) -> Self {
        self.max_replay_bytes = bytes;
        self
    }

    /// How long an idempotency key of [`Hub::publish_once`](crate::Hub::publish_once)
    /// is remembered (default 5 minutes): a retry with the same key within it
    /// is answered with the first publish's id and stores nothing. In memory a
    /// topic also remembers at most its [`history_len`](Self::history_len)
    /// newest keys (at least 1 024).
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// How long an idempotency key is remembered.
    pub fn get_idempotency_window(&self) -> Duration {
        self.idempotency_window
    }

    /// The cap on one subscriber's replay, in bytes.
    pub fn get_max_replay_bytes(&self) -> usize {
        self.max_replay_bytes
    }

    /// What to do with a subscriber whose queue is full.
    pub fn lag(mut self, lag: Lag) -> Self {
        self.lag = lag;
        self
    }

    /// The history bound in events.
    pub fn get_history_len(&self) -> usize {
        self.history_len
    }

    /// The history bound in bytes.
    pub fn get_history_bytes(&self) -> usize {
        self.history_bytes
    }

    /// How long a history is kept once the topic has no subscribers (see
    /// [`history_ttl`](Self::history_ttl)).
    pub fn get_history_ttl(&self) -> Duration {
        self.history_ttl
    }

    /// The bound on topics.
    pub fn get_max_topics(&self) -> usize {
        self.max_topics
    }

    /// The bound on history bytes across topics.
    pub fn get_max_total_history_bytes(&self) -> usize {
        self.max_total_history_bytes
    }

    /// How far a subscriber may fall behind.
    pub fn get_queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// The lag policy.
    pub fn get_lag(&self) -> Lag {
        self.lag
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self::new()
    }
}
