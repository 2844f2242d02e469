//! What an [`SseLayer`](super::SseLayer) applies to each stream, shared by the
//! services it makes.

use std::{
    fmt,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::HeaderValue;

use crate::{
    response::NO_CACHE,
    stream::end::EndReport,
    stream::heartbeat::KeepAlive,
    stream::permit::Permit,
    stream::shutdown::Shutdown,
    timer::{default_timer, Timer},
};

/// A callback of [`SseLayer::on_end`](crate::SseLayer::on_end): shared by
/// every stream of the layer, called once for each (so `Fn`, and `Sync`).
pub(crate) type LayerOnEnd = Arc<dyn Fn(EndReport) + Send + Sync>;

/// A layer's configuration: built by the `SseLayer` builder (by value, before
/// any service exists), then shared read-only in an `Arc` by every service
/// and response future of the layer. Only `live` changes afterwards; every
/// other field is immutable once shared, so none needs a lock.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) keep_alive: KeepAlive,
    pub(crate) cache_control: HeaderValue,
    /// Every callback added with `on_end`, run in order. `Fn + Sync`: the
    /// streams of the layer call them concurrently, each from its own task.
    pub(crate) on_end: Vec<LayerOnEnd>,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) limit: Option<Limit>,
    pub(crate) lifetime: Option<Lifetime>,
    pub(crate) timer: Option<Arc<dyn Timer>>,
    /// SSE streams open right now, shared by every unchanged clone of the
    /// layer (a clone that is configured gets a count of its own). Changed only
    /// through [`Permit`] (a compare-and-swap loop against the limit, and a
    /// decrement on drop; see there for the orderings); read with `Acquire` by
    /// `live_streams`, `Relaxed` by `Debug` (a snapshot either way).
    pub(crate) live: Arc<AtomicUsize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keep_alive: KeepAlive::new(),
            cache_control: NO_CACHE,
            on_end: Vec::new(),
            shutdown: None,
            limit: None,
            lifetime: None,
            timer: default_timer(),
            live: Arc::default(),
        }
    }
}

impl Config {
    /// Takes a slot for a new stream, unless the limit is reached.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let max = self.limit.as_ref().map_or(usize::MAX, |l| l.max);
        Permit::try_acquire(&self.live, max)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("keep_alive", &self.keep_alive)
            .field("cache_control", &self.cache_control)
            .field("on_end", &self.on_end.len())
            .field("shutdown", &self.shutdown)
            .field("limit", &self.limit)
            .field("lifetime", &self.lifetime)
            .field("timer", &self.timer)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish()
    }
}

/// The cap on concurrent streams.
#[derive(Clone, Debug)]
pub(crate) struct Limit {
    pub(crate) max: usize,
    /// The `retry-after` value of the `503`, in whole seconds.
    pub(crate) retry_after: HeaderValue,
}

impl Limit {
    pub(crate) fn new(max: usize, retry_after: Duration) -> Self {
        // Rounded up: `retry-after` counts whole seconds, and 0 would invite a storm.
        let secs = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
        Self {
            max,
            retry_after: HeaderValue::from(secs.max(1)),
        }
    }
}

/// The maximum lifetime of a stream, and the reconnection delay it asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetime {
    pub(crate) after: Duration,
    pub(crate) retry: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_count_and_release() {
        let config = Config {
            limit: Some(Limit::new(2, Duration::from_millis(1500))),
            ..Config::default()
        };
        assert_eq!(config.limit.as_ref().unwrap().retry_after, "2");
        let a = config.try_acquire().unwrap();
        let b = config.try_acquire().unwrap();
        assert!(config.try_acquire().is_none());
        assert_eq!(config.live.load(Ordering::Acquire), 2);
        drop(a);
        let c = config.try_acquire().unwrap();
        drop((b, c));
        assert_eq!(config.live.load(Ordering::Acquire), 0);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(Limit::new(1, Duration::ZERO).retry_after, "1");
        assert_eq!(Limit::new(1, Duration::from_secs(30)).retry_after, "30");
        // Used to overflow: `as_secs() + 1`.
        assert_eq!(
            Limit::new(1, Duration::MAX).retry_after,
            u64::MAX.to_string().as_str()
        );
    }
}
