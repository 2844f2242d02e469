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
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;

use crate::{event::EncodedEvent, sync::lock};

/// One stream's wake-up slot. Registration with the shared list happens once per
/// stream; afterwards a stream only touches its own slot, so idle polls of many
/// streams never contend on one lock.
#[derive(Default)]
struct Slot {
    /// The waker of the stream's last idle poll. Locked by the stream when it
    /// registers ([`ShutdownListener::register`], `Triggered::poll`) and by
    /// [`Shutdown::trigger`] when it takes it; see [`Inner::triggered`] for why
    /// no wake-up is lost between the two.
    waker: Mutex<Option<Waker>>,
}

/// What every clone of a [`Shutdown`] and every stream given it share.
///
/// Each `Mutex` is locked alone (never two at once, so no lock order to keep)
/// and only for short steps, with [`lock`]; no waker is woken while
/// `slots` or `drained` is held.
struct Inner {
    /// Set once, by the first [`Shutdown::trigger`] (`swap`, `SeqCst`), never
    /// cleared. It is the flag every stream loads on its hot path (`Acquire`):
    /// one atomic load, no lock.
    ///
    /// No wake-up is lost: a stream checks `triggered`, stores its waker in its
    /// slot, then checks `triggered` again; the trigger sets `triggered`, then
    /// takes each slot's waker under that slot's lock. If the trigger took the
    /// slot before the waker was in it, its lock of the slot came first, so the
    /// stream's second check, after its own lock, sees `triggered` set (the
    /// mutex orders the two) and the stream wakes itself.
    ///
    /// `Release` on the swap also publishes `final_frame`, written before it
    /// (`trigger_with`): a stream that sees `triggered` then reads the frame.
    triggered: AtomicBool,
    /// The streams given this trigger that have not ended: one more per
    /// [`ShutdownListener`] made, one less when it drops (`SeqCst`). Waiters
    /// in `drained` are woken by whoever sees it at zero after the trigger
    /// ([`Shutdown::wake_drained_if_idle`], called by the trigger and by each
    /// listener's drop); a [`Drained`] future checks, registers under the
    /// `drained` lock, then checks again, so a waker that runs meanwhile (it
    /// takes that lock after its change) is seen either way.
    ///
    /// The trigger (sets `triggered`, then loads `live`) and the last drop
    /// (decrements `live`, then loads `triggered`) each look at the other's
    /// flag after changing their own. These four accesses are `SeqCst`: with
    /// `AcqRel`/`Acquire` the memory model would allow both to read the old
    /// value (a store-buffer race) and leave `drained` waiters unwoken; in one
    /// total order, whichever changes its flag last sees the other's change.
    /// (On x86 they cost what `AcqRel` did: the swap and decrement are locked
    /// instructions either way, and a load is a plain load.)
    live: AtomicUsize,
    /// The grace period in nanoseconds (saturated). A plain setting, read on
    /// its own: the `Release`/`Acquire` pair is more than it needs.
    grace: AtomicU64,
    /// The last event every stream writes, set by the first `trigger_with`
    /// before `triggered` (two racing `trigger_with` calls: one of the two
    /// frames), read by streams once they see `triggered`.
    final_frame: Mutex<Option<Bytes>>,
    /// The slots to wake at the trigger, weak so an ended stream's slot goes
    /// with it (pruned as the list grows). Pushed to once per stream (and per
    /// `Triggered` future); taken whole by the trigger. A slot pushed after the
    /// trigger is never woken, and needs not be: its owner checks `triggered`
    /// after registering.
    slots: Mutex<Vec<Weak<Slot>>>,
    /// The next key, and the wakers of pending [`Drained`] futures by key
    /// (each removed when its future drops). Taken whole once `live` is zero
    /// after the trigger; see `live`.
    drained: Mutex<(u64, Vec<(u64, Waker)>)>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            triggered: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            grace: AtomicU64::new(nanos(Shutdown::DEFAULT_GRACE)),
            final_frame: Mutex::default(),
            slots: Mutex::default(),
            drained: Mutex::default(),
        }
    }
}

impl Inner {
    /// A wake-up slot woken by the trigger.
    fn new_slot(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        let mut slots = lock(&self.slots);
        // Drop the slots of ended streams now and then, keeping the list bounded.
        if slots.len() >= 64 && slots.len() == slots.capacity() {
            slots.retain(|s| s.strong_count() > 0);
        }
        slots.push(Arc::downgrade(&slot));
        slot
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A trigger that ends every stream given to it.
///
/// Cloning is cheap and every clone controls the same set of streams.
///
/// # Grace period
///
/// A stream ends at the next event boundary after the trigger. One that cannot
/// reach a boundary (a producer stalled in the middle of an event, under the
/// layer) is cut off once the [grace period](Self::grace) has passed since the
/// trigger (10 s by default), so a stalled producer cannot hold shutdown. A
/// client that stops reading cannot be ended by its body at all (the server no
/// longer polls it); `tower-sse-serve` closes such connections after the
/// same grace period.
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
    /// The default [grace period](Self::grace), 10 seconds.
    pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

    /// A new trigger with no streams yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long after the trigger a stream that cannot reach an event
    /// boundary (or, with `tower-sse-serve`, a connection whose client
    /// stopped reading) is given before it is cut off. Shared by every clone.
    pub fn grace(self, grace: Duration) -> Self {
        self.inner.grace.store(nanos(grace), Ordering::Release);
        self
    }

    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        Duration::from_nanos(self.inner.grace.load(Ordering::Acquire))
    }

    /// Ends every stream, current and future, after the event it is writing.
    pub fn trigger(&self) {
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
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
            key: None,
        }
    }

    /// A future that resolves once a shutdown is triggered (at once if it was),
    /// for a server's accept loop or any task that must stop with the streams.
    pub fn triggered(&self) -> Triggered {
        Triggered {
            inner: self.inner.clone(),
            slot: None,
        }
    }

    pub(crate) fn listener(&self) -> ShutdownListener {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        ShutdownListener {
            inner: self.inner.clone(),
            slot: self.inner.new_slot(),
        }
    }

    fn wake_drained_if_idle(&self) {
        // `SeqCst`, with the trigger's swap and the listener's decrement: see
        // `Inner::live`.
        let inner = &self.inner;
        if inner.triggered.load(Ordering::SeqCst) && inner.live.load(Ordering::SeqCst) == 0 {
            let wakers = std::mem::take(&mut lock(&self.inner.drained).1);
            wakers.into_iter().for_each(|(_, waker)| waker.wake());
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
    /// Where this future's waker is in the list, once registered.
    key: Option<u64>,
}

impl Future for Drained {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shutdown = this.shutdown.clone();
        let idle = || shutdown.is_triggered() && shutdown.live_streams() == 0;
        if idle() {
            return Poll::Ready(());
        }
        {
            let mut drained = lock(&shutdown.inner.drained);
            let (next_key, wakers) = &mut *drained;
            match this
                .key
                .and_then(|key| wakers.iter_mut().find(|(k, _)| *k == key))
            {
                Some((_, waker)) => {
                    if !waker.will_wake(cx.waker()) {
                        waker.clone_from(cx.waker());
                    }
                }
                None => {
                    wakers.push((*next_key, cx.waker().clone()));
                    this.key = Some(*next_key);
                    *next_key += 1;
                }
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

impl Drop for Drained {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut drained = lock(&self.shutdown.inner.drained);
            if let Some(at) = drained.1.iter().position(|(k, _)| *k == key) {
                drained.1.swap_remove(at);
            }
        }
    }
}

/// Future returned by [`Shutdown::triggered`].
#[must_use = "futures do nothing unless polled"]
pub struct Triggered {
    inner: Arc<Inner>,
    slot: Option<Arc<Slot>>,
}

impl Future for Triggered {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.inner.triggered.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let inner = &this.inner;
        let slot = this.slot.get_or_insert_with(|| inner.new_slot());
        *lock(&slot.waker) = Some(cx.waker().clone());
        // Checked again: the trigger may have taken the wakers meanwhile.
        if this.inner.triggered.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for Triggered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Triggered")
            .field("triggered", &self.inner.triggered.load(Ordering::Acquire))
            .finish()
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

    /// The grace period of the trigger.
    pub(crate) fn grace(&self) -> Duration {
        Duration::from_nanos(self.inner.grace.load(Ordering::Acquire))
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
        self.inner.live.fetch_sub(1, Ordering::SeqCst);
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Noop;

    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn dropped_drained_futures_leave_no_waker_behind() {
        let shutdown = Shutdown::new();
        let _listener = shutdown.listener();
        for _ in 0..100 {
            let waker = Waker::from(Arc::new(Noop));
            let mut drained = Box::pin(shutdown.drained());
            assert!(drained
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
        }
        assert_eq!(lock(&shutdown.inner.drained).1.len(), 0);
    }

    #[test]
    fn grace_saturates() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.grace_period(), Shutdown::DEFAULT_GRACE);
        let shutdown = shutdown.grace(Duration::MAX);
        assert_eq!(shutdown.grace_period(), Duration::from_nanos(u64::MAX));
    }
}
