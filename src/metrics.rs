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
//!
//! The hub's metrics are named in `tower_sse_hub::metrics`.

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
    /// `reason` is [`EndReason::label`](crate::EndReason::label).
    pub(crate) fn ended(self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!(STREAMS_OPEN).decrement(1.0);
            metrics::counter!(STREAMS_ENDED, "reason" => reason).increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }
}
