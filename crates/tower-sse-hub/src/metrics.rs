//! Every metric the hub records, named in one place.
//!
//! With the `metrics` feature, these are recorded through the
//! [`metrics`](https://docs.rs/metrics) facade; without it, the recording
//! functions are empty and cost nothing. No label carries a topic, so a hub
//! with a million topics still exports four series. The streams' own metrics
//! are named in [`tower_sse::metrics`].

/// Counter: events published to a [`Hub`](crate::Hub).
pub const HUB_PUBLISHED: &str = "sse_hub_published_total";
/// Counter: hub subscribers cut off (or made to skip) for falling behind.
pub const HUB_LAG_CUTOFFS: &str = "sse_hub_lag_cutoffs_total";
/// Counter: hub subscriptions that resumed from history after `Last-Event-ID`.
pub const HUB_REPLAYS: &str = "sse_hub_replays_total";
/// Counter: hub `reset` notices (the history no longer held the client's cursor).
pub const HUB_RESETS: &str = "sse_hub_resets_total";

/// An event was published to a hub.
pub(crate) fn published() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_PUBLISHED).increment(1);
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
