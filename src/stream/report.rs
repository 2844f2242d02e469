//! [`Reporter`]: what a stream has sent, and its end reported exactly once.

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Instant,
};

use crate::{
    metrics::StreamMetrics, request_info::RequestInfo, stream::end::EndHandle,
    stream::end::EndReport, stream::end::Outcome, stream::link::Link, stream::trace::StreamSpan,
};

/// One stream's end callbacks (every `SseBody::on_end`, and the layer's hooks
/// for this stream), chained into one, run once with its report.
pub(crate) type StreamOnEnd = Box<dyn FnOnce(EndReport) + Send>;

/// One stream's reporter: counts what the stream sends and reports its end
/// exactly once, on drop at the latest (as [`EndReason::ClientGone`] if nothing else was recorded).
pub(crate) struct Reporter {
    // Made when first asked for: most streams never are, and it is a heap block.
    handle: OnceLock<EndHandle>,
    // In a `Mutex` only so that bodies are `Sync` (as `BoxBody` asks): it is only
    // ever reached through `&mut self`, with `get_mut`, which never locks.
    on_end: Mutex<Option<StreamOnEnd>>,
    started: Instant,
    events: u64,
    heartbeats: u64,
    bytes: u64,
    finished: bool,
    /// Shared with the layer or the body on the other side of it, if any.
    link: Option<Arc<Link>>,
    request: Option<Arc<RequestInfo>>,
    /// Metrics and span, for the one reporter of a stream that observes it.
    observer: Option<Box<(StreamMetrics, StreamSpan)>>,
}

impl Reporter {
    pub(crate) fn new(handle: EndHandle) -> Self {
        let mut reporter = Self::without_handle();
        reporter.set_handle(handle);
        reporter
    }

    /// A reporter whose handle is made only if [`handle`](Self::handle) is called.
    pub(crate) fn without_handle() -> Self {
        Self {
            handle: OnceLock::new(),
            on_end: Mutex::new(None),
            started: Instant::now(),
            events: 0,
            heartbeats: 0,
            bytes: 0,
            finished: false,
            link: None,
            request: None,
            observer: None,
        }
    }

    pub(crate) fn set_link(&mut self, link: Arc<Link>) {
        self.link = Some(link);
    }

    pub(crate) fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    pub(crate) fn set_request(&mut self, request: Arc<RequestInfo>) {
        self.request = Some(request);
    }

    /// Starts the stream's metrics and span; only the first call has an effect.
    pub(crate) fn observe(&mut self) {
        if self.observer.is_none() && !self.finished {
            let span = StreamSpan::open(self.request.as_deref());
            self.observer = Some(Box::new((StreamMetrics::open(), span)));
        }
    }

    pub(crate) fn handle(&self) -> &EndHandle {
        self.handle.get_or_init(EndHandle::new)
    }

    pub(crate) fn set_handle(&mut self, handle: EndHandle) {
        self.handle = OnceLock::from(handle);
    }

    /// Adds a callback; several callbacks all run, in the order they were added.
    pub(crate) fn on_end(&mut self, f: impl FnOnce(EndReport) + Send + 'static) {
        let slot = self
            .on_end
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(match slot.take() {
            None => Box::new(f),
            Some(prev) => Box::new(move |report: EndReport| {
                prev(report.clone());
                f(report);
            }),
        });
    }

    pub(crate) fn sent(&mut self, events: u64, bytes: usize) {
        self.events += events;
        self.bytes += bytes as u64;
        if let Some(observer) = &self.observer {
            observer.0.sent(events, bytes as u64);
        }
    }

    pub(crate) fn heartbeat(&mut self, bytes: usize) {
        self.heartbeats += 1;
        self.bytes += bytes as u64;
        if let Some(observer) = &self.observer {
            observer.0.heartbeat(bytes as u64);
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Reports the end, with the reason [`Outcome::reason`] gives; later calls
    /// do nothing.
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let reason = outcome.reason(self.link.as_deref().map(Link::first_reason));
        let report = EndReport {
            reason,
            events: self.events,
            heartbeats: self.heartbeats,
            bytes: self.bytes,
            duration: self.started.elapsed(),
            request: self.request.clone(),
        };
        if let Some(observer) = self.observer.take() {
            let (metrics, span) = *observer;
            metrics.ended(report.reason.label());
            span.ended(&report);
        }
        if let Some(handle) = self.handle.get() {
            handle.complete(&report);
        }
        let slot = self
            .on_end
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(on_end) = slot.take() {
            on_end(report);
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish(Outcome::Dropped { stop_due: false });
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("events", &self.events)
            .field("bytes", &self.bytes)
            .field("finished", &self.finished)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::end::EndReason;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fires_once_on_drop_without_poll() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handle = EndHandle::new();
        let mut reporter = Reporter::new(handle.clone());
        let c = calls.clone();
        reporter.on_end(move |r| {
            assert!(r.reason.is_client_gone());
            c.fetch_add(1, Ordering::SeqCst);
        });
        drop(reporter);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(handle.report().unwrap().reason, EndReason::ClientGone);
    }

    #[test]
    fn first_reason_wins_and_counts_are_kept() {
        let handle = EndHandle::new();
        let mut reporter = Reporter::new(handle.clone());
        reporter.sent(2, 10);
        reporter.heartbeat(3);
        reporter.finish(Outcome::Finished);
        reporter.finish(Outcome::ShutDown);
        drop(reporter);
        let r = handle.report().unwrap();
        assert_eq!(r.reason, EndReason::Completed);
        assert_eq!((r.events, r.heartbeats, r.bytes), (2, 1, 13));
    }

    #[test]
    fn several_callbacks_all_run() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut reporter = Reporter::new(EndHandle::new());
        for _ in 0..3 {
            let c = calls.clone();
            reporter.on_end(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
        drop(reporter);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
