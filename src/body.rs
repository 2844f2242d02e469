//! [`SseBody`]: any stream of events as an `http_body::Body`.

use std::{
    convert::Infallible,
    error::Error,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

use crate::{
    end::{EndHandle, EndReason, EndReport, Tracker},
    keep_alive::{Heartbeat, KeepAlive},
    response::OwnHeartbeat,
    shutdown::{Shutdown, ShutdownListener},
    timer::{default_timer, Deadline, Timer},
    EncodedEvent, Event,
};

/// The error type a stream may yield: anything that converts into this box.
pub type BoxError = Box<dyn Error + Send + Sync>;

type OnError = Box<dyn Fn(&(dyn Error + Send + Sync + 'static)) -> Option<Event> + Send + Sync>;

/// Ready events are joined into one frame up to this many bytes by default.
const DEFAULT_COALESCE: usize = 16 * 1024;

pin_project! {
    /// An `http_body::Body` that writes a stream of events as `text/event-stream`.
    ///
    /// The stream yields `Result<T, E>` where `T` converts into an
    /// [`EncodedEvent`] ([`Event`] does, and so does an `EncodedEvent` shared by a
    /// [broadcast hub](crate::Hub)) and `E` into a [`BoxError`]. For a stream of plain
    /// events, use [`SseBody::from_events`].
    ///
    /// # What it does
    ///
    /// - **Heartbeats** ([`KeepAlive`], on by default every 15 s): a comment written
    ///   only while the stream is idle, never inside an event; the interval restarts
    ///   after every event.
    /// - **First frame**: an optional [`retry`](Self::retry) hint and/or
    ///   [`comment`](Self::comment), sent at once so that clients and proxies see the
    ///   stream open before the first event.
    /// - **Coalescing**: events that are ready at the same time are joined into one
    ///   frame of at most 16 KiB ([`coalesce`](Self::coalesce)), so a burst costs
    ///   one write instead of one per event. Events are never held back waiting
    ///   for more; a larger event is its own frame, zero-copy.
    /// - **Errors**: when the stream yields an error, the body writes the event
    ///   built by [`on_error`](Self::on_error), if any, and ends cleanly. The
    ///   client sees a normal end of stream and reconnects as usual. The body itself
    ///   never fails (`Error = Infallible`) and never panics.
    /// - **Disconnect detection**: how the stream ended ([`EndReport`]) is reported
    ///   exactly once to [`on_end`](Self::on_end) and to every [`EndHandle`],
    ///   including when the body is dropped before it was ever polled.
    /// - **Graceful shutdown**: [`with_shutdown`](Self::with_shutdown) ends the
    ///   stream when a [`Shutdown`] is triggered.
    /// - **Lifetime**: [`max_lifetime`](Self::max_lifetime) ends the stream cleanly
    ///   after a while, so load balancers can move clients.
    ///
    /// After the end it keeps answering `None`; `size_hint` stays unknown, and
    /// `is_end_stream` is `true` only once nothing more will be written.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::time::Duration;
    /// use http_body_util::BodyExt;
    /// use tower_sse::{Event, SseBody};
    ///
    /// let events = futures_util::stream::iter(["one", "two"]).map(Event::message);
    /// # use futures_util::StreamExt;
    /// let body = SseBody::from_events(events).retry(Duration::from_secs(3));
    /// let bytes = body.collect().await.unwrap().to_bytes();
    /// assert_eq!(&bytes[..], b"retry: 3000\n\ndata: one\n\ndata: two\n\n");
    /// # }
    /// ```
    #[must_use = "a body does nothing unless it is sent"]
    pub struct SseBody<S> {
        #[pin]
        stream: S,
        heartbeat: Heartbeat,
        timer: Option<Arc<dyn Timer>>,
        tracker: Tracker,
        shutdown: Option<ShutdownListener>,
        lifetime: Option<Deadline>,
        on_error: Option<OnError>,
        // Written before anything else: the retry hint and opening comment (boxed:
        // rarely set, and an `Event` is large).
        first: Option<Box<Event>>,
        // Repeated before a planned end (lifetime), so the client comes back.
        retry: Option<Duration>,
        // A frame owed before the stream is polled again, with its event count.
        pending: Option<(Bytes, u64)>,
        // Set when the stream has ended but a frame may still be owed.
        ending: Option<EndReason>,
        coalesce: usize,
    }
}

impl<S> SseBody<S> {
    /// A body for a stream of `Result`s. See [`from_events`](Self::from_events) for
    /// streams that cannot fail.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            heartbeat: Heartbeat::new(KeepAlive::new()),
            timer: default_timer(),
            tracker: Tracker::without_handle(),
            shutdown: None,
            lifetime: None,
            on_error: None,
            first: None,
            retry: None,
            pending: None,
            ending: None,
            coalesce: DEFAULT_COALESCE,
        }
    }

    /// Sets the heartbeat; [`KeepAlive::disabled`] turns it off.
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.heartbeat = Heartbeat::new(keep_alive);
        self
    }

    /// Sets the timer for heartbeats and the lifetime. With the `tokio` feature
    /// (default) tokio's timer is used; without it, and without a timer set here,
    /// heartbeats and the lifetime are off.
    pub fn timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.timer = Some(timer);
        self
    }

    /// Sends `retry: MILLISECONDS` at once, telling the client how long to wait
    /// before reconnecting.
    pub fn retry(mut self, retry: Duration) -> Self {
        let first = self.first.take().unwrap_or_default();
        self.first = Some(Box::new(first.retry(retry)));
        self.retry = Some(retry);
        self
    }

    /// Sends a comment at once, so the client and any proxy see the stream open
    /// before the first event.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        let first = self.first.take().unwrap_or_default();
        self.first = Some(Box::new(first.comment(text)));
        self
    }

    /// Joins events that are ready together into frames of at most `max_bytes`.
    /// `0` writes one frame per event.
    pub fn coalesce(mut self, max_bytes: usize) -> Self {
        self.coalesce = max_bytes;
        self
    }

    /// When the stream yields an error, writes the event `f` returns (if any)
    /// before ending. The error is also in the [`EndReport`].
    ///
    /// ```
    /// use tower_sse::{Event, SseBody};
    /// # let stream = futures_util::stream::empty::<Result<Event, std::io::Error>>();
    /// let body = SseBody::new(stream).on_error(|err| {
    ///     Some(Event::default().event("error").unwrap().data(err.to_string()))
    /// });
    /// ```
    pub fn on_error<F>(mut self, f: F) -> Self
    where
        F: Fn(&(dyn Error + Send + Sync + 'static)) -> Option<Event> + Send + Sync + 'static,
    {
        self.on_error = Some(Box::new(f));
        self
    }

    /// Calls `f` once with the [`EndReport`] when the stream ends for any reason,
    /// the client leaving included. Several callbacks all run.
    ///
    /// The callback runs where the body ends or is dropped (usually the
    /// connection's task): keep it short, or send the report to a channel.
    pub fn on_end(mut self, f: impl FnOnce(EndReport) + Send + 'static) -> Self {
        self.tracker.on_end(f);
        self
    }

    /// A handle that learns how the stream ended; see [`EndHandle`].
    pub fn end_handle(&self) -> EndHandle {
        self.tracker.handle().clone()
    }

    /// Reports the end to `handle`, one created before the body (for example by
    /// the layer, or by a handler that hands it to its event producer first).
    pub fn with_end_handle(mut self, handle: EndHandle) -> Self {
        self.tracker.set_handle(handle);
        self
    }

    /// Ends the stream when `shutdown` is triggered, after writing its last event.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.listener());
        self
    }

    /// Ends the stream cleanly once it has been open for `lifetime`, writing a
    /// `retry:` hint if [`retry`](Self::retry) was set, so the client comes back,
    /// possibly to another server.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(Deadline::new(lifetime));
        self
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream inside.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Wraps the body in a response with the SSE headers; see
    /// [`response`](crate::response()).
    ///
    /// The response also carries a private marker when the body sends heartbeats,
    /// so that an `SseLayer` around the service does not add its own.
    pub fn into_response(self) -> http::Response<Self> {
        let own_heartbeat = self.heartbeat.is_enabled() && self.timer.is_some();
        let mut res = crate::response(self);
        if own_heartbeat {
            res.extensions_mut().insert(OwnHeartbeat);
        }
        res
    }
}

pin_project! {
    /// Turns a stream of `T` into a stream of `Ok::<T, Infallible>(T)`.
    #[derive(Debug)]
    pub struct Infallibly<S> {
        #[pin]
        stream: S,
    }
}

impl<S: Stream> Stream for Infallibly<S> {
    type Item = Result<S::Item, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx).map(|item| item.map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S> SseBody<Infallibly<S>> {
    /// A body for a stream that cannot fail, of [`Event`]s or [`EncodedEvent`]s.
    pub fn from_events(stream: S) -> Self {
        Self::new(Infallibly { stream })
    }
}

impl<S, T, E> Body for SseBody<S>
where
    S: Stream<Item = Result<T, E>>,
    T: Into<EncodedEvent>,
    E: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let mut this = self.project();
        if this.tracker.is_finished() {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let bytes = first.encode().into_bytes();
            this.tracker.sent(0, bytes.len());
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if let Some((bytes, events)) = this.pending.take() {
            // An event that did not fit in the last frame starts the next one, unless
            // the stream is over or a shutdown is due: then it goes alone.
            let more = this.ending.is_none()
                && bytes.len() < *this.coalesce
                && !this.shutdown.as_ref().is_some_and(|l| l.is_triggered());
            let (bytes, events) = if more {
                coalesce(
                    this.stream,
                    cx,
                    bytes,
                    *this.coalesce,
                    this.pending,
                    this.ending,
                    this.on_error,
                )
            } else {
                (bytes, events)
            };
            this.tracker.sent(events, bytes.len());
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if let Some(reason) = this.ending.take() {
            return Poll::Ready(finish(this.tracker, this.shutdown, reason));
        }
        if let Some(listener) = this.shutdown.as_ref().filter(|l| l.is_triggered()) {
            let last = listener.final_frame().map(|bytes| (bytes, 1));
            return Poll::Ready(end_with(
                this.tracker,
                this.shutdown,
                this.ending,
                last,
                EndReason::Shutdown,
            ));
        }
        if let Some(deadline) = this.lifetime.as_mut() {
            if deadline.poll_expired(this.timer.as_ref(), cx).is_ready() {
                // Repeat the retry hint, so the client comes back when it was asked to.
                let hint = this
                    .retry
                    .map(|retry| (Event::default().retry(retry).encode().into_bytes(), 0));
                return Poll::Ready(end_with(
                    this.tracker,
                    this.shutdown,
                    this.ending,
                    hint,
                    EndReason::Lifetime,
                ));
            }
        }

        match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                this.heartbeat.activity();
                let first: Bytes = item.into().into_bytes();
                let (bytes, events) = if first.len() < *this.coalesce {
                    coalesce(
                        this.stream,
                        cx,
                        first,
                        *this.coalesce,
                        this.pending,
                        this.ending,
                        this.on_error,
                    )
                } else {
                    (first, 1)
                };
                this.tracker.sent(events, bytes.len());
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(err))) => {
                let (last, reason) = failure(err.into(), this.on_error);
                let last = last.map(|bytes| (bytes, 1));
                Poll::Ready(end_with(
                    this.tracker,
                    this.shutdown,
                    this.ending,
                    last,
                    reason,
                ))
            }
            Poll::Ready(None) => {
                Poll::Ready(finish(this.tracker, this.shutdown, EndReason::Completed))
            }
            Poll::Pending => {
                if let Some(beat) = this.heartbeat.poll_due(this.timer.as_ref(), cx) {
                    this.tracker.heartbeat(beat.len());
                    return Poll::Ready(Some(Ok(Frame::data(beat))));
                }
                if let Some(listener) = this.shutdown.as_ref() {
                    listener.register(cx);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tracker.is_finished()
    }
}

/// Pulls the events that are ready right now into one frame of at most `max` bytes.
fn coalesce<S, T, E>(
    mut stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    first: Bytes,
    max: usize,
    pending: &mut Option<(Bytes, u64)>,
    ending: &mut Option<EndReason>,
    on_error: &Option<OnError>,
) -> (Bytes, u64)
where
    S: Stream<Item = Result<T, E>>,
    T: Into<EncodedEvent>,
    E: Into<BoxError>,
{
    let mut buf: Option<BytesMut> = None;
    let mut events = 1;
    let mut len = first.len();
    while len < max {
        let next = match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => item.into().into_bytes(),
            Poll::Ready(Some(Err(err))) => {
                let (last, reason) = failure(err.into(), on_error);
                *ending = Some(reason);
                match last {
                    Some(last) if len + last.len() <= max => {
                        append(&mut buf, &first, &last);
                        events += 1;
                    }
                    Some(last) => *pending = Some((last, 1)),
                    None => {}
                }
                break;
            }
            Poll::Ready(None) => {
                *ending = Some(EndReason::Completed);
                break;
            }
            Poll::Pending => break,
        };
        if len + next.len() > max {
            *pending = Some((next, 1));
            break;
        }
        len += next.len();
        append(&mut buf, &first, &next);
        events += 1;
    }
    match buf {
        Some(buf) => (buf.freeze(), events),
        None => (first, events),
    }
}

fn append(buf: &mut Option<BytesMut>, first: &Bytes, next: &[u8]) {
    buf.get_or_insert_with(|| {
        let mut buf = BytesMut::with_capacity((first.len() + next.len()) * 2);
        buf.extend_from_slice(first);
        buf
    })
    .extend_from_slice(next);
}

/// The event to write for a stream error, and the reason to report.
fn failure(err: BoxError, on_error: &Option<OnError>) -> (Option<Bytes>, EndReason) {
    let last = on_error
        .as_ref()
        .and_then(|f| f(&*err))
        .map(|event| event.encode().into_bytes());
    (last, EndReason::Failed(Arc::from(err)))
}

/// Ends now, or after `last` if there is a last frame to write.
fn end_with(
    tracker: &mut Tracker,
    shutdown: &mut Option<ShutdownListener>,
    ending: &mut Option<EndReason>,
    last: Option<(Bytes, u64)>,
    reason: EndReason,
) -> Option<Result<Frame<Bytes>, Infallible>> {
    match last {
        Some((bytes, events)) => {
            tracker.sent(events, bytes.len());
            *ending = Some(reason);
            Some(Ok(Frame::data(bytes)))
        }
        None => finish(tracker, shutdown, reason),
    }
}

fn finish(
    tracker: &mut Tracker,
    shutdown: &mut Option<ShutdownListener>,
    reason: EndReason,
) -> Option<Result<Frame<Bytes>, Infallible>> {
    // Leave the shutdown's count of live streams as soon as the stream is over.
    shutdown.take();
    tracker.finish(reason);
    None
}

impl<S> fmt::Debug for SseBody<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseBody")
            .field("heartbeat", &self.heartbeat)
            .field("tracker", &self.tracker)
            .field("shutdown", &self.shutdown)
            .field("lifetime", &self.lifetime)
            .field("coalesce", &self.coalesce)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls once with a no-op waker: the frame's bytes, or `None` at the end.
    fn next(
        body: &mut SseBody<impl Stream<Item = Result<Event, Infallible>> + Unpin>,
    ) -> Option<Bytes> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => Some(frame.into_data().expect("data")),
            Poll::Ready(None) => None,
            Poll::Pending => panic!("every event is ready"),
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_idle_stream_stays_small() {
        // Per-connection state for idle connections; measured by examples/idle_conns.
        type Idle = SseBody<Infallibly<futures_util::stream::Pending<Event>>>;
        assert!(
            std::mem::size_of::<Idle>() <= 336,
            "{}",
            std::mem::size_of::<Idle>()
        );
    }

    #[test]
    fn an_end_handle_asked_for_late_still_gets_the_report() {
        let mut body = SseBody::from_events(futures_util::stream::iter([Event::message("a")]));
        assert_eq!(next(&mut body).unwrap(), "data: a\n\n");
        let handle = body.end_handle();
        assert!(!handle.is_ended());
        assert_eq!(next(&mut body), None);
        assert_eq!(handle.report().unwrap().reason, EndReason::Completed);
        assert_eq!(handle.report().unwrap().events, 1);
    }

    #[test]
    fn an_event_that_did_not_fit_starts_the_next_full_frame() {
        // Nine bytes each, twenty per frame: every frame holds two events, including
        // the one that overflowed the frame before it.
        let events = ["a", "b", "c", "d", "e"].map(|d| Ok(Event::message(d)));
        let mut body = SseBody::new(futures_util::stream::iter(events))
            .coalesce(20)
            .keep_alive(KeepAlive::disabled());
        let handle = body.end_handle();
        assert_eq!(next(&mut body).unwrap(), "data: a\n\ndata: b\n\n");
        assert_eq!(next(&mut body).unwrap(), "data: c\n\ndata: d\n\n");
        assert_eq!(next(&mut body).unwrap(), "data: e\n\n");
        assert_eq!(next(&mut body), None);
        let report = handle.report().expect("ended");
        assert_eq!((report.events, report.bytes), (5, 45));
        assert_eq!(report.reason, EndReason::Completed);
    }

    #[test]
    fn an_overflowing_event_goes_alone_once_shutdown_is_triggered() {
        let shutdown = Shutdown::new();
        let events = ["a", "b", "c", "d"].map(|d| Ok(Event::message(d)));
        let mut body = SseBody::new(futures_util::stream::iter(events))
            .coalesce(20)
            .keep_alive(KeepAlive::disabled())
            .with_shutdown(&shutdown);
        assert_eq!(next(&mut body).unwrap(), "data: a\n\ndata: b\n\n");
        shutdown.trigger();
        // `c` was already taken from the stream: it is written, then the stream ends.
        assert_eq!(next(&mut body).unwrap(), "data: c\n\n");
        assert_eq!(next(&mut body), None);
    }
}
