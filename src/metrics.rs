//! Every metric the crate records, named in one place.
//!
//! With the `metrics` feature, these are recorded through the
//! [`metrics`](https://docs.rs/metrics) facade, so any exporter (Prometheus,
//! StatsD, ...) installed by the application receives them; without it, the
//! recording functions are empty and cost nothing.
//!
//! Names are low-cardinality on purpose: no topic, user, path or client in a
//! label, so a server with a million streams still exports a handful of series.
//! The only label is `reason` on [`STREAMS_ENDED`], one of `client_gone`,
//! `completed`, `failed`, `shutdown`, `lifetime`, `stalled`.
//!
//! A stream that goes through both an [`SseLayer`](crate::SseLayer) and an
//! [`SseBody`](crate::SseBody) is counted once, by the layer (which sees every
//! byte, the body's heartbeats included).

use crate::EndReason;

/// Gauge: streams open right now.
pub const STREAMS_OPEN: &str = "sse_streams_open";
/// Counter: streams ended, labelled by `reason`.
pub const STREAMS_ENDED: &str = "sse_streams_ended_total";
/// Counter: events written to streams (heartbeats and the first frame not counted).
pub const EVENTS_SENT: &str = "sse_events_sent_total";
/// Counter: bytes written to streams, heartbeats included.
pub const BYTES_SENT: &str = "sse_bytes_sent_total";
/// Counter: heartbeats written to streams.
pub const HEARTBEATS_SENT: &str = "sse_heartbeats_sent_total";
/// Counter: events published to a [`Hub`](crate::Hub).
pub const HUB_PUBLISHED: &str = "sse_hub_published_total";
/// Counter: hub subscribers cut off (or made to skip) for falling behind.
pub const HUB_LAG_CUTOFFS: &str = "sse_hub_lag_cutoffs_total";
/// Counter: hub subscriptions that resumed from history after `Last-Event-ID`.
pub const HUB_REPLAYS: &str = "sse_hub_replays_total";
/// Counter: hub `reset` notices (the history no longer held the client's cursor).
pub const HUB_RESETS: &str = "sse_hub_resets_total";

/// The `reason` label of [`STREAMS_ENDED`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn reason_label(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::ClientGone => "client_gone",
        EndReason::Completed => "completed",
        EndReason::Failed(_) => "failed",
        EndReason::Shutdown => "shutdown",
        EndReason::Lifetime => "lifetime",
        EndReason::Stalled => "stalled",
    }
}

/// One stream's counters, looked up once when it opens so that each frame costs
/// an atomic add, not a registry lookup.
#[derive(Debug)]
pub(crate) struct StreamMetrics {
    #[cfg(feature = "metrics")]
    events: metrics::Counter,
    #[cfg(feature = "metrics")]
    bytes: metrics::Counter,
    #[cfg(feature = "metrics")]
    heartbeats: metrics::Counter,
}

impl StreamMetrics {
    /// A stream opened: counted in [`STREAMS_OPEN`].
    pub(crate) fn open() -> Self {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!(STREAMS_OPEN).increment(1.0);
            Self {
                events: metrics::counter!(EVENTS_SENT),
                bytes: metrics::counter!(BYTES_SENT),
                heartbeats: metrics::counter!(HEARTBEATS_SENT),
            }
        }
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    pub(crate) fn sent(&self, events: u64, bytes: u64) {
        #[cfg(feature = "metrics")]
        {
            if events > 0 {
                self.events.increment(events);
            }
            self.bytes.increment(bytes);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (events, bytes);
    }

    pub(crate) fn heartbeat(&self, bytes: u64) {
        #[cfg(feature = "metrics")]
        {
            self.heartbeats.increment(1);
            self.bytes.increment(bytes);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = bytes;
    }

    /// The stream ended: leaves [`STREAMS_OPEN`], counted in [`STREAMS_ENDED`].
    pub(crate) fn ended(self, reason: &EndReason) {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!(STREAMS_OPEN).decrement(1.0);
            metrics::counter!(STREAMS_ENDED, "reason" => reason_label(reason)).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }
}

/// An event was published to a hub.
pub(crate) fn hub_published() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_PUBLISHED).increment(1);
}

/// A hub subscriber fell too far behind and was cut off or skipped ahead.
pub(crate) fn hub_lag_cutoff() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_LAG_CUTOFFS).increment(1);
}

/// A hub subscription resumed from history.
pub(crate) fn hub_replay() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_REPLAYS).increment(1);
}

/// A hub subscriber was sent a `reset` notice.
pub(crate) fn hub_reset() {
    #[cfg(feature = "metrics")]
    metrics::counter!(HUB_RESETS).increment(1);
}
