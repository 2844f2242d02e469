//! Disconnect detection: [`EndHandle`], [`EndReport`] and [`EndReason`].
//!
//! Every stream reports how it ended exactly once: when it completes, fails, is shut
//! down, reaches its lifetime, or when its body is dropped before that, which is how
//! a server tells that the client went away (hyper drops a response body as soon as
//! it sees the connection closed). The report goes to an optional callback and to
//! every [`EndHandle`], which the code producing events can hold to stop early.

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use crate::{link::Link, metrics::StreamMetrics, trace::StreamSpan, RequestInfo};

/// Why a stream ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum EndReason {
    /// The body was dropped before the stream ended: the client disconnected (or
    /// the server dropped the connection).
    ClientGone,
    /// The event stream finished (`None`).
    Completed,
    /// The event stream yielded an error; the body ended cleanly after it.
    Failed(Arc<dyn Error + Send + Sync>),
    /// A [`Shutdown`](crate::Shutdown) was triggered.
    Shutdown,
    /// The stream reached its maximum lifetime.
    Lifetime,
}

impl EndReason {
    /// Whether the client went away before the stream ended.
    pub fn is_client_gone(&self) -> bool {
        matches!(self, Self::ClientGone)
    }
}

impl PartialEq for EndReason {
    /// Compares the kind of reason; two `Failed` compare equal by message.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Failed(a), Self::Failed(b)) => a.to_string() == b.to_string(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientGone => f.write_str("client gone"),
            Self::Completed => f.write_str("completed"),
            Self::Failed(e) => write!(f, "failed: {e}"),
            Self::Shutdown => f.write_str("shut down"),
            Self::Lifetime => f.write_str("lifetime reached"),
        }
    }
}

/// How a stream ended, and what it had sent.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndReport {
    /// Why it ended.
    pub reason: EndReason,
    /// Events handed to the connection (heartbeats and the first frame not counted).
    pub events: u64,
    /// Heartbeats handed to the connection.
    pub heartbeats: u64,
    /// Bytes handed to the connection, heartbeats included.
    pub bytes: u64,
    /// From the body's creation (under the layer: from the response) to its end.
    pub duration: Duration,
    /// The request the stream answered, when known: always under
    /// [`SseLayer`](crate::SseLayer); for an [`SseBody`](crate::SseBody) alone,
    /// when given with [`SseBody::request_info`](crate::SseBody::request_info).
    pub request: Option<Arc<RequestInfo>>,
}

#[derive(Default)]
struct Shared {
    report: Option<EndReport>,
    /// The wakers of pending [`Ended`] futures, by key; each removes its own when
    /// dropped, so a handle polled by many short-lived futures stays small.
    wakers: Vec<(u64, Waker)>,
    next_key: u64,
}

/// A cloneable handle that learns how a stream ended.
///
/// Await [`ended`](Self::ended) in the task that produces events (for example in a
/// `select!` beside the event source) to stop producing for a client that left, or
/// check [`is_ended`](Self::is_ended) between events.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_sse::{EndReason, Event, SseBody};
///
/// let body = SseBody::from_events(futures_util::stream::pending::<Event>());
/// let handle = body.end_handle();
/// assert!(!handle.is_ended());
/// drop(body); // what hyper does when the client disconnects
/// let report = handle.ended().await;
/// assert_eq!(report.reason, EndReason::ClientGone);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct EndHandle {
    shared: Arc<Mutex<Shared>>,
}

impl EndHandle {
    /// A handle not yet attached to a stream; pass it to
    /// [`SseBody::with_end_handle`](crate::SseBody::with_end_handle) (or to the
    /// layer) so that a handler can create it before the body exists.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.lock().report.is_some()
    }

    /// The report, once the stream has ended.
    pub fn report(&self) -> Option<EndReport> {
        self.lock().report.clone()
    }

    /// A future that resolves with the report when the stream ends (at once if it
    /// already has).
    pub fn ended(&self) -> Ended {
        Ended {
            handle: self.clone(),
            key: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock cannot leave `Shared` inconsistent.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves the handle with `reason` and zero counts (no stream was sent).
    pub(crate) fn resolve_empty(&self, reason: EndReason) {
        self.complete(&EndReport {
            reason,
            events: 0,
            heartbeats: 0,
            bytes: 0,
            duration: Duration::ZERO,
            request: None,
        });
    }

    /// Publishes the report; only the first call has an effect.
    fn complete(&self, report: &EndReport) -> bool {
        let wakers = {
            let mut shared = self.lock();
            if shared.report.is_some() {
                return false;
            }
            shared.report = Some(report.clone());
            std::mem::take(&mut shared.wakers)
        };
        wakers.into_iter().for_each(|(_, waker)| waker.wake());
        true
    }
}

impl fmt::Debug for EndHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndHandle")
            .field("report", &self.lock().report)
            .finish()
    }
}

/// Future returned by [`EndHandle::ended`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Ended {
    handle: EndHandle,
    /// Where this future's waker is in the handle's list, once registered.
    key: Option<u64>,
}

impl Future for Ended {
    type Output = EndReport;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<EndReport> {
        let this = self.get_mut();
        let mut shared = this.handle.lock();
        if let Some(report) = &shared.report {
            return Poll::Ready(report.clone());
        }
        let registered = this
            .key
            .and_then(|key| shared.wakers.iter_mut().find(|(k, _)| *k == key));
        match registered {
            Some((_, waker)) => {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let key = shared.next_key;
                shared.next_key += 1;
                shared.wakers.push((key, cx.waker().clone()));
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut shared = self.handle.lock();
            if let Some(at) = shared.wakers.iter().position(|(k, _)| *k == key) {
                shared.wakers.swap_remove(at);
            }
        }
    }
}

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

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish(EndReason::ClientGone);
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

    #[test]
    fn dropped_ended_futures_leave_no_waker_behind() {
        let handle = EndHandle::new();
        for _ in 0..100 {
            let mut ended = Box::pin(handle.ended());
            // A fresh waker each time, as a new task awaiting the handle would have.
            let waker = std::task::Waker::from(Arc::new(Flag));
            assert!(ended
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        assert_eq!(handle.lock().wakers.len(), 0);
        // One that stays registered is woken, and re-polling keeps one entry.
        let mut ended = Box::pin(handle.ended());
        let waker = std::task::Waker::from(Arc::new(Flag));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(ended.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(handle.lock().wakers.len(), 1);
        Tracker::new(handle.clone()).finish(EndReason::Completed);
        assert!(ended.as_mut().poll(&mut cx).is_ready());
    }

    struct Flag;

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }
}
