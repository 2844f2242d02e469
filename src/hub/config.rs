//! [`HubConfig`] and [`Lag`]: the bounds of a [`Hub`](crate::Hub).

use std::time::Duration;

/// What happens to a subscriber whose queue is full because it reads more slowly
/// than events are published.
///
/// Either way the publisher and the other subscribers are never held up, and the
/// slow subscriber's memory stays bounded by its queue capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lag {
    /// End the subscriber's stream after the events already queued, with a final
    /// `: lagged` comment and a `retry:` hint of `retry`. The subscriber is removed
    /// from its topic at once. A browser then reconnects with `Last-Event-ID` and
    /// gets the events it missed from the history (or a `reset` event if the
    /// history no longer has them). The default, with `retry` of one second.
    Disconnect {
        /// The reconnection delay sent to the client.
        retry: Duration,
    },
    /// Drop the events that do not fit, and once the subscriber has room again,
    /// send a `gap` event: `event: gap`, `id:` the last skipped id, and data
    /// `{"skipped":N}` where `N` counts the events dropped. The stream goes on.
    Skip,
}

impl Default for Lag {
    fn default() -> Self {
        Self::Disconnect {
            retry: Duration::from_secs(1),
        }
    }
}

/// The bounds of a [`Hub`](crate::Hub): history per topic, queue per subscriber,
/// and the [`Lag`] policy.
///
/// # Example
///
/// ```
/// use tower_sse::{HubConfig, Lag};
///
/// let config = HubConfig::new()
///     .history_len(500)
///     .history_bytes(256 * 1024)
///     .queue_capacity(64)
///     .lag(Lag::Skip);
/// assert_eq!(config.get_queue_capacity(), 64);
/// let hub = tower_sse::Hub::with_config(config);
/// # drop(hub);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    history_len: usize,
    history_bytes: usize,
    queue_capacity: usize,
    lag: Lag,
}

impl HubConfig {
    /// History of 1 024 events and at most 1 MiB per topic, queues of 256 events,
    /// and [`Lag::Disconnect`] with a one-second retry.
    pub fn new() -> Self {
        Self {
            history_len: 1024,
            history_bytes: 1024 * 1024,
            queue_capacity: 256,
            lag: Lag::default(),
        }
    }

    /// Keeps at most `len` events per topic for replay; `0` turns replay off (every
    /// reconnection with a `Last-Event-ID` older than the last event gets a reset).
    pub fn history_len(mut self, len: usize) -> Self {
        self.history_len = len;
        self
    }

    /// Keeps at most `bytes` of encoded events per topic for replay. An event larger
    /// than this is delivered live but not kept.
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.history_bytes = bytes;
        self
    }

    /// How many live events may wait for one subscriber before the [`Lag`] policy
    /// applies (at least 1). Events replayed on subscription do not count.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
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

    /// The queue capacity per subscriber.
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
