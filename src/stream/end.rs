//! Disconnect detection: [`EndHandle`], [`EndReport`] and [`EndReason`].
//!
//! Every stream reports how it ended exactly once: when it completes, fails, is shut
//! down, reaches its lifetime, or when its body is dropped before that, which is how
//! a server tells that the client went away (hyper drops a response body as soon as
//! it sees the connection closed). The report goes to an optional callback and to
//! every [`EndHandle`], which the code producing events can hold to stop early.
//!
//! How a stream ended is decided in one place, [`Outcome::reason`]: every part
//! (the body, the layer's body and future, the lifecycle, the reporter) says
//! what happened as an [`Outcome`], and only that function turns it into the
//! [`EndReason`] reported, with the two things no single part sees: the
//! [`drop_stalled`] flag of the thread, and the reason recorded by the other
//! side of a body/layer link (`link.rs`).

use std::{
    cell::Cell,
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use crate::{request_info::RequestInfo, sync::lock};

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
    /// A [`Shutdown`](crate::Shutdown) was triggered (also when the body was
    /// dropped unfinished after the trigger, as a server does to connections
    /// still open at the end of the grace period).
    Shutdown,
    /// The stream reached its maximum lifetime.
    Lifetime,
    /// The server cut the stream off because the connection took none of its
    /// data for the write timeout: a client that stopped reading (a full TCP
    /// window, or a closed HTTP/2 flow-control window). Reported by
    /// `serve::Server` (the `serve` feature) when it drops such a stream.
    Stalled,
}

impl EndReason {
    /// A short, stable name for the reason: `client_gone`, `completed`,
    /// `failed`, `shutdown`, `lifetime` or `stalled` (the `reason` label of
    /// the [`STREAMS_ENDED`](crate::metrics::STREAMS_ENDED) metric).
    ///
    /// ```
    /// use tower_sse::EndReason;
    ///
    /// assert_eq!(EndReason::ClientGone.label(), "client_gone");
    /// assert_eq!(EndReason::Stalled.label(), "stalled");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClientGone => "client_gone",
            Self::Completed => "completed",
            Self::Failed(_) => "failed",
            Self::Shutdown => "shutdown",
            Self::Lifetime => "lifetime",
            Self::Stalled => "stalled",
        }
    }

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
            Self::Stalled => f.write_str("stalled: writes made no progress"),
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

/// What happened to a stream, as the part that saw it says it; turned into
/// an [`EndReason`] by [`reason`](Self::reason) and nowhere else.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// The producer ended (an `SseBody`'s stream answered `None`).
    Finished,
    /// The producer (or the layer's inner body) failed.
    Failed(Arc<dyn Error + Send + Sync>),
    /// The layer's inner body ended: it may know why (an `SseBody` that failed,
    /// or was shut down on its own), through the link.
    InnerEnded,
    /// The stream stopped for a triggered [`Shutdown`](crate::Shutdown) (at a
    /// boundary, or at the end of the grace period).
    ShutDown,
    /// The stream stopped at its maximum lifetime.
    LifetimeReached,
    /// The body was dropped unfinished. `stop_due`: a shutdown had been
    /// triggered, or a stop (shutdown or lifetime) was due.
    Dropped {
        /// A stop was due when the body was dropped.
        stop_due: bool,
    },
    /// The answer was not a stream (an error, a plain page, a compressed
    /// stream), or it was refused for the concurrency limit (`503`): nothing
    /// was streamed.
    NoStream,
    /// The response future was dropped before the inner service answered.
    Unanswered,
}

impl Outcome {
    /// The one mapping from what happened to the reason reported. `first`,
    /// for a stream with a body on each side of a layer, is where the two
    /// sides meet (their link's slot, `Link::first_reason`): the first reason
    /// other than `ClientGone` is recorded there, and a side that only saw its
    /// body dropped (`ClientGone`) reports the other's. Deciding and recording
    /// are one step, under the slot's lock.
    pub(crate) fn reason(self, first: Option<&Mutex<Option<EndReason>>>) -> EndReason {
        let Some(first) = first else {
            return self.own_reason(None);
        };
        let mut first = lock(first);
        let reason = self.own_reason(first.as_ref());
        match &*first {
            Some(first) if reason.is_client_gone() => first.clone(),
            Some(_) => reason,
            None => {
                if !reason.is_client_gone() {
                    *first = Some(reason.clone());
                }
                reason
            }
        }
    }

    /// The reason this side alone would give; `first` is what the other side
    /// of the link recorded, if any.
    fn own_reason(self, first: Option<&EndReason>) -> EndReason {
        match self {
            Self::Finished | Self::NoStream => EndReason::Completed,
            Self::Failed(err) => EndReason::Failed(err),
            Self::InnerEnded => first.cloned().unwrap_or(EndReason::Completed),
            // Dropped unfinished after a shutdown was triggered: the server
            // closed the connection at the end of the grace period (a client
            // that stopped reading), or the client left meanwhile; either way
            // the stream ended because of the shutdown. (A lifetime stop due
            // counts the same: kept as it always was.)
            Self::ShutDown | Self::Dropped { stop_due: true } => EndReason::Shutdown,
            Self::LifetimeReached => EndReason::Lifetime,
            Self::Dropped { stop_due: false } if STALLED.with(Cell::get) => EndReason::Stalled,
            Self::Dropped { stop_due: false } | Self::Unanswered => EndReason::ClientGone,
        }
    }
}

thread_local! {
    /// Set while [`drop_stalled`] drops a value on this thread: the streams
    /// dropped unfinished meanwhile were cut off by the server, not left by
    /// their client.
    ///
    /// A thread-local because `drop_stalled` takes any value (a body, a whole
    /// connection holding several), so there is no stream to tell: the streams
    /// inside learn it in their `Drop`, which runs on this thread, inside the
    /// call. It cannot leak to other streams: it is set only for the call,
    /// and restored (to its previous value, for nested calls) even on panic.
    static STALLED: Cell<bool> = const { Cell::new(false) };
}

/// Drops `value` (a response body, or a connection holding some) so that every
/// stream dropped unfinished meanwhile on this thread reports
/// [`EndReason::Stalled`] rather than `ClientGone`.
///
/// For servers that cut off a client that stopped reading (a write timeout):
/// `tower-sse-serve` calls it when it drops such a connection, and any other
/// server can, so that its end reports tell a stalled client from one that
/// left.
pub fn drop_stalled<T>(value: T) {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            STALLED.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(STALLED.with(|s| s.replace(true)));
    drop(value);
}

/// The state every clone of an [`EndHandle`] shares, all of it behind the one
/// `Mutex` of [`EndHandle::shared`].
///
/// The invariant: once `report` is `Some`, it never changes and `wakers` stays
/// empty. [`EndHandle::complete`] writes the report and takes the wakers in
/// one critical section, then wakes them after unlocking (a woken task may
/// poll at once, on another thread, and must find the lock free); an [`Ended`]
/// future checks the report and registers its waker in one critical section.
/// So a future either sees the report or has its waker taken by the
/// completion: none waits forever, and none needs an atomic.
#[derive(Default)]
struct Shared {
    /// The end report, written once by the stream's reporter (or by
    /// `resolve_empty`), then only read.
    report: Option<EndReport>,
    /// The wakers of pending [`Ended`] futures, by key; each removes its own when
    /// dropped, so a handle polled by many short-lived futures stays small.
    wakers: Vec<(u64, Waker)>,
    /// The key of the next waker registered; only grows.
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
    /// Held by the stream's reporter and every clone the application keeps;
    /// locked for short, non-blocking steps only (never while waking, never
    /// while calling out), with [`lock`] (poison-tolerant: each step leaves
    /// [`Shared`] consistent). Its strong count tells `resolve_empty` whether
    /// anyone else can still read the report.
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
        lock(&self.shared).report.is_some()
    }

    /// The report, once the stream has ended.
    pub fn report(&self) -> Option<EndReport> {
        lock(&self.shared).report.clone()
    }

    /// A future that resolves with the report when the stream ends (at once if it
    /// already has).
    pub fn ended(&self) -> Ended {
        Ended {
            handle: self.clone(),
            key: None,
        }
    }

    /// Resolves the handle with zero counts (no stream was sent).
    pub(crate) fn resolve_empty(&self, outcome: Outcome) {
        if Arc::strong_count(&self.shared) == 1 {
            // No clone left (the handler dropped the request): nobody can learn
            // the report, so it is not written (the common case for plain pages).
            // Not racy: a new clone can only be made from a handle, and this is
            // the only one left, borrowed here.
            return;
        }
        self.complete(&EndReport {
            reason: outcome.reason(None),
            events: 0,
            heartbeats: 0,
            bytes: 0,
            duration: Duration::ZERO,
            request: None,
        });
    }

    /// Publishes the report; only the first call has an effect.
    pub(crate) fn complete(&self, report: &EndReport) -> bool {
        let wakers = {
            let mut shared = lock(&self.shared);
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
            .field("report", &lock(&self.shared).report)
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
        let mut shared = lock(&this.handle.shared);
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
            let mut shared = lock(&self.handle.shared);
            if let Some(at) = shared.wakers.iter().position(|(k, _)| *k == key) {
                shared.wakers.swap_remove(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(lock(&handle.shared).wakers.len(), 0);
        // One that stays registered is woken, and re-polling keeps one entry.
        let mut ended = Box::pin(handle.ended());
        let waker = std::task::Waker::from(Arc::new(Flag));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(ended.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(lock(&handle.shared).wakers.len(), 1);
        handle.resolve_empty(Outcome::NoStream);
        assert!(ended.as_mut().poll(&mut cx).is_ready());
    }

    struct Flag;

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }
}
