//! Every metric the hub records, named in one place.
//!
//! With the `metrics` feature, these are recorded through the
//! [`metrics`](https://docs.rs/metrics) facade; without it, the recording
//! functions are empty and cost nothing. No label carries a topic, so a hub
//! with a million topics still exports four series. The streams' own metrics
//! are named in [`tower_sse::metrics`].
//!
//! A hub looks up its [`HUB_PUBLISHED`] counter once, when it is made, so
//! that a publish costs one atomic add: install the metrics recorder before
//! making the hub (as the streams' counters are looked up when each stream
//! opens).

/// Counter: events published to a [`Hub`](crate::Hub).
pub const HUB_PUBLISHED: &str = "sse_hub_published_total";
/// Counter: hub subscribers cut off (or made to skip) for falling behind.
pub const HUB_LAG_CUTOFFS: &str = "sse_hub_lag_cutoffs_total";
/// Counter: hub subscriptions that resumed from history after `Last-Event-ID`.
pub const HUB_REPLAYS: &str = "sse_hub_replays_total";
/// Counter: hub `reset` notices (the history no longer held the client's cursor).
pub const HUB_RESETS: &str = "sse_hub_resets_total";

/// [`HUB_PUBLISHED`], looked up once, when a store is made (as a stream
/// looks up its counters when it opens): a publish then costs the counter's
/// add, where `metrics::counter!` would make the key, hash it and look it up
/// in the recorder's registry (a shared lock and reference count) on every
/// publish. The recorder must be installed before the hub is made.
pub(crate) struct Published {
    #[cfg(feature = "metrics")]
    counter: metrics::Counter,
}

impl Published {
    /// The counter of the recorder installed now (a no-op without one).
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(feature = "metrics")]
            counter: metrics::counter!(HUB_PUBLISHED),
        }
    }

    /// An event was published to the hub.
    #[inline]
    pub(crate) fn count(&self) {
        #[cfg(feature = "metrics")]
        self.counter.increment(1);
    }
}

/// A hub subscriber fell too far behind and was cut off or skipped ahead.
pub(crate) fn lag_cutoff() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_LAG_CUTOFFS).increment(1);
}

/// A hub subscription resumed from history.
pub(crate) fn replay() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_REPLAYS).increment(1);
}

/// A hub subscriber was sent a `reset` notice.
pub(crate) fn reset() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_RESETS).increment(1);
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::{
        collections::HashMap,
        sync::{
            atomic::{AtomicU64, Ordering},
            Arc, Mutex,
        },
    };

    use futures_util::FutureExt;
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use tower_sse::Event;

    use super::HUB_PUBLISHED;
    use crate::Hub;

    /// Counters by name, and how many times each was looked up.
    #[derive(Default)]
    struct Counted {
        counters: Mutex<HashMap<String, (Arc<AtomicU64>, u64)>>,
    }

    impl Counted {
        /// The counter's value and how many times it was looked up.
        fn get(&self, name: &str) -> (u64, u64) {
            let counters = self.counters.lock().unwrap();
            counters
                .get(name)
                .map_or((0, 0), |(c, lookups)| (c.load(Ordering::SeqCst), *lookups))
        }
    }

    impl Recorder for Counted {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut counters = self.counters.lock().unwrap();
            let (counter, lookups) = counters.entry(key.name().to_owned()).or_default();
            *lookups += 1;
            Counter::from_arc(counter.clone())
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn a_hub_counts_every_publish_with_the_counter_it_looked_up_when_made() {
        let recorded = Counted::default();
        let hub = metrics::with_local_recorder(&recorded, Hub::new);
        let elsewhere = Hub::new();
        let mut publisher = hub.publisher("b");
        for n in 0..100 {
            let event = || Event::message(n.to_string());
            hub.publish("a", event()).now_or_never().unwrap().unwrap();
            publisher.publish(event()).now_or_never().unwrap().unwrap();
            let with = hub.publish_with("c", |_| event());
            with.now_or_never().unwrap().unwrap();
        }
        // Every publish counted, by one look-up when the hub was made, also
        // after the recorder's scope ended.
        assert_eq!(recorded.get(HUB_PUBLISHED), (300, 1));
        // A hub made where that recorder was not installed counts nothing in it.
        let _ = elsewhere.publish("a", Event::message("x")).now_or_never();
        assert_eq!(recorded.get(HUB_PUBLISHED), (300, 1));
    }
}
