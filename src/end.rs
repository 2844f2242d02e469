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
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, Waker},
    time::Duration,
};

use crate::RequestInfo;

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
        if Arc::strong_count(&self.shared) == 1 {
            // No clone left (the handler dropped the request): nobody can learn
            // the report, so it is not written (the common case for plain pages).
            return;
        }
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
    pub(crate) fn complete(&self, report: &EndReport) -> bool {
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
        assert_eq!(handle.lock().wakers.len(), 0);
        // One that stays registered is woken, and re-polling keeps one entry.
        let mut ended = Box::pin(handle.ended());
        let waker = std::task::Waker::from(Arc::new(Flag));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(ended.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(handle.lock().wakers.len(), 1);
        handle.resolve_empty(EndReason::Completed);
        assert!(ended.as_mut().poll(&mut cx).is_ready());
    }

    struct Flag;

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {}
    }
}
