//! A tracing span per stream and an event for its end (the `tracing` feature);
//! without the feature, nothing.
//!
//! The span is `sse_stream` (target `tower_sse`) with `method`, `path`, `route`
//! and `request_id` fields when known; the end is an `INFO` event in it with
//! `reason`, `events`, `heartbeats`, `bytes` and `duration_ms`.

use super::end::EndReport;
use crate::request_info::RequestInfo;

#[derive(Debug)]
pub(crate) struct StreamSpan {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl StreamSpan {
    pub(crate) fn open(request: Option<&RequestInfo>) -> Self {
        #[cfg(feature = "tracing")]
        {
            let span = match request {
                Some(r) => tracing::info_span!(
                    target: "tower_sse",
                    "sse_stream",
                    method = %r.method,
                    path = %r.path,
                    route = r.route.as_deref(),
                    request_id = r.request_id.as_ref().and_then(|v| v.to_str().ok()),
                ),
                None => tracing::info_span!(target: "tower_sse", "sse_stream"),
            };
            tracing::debug!(target: "tower_sse", parent: &span, "sse stream opened");
            Self { span }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = request;
            Self {}
        }
    }

    pub(crate) fn ended(self, report: &EndReport) {
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: "tower_sse",
            parent: &self.span,
            reason = %report.reason,
            events = report.events,
            heartbeats = report.heartbeats,
            bytes = report.bytes,
            duration_ms = report.duration.as_millis() as u64,
            "sse stream ended"
        );
        #[cfg(not(feature = "tracing"))]
        let _ = report;
    }
}
