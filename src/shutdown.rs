//! [`Shutdown`]: end every live stream on a signal, so graceful shutdown completes.
//!
//! hyper's and axum's graceful shutdown wait for open responses to finish, and an
//! SSE response never finishes on its own (axum#2673, hyper#2787). Give the same
//! `Shutdown` to every body (or to the layer), call [`Shutdown::trigger`] when the
//! server begins to shut down, and each stream writes an optional last event and
//! ends cleanly, so the connections close and the server can exit.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    task::{Context, Poll, Waker},
};

use bytes::Bytes;

use crate::EncodedEvent;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One stream's wake-up slot. Registration with the shared list happens once per
/// stream; afterwards a stream only touches its own slot, so idle polls of many
/// streams never contend on one lock.
#[derive(Default)]
struct Slot {
    waker: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct Inner {
    triggered: AtomicBool,
    live: AtomicUsize,
    final_frame: Mutex<Option<Bytes>>,
    slots: Mutex<Vec<Weak<Slot>>>,
    drained: Mutex<Vec<Waker>>,
}

/// A trigger that ends every stream given to it.
///
/// Cloning is cheap and every clone controls the same set of streams.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use http_body_util::BodyExt;
/// use tower_sse::{Event, Shutdown, SseBody};
///
/// let shutdown = Shutdown::new();
/// let body = SseBody::from_events(futures_util::stream::pending::<Event>())
///     .with_shutdown(&shutdown);
/// assert_eq!(shutdown.live_streams(), 1);
///
/// // Ask clients to come back in 5 s (to another instance), then end.
/// shutdown.trigger_with(Event::default().retry(Duration::from_secs(5)).encode());
/// let bytes = body.collect().await.unwrap().to_bytes();
/// assert_eq!(&bytes[..], b"retry: 5000\n\n");
/// shutdown.drained().await; // every stream has ended
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    /// A new trigger with no streams yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends every stream, current and future, after the event it is writing.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots = std::mem::take(&mut *lock(&self.inner.slots));
        for slot in slots.iter().filter_map(Weak::upgrade) {
            if let Some(waker) = lock(&slot.waker).take() {
                waker.wake();
            }
        }
        self.wake_drained_if_idle();
    }

    /// Like [`trigger`](Self::trigger), but each stream first writes `last`, for
    /// example an event with a `retry:` hint telling clients when to come back.
    /// The first call decides the last event; later calls change nothing.
    pub fn trigger_with(&self, last: EncodedEvent) {
        if self.is_triggered() {
            return;
        }
        *lock(&self.inner.final_frame) = Some(last.into_bytes());
        self.trigger();
    }

    /// Whether a shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// The number of streams given this trigger that have not ended yet.
    pub fn live_streams(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// A future that resolves once a shutdown was triggered and every stream has
    /// ended. Await it before shutting the server down.
    pub fn drained(&self) -> Drained {
        Drained {
            shutdown: self.clone(),
        }
    }

    pub(crate) fn listener(&self) -> ShutdownListener {
        let slot = Arc::new(Slot::default());
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        {
            let mut slots = lock(&self.inner.slots);
            // Drop the slots of ended streams now and then, keeping the list bounded.
            if slots.len() >= 64 && slots.len() == slots.capacity() {
                slots.retain(|s| s.strong_count() > 0);
            }
            slots.push(Arc::downgrade(&slot));
        }
        ShutdownListener {
            inner: self.inner.clone(),
            slot,
        }
    }

    fn wake_drained_if_idle(&self) {
        if self.is_triggered() && self.live_streams() == 0 {
            let wakers = std::mem::take(&mut *lock(&self.inner.drained));
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("live_streams", &self.live_streams())
            .finish()
    }
}

/// Future returned by [`Shutdown::drained`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Drained {
    shutdown: Shutdown,
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let idle = || self.shutdown.is_triggered() && self.shutdown.live_streams() == 0;
        if idle() {
            return Poll::Ready(());
        }
        {
            let mut wakers = lock(&self.shutdown.inner.drained);
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
        }
        // Checked again: the last stream may have ended while we registered.
        if idle() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A stream's view of a [`Shutdown`].
pub(crate) struct ShutdownListener {
    inner: Arc<Inner>,
    slot: Arc<Slot>,
}

impl ShutdownListener {
    /// Cheap check (one atomic load), for the hot path.
    pub(crate) fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// The last frame to write before ending, if the trigger set one.
    pub(crate) fn final_frame(&self) -> Option<Bytes> {
        lock(&self.inner.final_frame).clone()
    }

    /// Registers the waker to be woken by a trigger. If the trigger has already
    /// fired, wakes it at once instead, so the stream is polled again to end.
    pub(crate) fn register(&self, cx: &mut Context<'_>) {
        if !self.is_triggered() {
            let mut waker = lock(&self.slot.waker);
            match &*waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Checked again: a trigger between the first check and the registration
        // may have taken the slot's wakers before ours was in it.
        if self.is_triggered() {
            cx.waker().wake_by_ref();
        }
    }
}

impl Drop for ShutdownListener {
    fn drop(&mut self) {
        self.inner.live.fetch_sub(1, Ordering::AcqRel);
        Shutdown {
            inner: self.inner.clone(),
        }
        .wake_drained_if_idle();
    }
}

impl fmt::Debug for ShutdownListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownListener")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}
