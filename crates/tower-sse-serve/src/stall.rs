//! The write-progress deadline: a stream, or a connection, whose writes make no
//! progress for the write timeout is cut off by the server, whether or not the
//! client ever reads again.
//!
//! A server does not poll a body whose data it cannot write (HTTP/1.1: the
//! connection's write buffer is full; HTTP/2: the stream holds a chunk its
//! flow-control window does not let out), so a body cannot notice by itself
//! that its client stopped reading. Two watches run beside the connection
//! instead, in one guard per connection (on one timer, shared with the
//! connection's header read deadline):
//!
//! - the socket: [`Progress`] notes when a write to it returned `Pending` and
//!   clears that when a write succeeds. Stuck for the timeout, the whole
//!   connection is closed (HTTP/1.1, or an HTTP/2 client that reads nothing);
//! - each response body: [`Watched`] notes when it handed a frame to the
//!   connection (or was created), and clears that when the connection asks for
//!   the next one. Not asked for the timeout, the body is dropped (an HTTP/2
//!   stream with a closed window, while the connection's other streams go on);
//!   the stream stays open in HTTP/2 until the client resets it or grants
//!   window again (then it is reset), but holds no body.
//!
//! Either way the bodies are dropped with the [`Stalled`](tower_sse::EndReason::Stalled)
//! reason, so their end reports (and presence built on them) run at once.

use std::{
    error::Error,
    fmt, io,
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, TryLockError, Weak,
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};

use tower_sse::{drop_stalled, BoxError};

/// One connection's watch: when its socket stopped taking writes, and the
/// bodies it serves.
#[derive(Default)]
pub(super) struct Watch {
    io_stuck_since: Mutex<Option<Instant>>,
    streams: Mutex<Vec<Weak<dyn Stream>>>,
    /// Whether the guard sleeps until a deadline no later than any new stall's
    /// (then a new stall need not wake it).
    armed: AtomicBool,
    notify: Notify,
    /// Whether the connection has sent a complete request head.
    seen: AtomicBool,
}

/// How long [`Watch::guard`] sleeps when no deadline is set (one timer, always
/// set, instead of a second way to wait).
const IDLE_WAKE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why [`Watch::guard`] gives up on a connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Cut {
    /// No complete request head by the deadline.
    NoRequest,
    /// The socket took no write for the write timeout.
    Stalled,
}

/// What [`Watch::scan`] found.
enum Scan {
    /// The socket has taken no write for the timeout.
    IoStuck,
    /// The next deadline to look again at.
    Until(Instant),
}

/// What the watchdog sees of a response body.
trait Stream: Send + Sync {
    fn owed_since(&self) -> Option<Instant>;
    /// Drops the body as stalled; `false` when it is being polled right now
    /// (then it is not cut).
    fn cut(&self) -> bool;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Watch {
    /// The connection has sent a complete request head.
    pub(super) fn saw_request(&self) {
        self.seen.store(true, Ordering::Release);
    }

    /// Whether the connection has sent a complete request head.
    pub(super) fn request_seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }

    /// A stall started now: wake the guard unless it is already waiting for
    /// an earlier deadline.
    fn stalled(&self) {
        if !self.armed.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    fn io_pending(&self) {
        let mut since = lock(&self.io_stuck_since);
        if since.is_none() {
            *since = Some(Instant::now());
            drop(since);
            self.stalled();
        }
    }

    fn io_progress(&self) {
        *lock(&self.io_stuck_since) = None;
    }

    /// Whether the socket's last write did not go through (bytes wait in the
    /// connection's write buffer).
    pub(super) fn io_stuck(&self) -> bool {
        lock(&self.io_stuck_since).is_some()
    }

    /// Runs beside a connection, on one timer, until the server must close
    /// it: it has sent no complete request head by `request_by`
    /// ([`Cut::NoRequest`]), or (with a `write_timeout`) its socket has taken
    /// no write for that long ([`Cut::Stalled`]). Meanwhile, drops each body
    /// not asked for its next frame for `write_timeout`.
    pub(super) async fn guard(&self, request_by: Instant, write_timeout: Option<Duration>) -> Cut {
        let mut request_by = Some(request_by);
        let mut timer = pin!(tokio::time::sleep_until(
            request_by.unwrap_or_else(Instant::now)
        ));
        loop {
            self.armed.store(false, Ordering::SeqCst);
            let now = Instant::now();
            let mut next = None;
            if let Some(at) = request_by {
                if self.request_seen() {
                    request_by = None;
                } else if at <= now {
                    return Cut::NoRequest;
                } else {
                    next = Some(at);
                }
            }
            if let Some(timeout) = write_timeout {
                match self.scan(now, timeout) {
                    Some(Scan::IoStuck) => return Cut::Stalled,
                    Some(Scan::Until(at)) => next = Some(next.map_or(at, |n: Instant| n.min(at))),
                    None => {}
                }
            }
            // A stall that starts from now on is due no earlier than
            // `now + timeout`: if the timer goes off by then, such a stall
            // need not wake it.
            let early = next.is_some_and(|at| write_timeout.is_none_or(|t| at <= now + t));
            self.armed.store(early, Ordering::SeqCst);
            // Nothing due: a wake-up a day from now, with nothing to do.
            timer.as_mut().reset(next.unwrap_or(now + IDLE_WAKE));
            tokio::select! {
                () = &mut timer => {}
                () = self.notify.notified() => {}
            }
        }
    }

    /// Drops each body not asked for its next frame for `timeout`, as of
    /// `now`; tells whether the socket has been stuck that long, or else the
    /// next deadline (if any).
    fn scan(&self, now: Instant, timeout: Duration) -> Option<Scan> {
        let mut next: Option<Instant> = None;
        // Whether a deadline is past; a later one is the next wake-up.
        let mut due = |at: Instant| {
            if at <= now {
                true
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
                false
            }
        };
        if let Some(since) = *lock(&self.io_stuck_since) {
            if due(since + timeout) {
                return Some(Scan::IoStuck);
            }
        }
        let streams: Vec<_> = {
            let mut streams = lock(&self.streams);
            streams.retain(|s| s.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        for stream in streams {
            if stream
                .owed_since()
                .is_some_and(|since| due(since + timeout))
                && !stream.cut()
            {
                // Being polled right now: that poll either leaves nothing
                // owed, or owes the next poll from a time no earlier than
                // now, which no stall wakes the guard for. Look again when
                // that deadline can be due at the earliest.
                due(now + timeout.max(Duration::from_millis(1)));
            }
        }
        next.map(Scan::Until)
    }

    /// Drops every body of the connection, as stalled (before the connection
    /// itself is dropped: HTTP/2 bodies live in tasks of their own).
    pub(super) fn cut_all(&self) {
        let streams = std::mem::take(&mut *lock(&self.streams));
        for stream in streams.iter().filter_map(Weak::upgrade) {
            stream.cut();
        }
    }
}

/// A connection's socket, noting whether writes make progress.
pub(super) struct Progress<IO> {
    io: IO,
    watch: Arc<Watch>,
}

impl<IO> Progress<IO> {
    pub(super) fn new(io: IO, watch: Arc<Watch>) -> Self {
        Self { io, watch }
    }

    /// The socket.
    pub(super) fn get_ref(&self) -> &IO {
        &self.io
    }

    fn note(&self, poll: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match &poll {
            Poll::Pending => self.watch.io_pending(),
            Poll::Ready(Ok(n)) if *n > 0 => self.watch.io_progress(),
            Poll::Ready(_) => {}
        }
        poll
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Progress<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Progress<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body under the watch of its connection.
pub(super) struct Watched<B> {
    slot: Arc<Slot<B>>,
}

struct Slot<B> {
    /// `None` once cut off (or finished).
    body: Mutex<Option<Pin<Box<B>>>>,
    /// When the connection last took a frame (or the body was made) without
    /// asking for the next one since.
    owed_since: Mutex<Option<Instant>>,
    watch: Weak<Watch>,
}

impl<B: Send + 'static> Stream for Slot<B> {
    fn owed_since(&self) -> Option<Instant> {
        *lock(&self.owed_since)
    }

    fn cut(&self) -> bool {
        // Being polled right now: not stalled (yet).
        let mut body = match self.body.try_lock() {
            Ok(body) => body,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        let body = body.take();
        *lock(&self.owed_since) = None;
        drop_stalled(body);
        true
    }
}

impl<B: Send + 'static> Watched<B> {
    pub(super) fn new(body: B, watch: &Arc<Watch>) -> Self {
        let slot = Arc::new(Slot {
            body: Mutex::new(Some(Box::pin(body))),
            owed_since: Mutex::new(Some(Instant::now())),
            watch: Arc::downgrade(watch),
        });
        let weak: Weak<Slot<B>> = Arc::downgrade(&slot);
        let mut streams = lock(&watch.streams);
        // A kept-alive connection makes many bodies: forget the finished ones
        // (HTTP/2 has at most its stream cap alive).
        if streams.len() >= 32 {
            streams.retain(|s| s.strong_count() > 0);
        }
        // Room for one (an HTTP/1.1 connection's): `push` would make room
        // for four.
        streams.reserve_exact(1);
        streams.push(weak);
        drop(streams);
        watch.stalled();
        Self { slot }
    }
}

/// The error a body cut off by the write timeout ends with, if the connection
/// polls it again.
#[derive(Debug)]
struct StalledError;

impl fmt::Display for StalledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream was cut off: its writes made no progress")
    }
}

impl Error for StalledError {}

impl<B> Body for Watched<B>
where
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let slot = &self.slot;
        let mut body = lock(&slot.body);
        let Some(inner) = body.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(StalledError))));
        };
        let poll = inner.as_mut().poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(_))) => {
                // The connection owes a poll from now (a busy stream is asked
                // again at once, and moves this forward each time).
                let was = lock(&slot.owed_since).replace(Instant::now());
                if was.is_none() {
                    if let Some(watch) = slot.watch.upgrade() {
                        watch.stalled();
                    }
                }
            }
            // Waiting for its producer, ended or failed: nothing owed.
            Poll::Pending | Poll::Ready(_) => *lock(&slot.owed_since) = None,
        }
        poll.map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.slot.body)
            .as_ref()
            .is_some_and(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.slot.body)
            .as_ref()
            .map_or_else(SizeHint::default, |body| body.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, task::Poll};

    use super::*;
    use tower_sse::{EndReason, Event, SseBody};

    /// An endless stream of events, and the handle that learns its end.
    fn body() -> (
        impl Body<Data = bytes::Bytes, Error = std::convert::Infallible> + Send + 'static,
        tower_sse::EndHandle,
    ) {
        let events = futures_core_stream(Event::message("x"));
        let body = SseBody::from_events(events);
        let handle = body.end_handle();
        (body, handle)
    }

    fn futures_core_stream(event: Event) -> impl futures_core::Stream<Item = Event> + Send {
        struct Repeat(Event);
        impl futures_core::Stream for Repeat {
            type Item = Event;
            fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Event>> {
                Poll::Ready(Some(self.0.clone()))
            }
        }
        Repeat(event)
    }

    impl Watch {
        /// The guard of a connection that has sent a request: ends when its
        /// socket has taken no write for `timeout`.
        async fn watchdog(&self, timeout: Duration) {
            self.saw_request();
            let cut = self.guard(Instant::now(), Some(timeout)).await;
            assert_eq!(cut, Cut::Stalled);
        }
    }

    /// A watched body whose connection took one frame, its end handle, and the
    /// watchdog (30 s write timeout) running beside it.
    async fn one_frame_taken() -> (
        Pin<Box<Watched<impl Body<Data = bytes::Bytes, Error = std::convert::Infallible>>>>,
        tower_sse::EndHandle,
        tokio::task::JoinHandle<()>,
    ) {
        let watch = Arc::new(Watch::default());
        let (inner, handle) = body();
        let mut watched = Box::pin(Watched::new(inner, &watch));
        let frame = poll_fn(|cx| watched.as_mut().poll_frame(cx)).await;
        assert!(matches!(frame, Some(Ok(_))));
        let dog = tokio::spawn(async move { watch.watchdog(Duration::from_secs(30)).await });
        (watched, handle, dog)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_not_asked_for_its_next_frame_is_cut_off_at_the_deadline() {
        // The connection takes one frame, then asks for no more.
        let (mut watched, handle, dog) = one_frame_taken().await;
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(!handle.is_ended(), "not before the deadline");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(handle.report().unwrap().reason, EndReason::Stalled);
        // The connection's next poll gets an error: the stream is over.
        let frame = poll_fn(|cx| watched.as_mut().poll_frame(cx)).await;
        assert!(matches!(frame, Some(Err(_))));
        // The socket is fine: the watchdog does not close the connection.
        assert!(!dog.is_finished());
        dog.abort();
    }

    #[tokio::test(start_paused = true)]
    // Deliberate: the lock held across the deadline is a poll in progress.
    #[allow(clippy::await_holding_lock)]
    async fn a_body_being_polled_at_its_deadline_is_looked_at_again() {
        let (mut watched, handle, dog) = one_frame_taken().await;
        // At the deadline, the connection (on another thread, for HTTP/2) is in
        // the middle of a poll: the body's lock is taken...
        let slot = watched.slot.clone();
        let polling = lock(&slot.body);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(!handle.is_ended(), "not cut while it is being polled");
        // ...and that poll hands over a frame (so the next poll is owed from
        // now), after which the connection asks for nothing more.
        *lock(&slot.owed_since) = Some(Instant::now());
        drop(polling);
        // Used to be forgotten: the watchdog waited for a new stall without a
        // deadline, and the stream was never cut.
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert_eq!(handle.report().map(|r| r.reason), Some(EndReason::Stalled));
        let frame = poll_fn(|cx| watched.as_mut().poll_frame(cx)).await;
        assert!(matches!(frame, Some(Err(_))));
        assert!(!dog.is_finished());
        dog.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_stuck_for_the_timeout_ends_the_watchdog_and_progress_resets_it() {
        let watch = Arc::new(Watch::default());
        let mut dog = Box::pin({
            let watch = watch.clone();
            async move { watch.watchdog(Duration::from_secs(30)).await }
        });
        watch.io_pending();
        let early = tokio::time::timeout(Duration::from_secs(20), &mut dog).await;
        assert!(early.is_err());
        // A write goes through: the clock starts again at the next stall.
        watch.io_progress();
        watch.io_pending();
        let early = tokio::time::timeout(Duration::from_secs(20), &mut dog).await;
        assert!(early.is_err(), "20 s into the second stall");
        let (inner, handle) = body();
        let _watched = Watched::new(inner, &watch);
        tokio::time::timeout(Duration::from_secs(11), &mut dog)
            .await
            .expect("the watchdog ends 30 s into the stall");
        watch.cut_all();
        assert_eq!(handle.report().unwrap().reason, EndReason::Stalled);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_by_the_deadline_is_cut() {
        let watch = Watch::default();
        let started = Instant::now();
        let timeout = Duration::from_secs(10);
        let cut = watch.guard(started + timeout, Some(Duration::from_secs(30)));
        assert_eq!(cut.await, Cut::NoRequest);
        assert_eq!(started.elapsed(), timeout);
        // Without a write timeout as well.
        let cut = watch.guard(Instant::now() + timeout, None).await;
        assert_eq!(cut, Cut::NoRequest);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_with_a_request_outlives_the_header_deadline() {
        let watch = Arc::new(Watch::default());
        let guard = {
            let watch = watch.clone();
            tokio::spawn(async move {
                let request_by = Instant::now() + Duration::from_secs(10);
                watch.guard(request_by, Some(Duration::from_secs(30))).await
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        watch.saw_request();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!guard.is_finished());
        guard.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_deadline_after_the_write_timeout_does_not_delay_a_cut() {
        // The guard sleeps until the header deadline (10 s) when the request
        // and its body come; the body's connection then takes one frame and
        // no more: it is cut at the write timeout (1 s), not at 10 s.
        let watch = Arc::new(Watch::default());
        let guard = {
            let watch = watch.clone();
            let request_by = Instant::now() + Duration::from_secs(10);
            tokio::spawn(async move { watch.guard(request_by, Some(Duration::from_secs(1))).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        watch.saw_request();
        let (inner, handle) = body();
        let mut watched = Box::pin(Watched::new(inner, &watch));
        let frame = poll_fn(|cx| watched.as_mut().poll_frame(cx)).await;
        assert!(matches!(frame, Some(Ok(_))));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!handle.is_ended(), "not before the write timeout");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(handle.report().map(|r| r.reason), Some(EndReason::Stalled));
        assert!(!guard.is_finished(), "the socket is fine");
        guard.abort();
    }
}
