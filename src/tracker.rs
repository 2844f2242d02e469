//! [`Tracker`]: what a stream has sent, and its end reported exactly once.

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Instant,
};

use crate::{
    link::Link, metrics::StreamMetrics, trace::StreamSpan, EndHandle, EndReason, EndReport,
    RequestInfo,
};

/// A callback run once with the report.
pub(crate) type OnEnd = Box<dyn FnOnce(EndReport) + Send>;

/// Counts what a stream sends and reports its end exactly once, on drop at the
/// latest (as [`EndReason::ClientGone`] if nothing else was recorded).
pub(crate) struct Tracker {
    // Made when first asked for: most streams never are, and it is a heap block.
    handle: OnceLock<EndHandle>,
    // In a `Mutex` only so that bodies are `Sync` (as `BoxBody` asks): it is only
    // ever reached through `&mut self`, with `get_mut`, which never locks.
    on_end: Mutex<Option<OnEnd>>,
    started: Instant,
    events: u64,
    heartbeats: u64,
    bytes: u64,
    finished: bool,
    /// Shared with the layer or the body on the other side of it, if any.
    link: Option<Arc<Link>>,
    request: Option<Arc<RequestInfo>>,
    /// Metrics and span, for the one tracker of a stream that observes it.
    observer: Option<Box<(StreamMetrics, StreamSpan)>>,
}

impl Tracker {
    pub(crate) fn new(handle: EndHandle) -> Self {
        let mut tracker = Self::without_handle();
        tracker.set_handle(handle);
        tracker
    }

    /// A tracker whose handle is made only if [`handle`](Self::handle) is called.
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

    /// Reports the end; later calls do nothing.
    pub(crate) fn finish(&mut self, reason: EndReason) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let reason = match &self.link {
            Some(link) => link.settle(reason),
            None => reason,
        };
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
            metrics.ended(&report.reason);
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

thread_local! {
    /// Set while the server drops a stream it cut off (see [`drop_stalled`]).
    static STALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Drops `value` (a response body, or a connection holding some) so that every
/// stream dropped unfinished meanwhile on this thread reports
/// [`EndReason::Stalled`] rather than `ClientGone`.
#[cfg_attr(not(feature = "serve"), allow(dead_code))]
pub(crate) fn drop_stalled<T>(value: T) {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            STALLED.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(STALLED.with(|s| s.replace(true)));
    drop(value);
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let reason = if STALLED.with(std::cell::Cell::get) {
            EndReason::Stalled
        } else {
            EndReason::ClientGone
        };
        self.finish(reason);
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("events", &self.events)
            .field("bytes", &self.bytes)
            .field("finished", &self.finished)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fires_once_on_drop_without_poll() {
        let calls = Arc::new(AtomicUsize::new(0));
        let handle = EndHandle::new();
        let mut tracker = Tracker::new(handle.clone());
        let c = calls.clone();
        tracker.on_end(move |r| {
            assert!(r.reason.is_client_gone());
            c.fetch_add(1, Ordering::SeqCst);
        });
        drop(tracker);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(handle.report().unwrap().reason, EndReason::ClientGone);
    }

    #[test]
    fn first_reason_wins_and_counts_are_kept() {
        let handle = EndHandle::new();
        let mut tracker = Tracker::new(handle.clone());
        tracker.sent(2, 10);
        tracker.heartbeat(3);
        tracker.finish(EndReason::Completed);
        tracker.finish(EndReason::Shutdown);
        drop(tracker);
        let r = handle.report().unwrap();
        assert_eq!(r.reason, EndReason::Completed);
        assert_eq!((r.events, r.heartbeats, r.bytes), (2, 1, 13));
    }

    #[test]
    fn several_callbacks_all_run() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tracker = Tracker::new(EndHandle::new());
        for _ in 0..3 {
            let c = calls.clone();
            tracker.on_end(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
        drop(tracker);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
