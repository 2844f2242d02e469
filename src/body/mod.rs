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

use bytes::Bytes;
use futures_core::Stream;
use http_body::{Body, Frame};
use pin_project_lite::pin_project;

mod coalesce;
mod error;

pub(crate) use self::error::{failure, OnError};
use crate::error::BoxError;

use crate::{
    body::coalesce::{coalesce, Coalesced, Leftover},
    event::EncodedEvent,
    event::Event,
    request_info::RequestInfo,
    stream::end::{EndHandle, EndReport, Outcome},
    stream::heartbeat::{heartbeat_rule, BodyHeartbeat, Heartbeat, HeartbeatSource, KeepAlive},
    stream::lifecycle::{Control, Lifecycle},
    stream::link::{Link, LinkExt},
    stream::report::Reporter,
    stream::shutdown::Shutdown,
    timer::{default_timer, Timer},
};

/// Ready events are joined into one frame up to this many bytes by default.
const DEFAULT_COALESCE: u32 = 16 * 1024;

pin_project! {
    /// An `http_body::Body` that writes a stream of events as `text/event-stream`.
    ///
    /// The stream yields `Result<T, E>` where `T` converts into an
    /// [`EncodedEvent`] ([`Event`] does, and so does an `EncodedEvent` shared by a
    /// broadcast hub, `tower-sse-hub`) and `E` into a [`BoxError`]. For a stream of plain
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
        // Heartbeats, shutdown, lifetime and the end report: shared with the layer.
        lifecycle: Lifecycle,
        on_error: Option<OnError>,
        // Written before anything else: the retry hint and opening comment (boxed:
        // rarely set, and an `Event` is large).
        first: Option<Box<Event>>,
        // Repeated before a planned end (lifetime), so the client comes back.
        retry: Option<Duration>,
        // What the last frame left over, written before the stream is polled again.
        leftover: Leftover,
        // A frame limit (`u32`: no frame needs 4 GiB, and idle bodies stay small).
        coalesce: u32,
        // What the body was told about heartbeats (see `heartbeat_rule`).
        heartbeat: BodyHeartbeat,
        polled: bool,
    }
}

impl<S> SseBody<S> {
    /// A body for a stream of `Result`s. See [`from_events`](Self::from_events) for
    /// streams that cannot fail.
    ///
    /// Made while an [`SseLayer`](crate::SseLayer)'s service handles a request
    /// (in the handler), the body is linked to the layer; see
    /// [the heartbeat rule](crate::layer#one-heartbeat-rule).
    pub fn new(stream: S) -> Self {
        let mut reporter = Reporter::without_handle();
        if let Some(link) = Link::claim() {
            // Made in a handler under `SseLayer`: see `link.rs`.
            reporter.set_link(link);
        }
        let mut lifecycle = Lifecycle::new(reporter, default_timer());
        lifecycle.set_heartbeat(Some(Heartbeat::new(KeepAlive::new())));
        Self {
            stream,
            lifecycle,
            on_error: None,
            first: None,
            retry: None,
            leftover: Leftover::default(),
            coalesce: DEFAULT_COALESCE,
            heartbeat: BodyHeartbeat::Unset,
            polled: false,
        }
    }

    /// Sets the body's own heartbeat, which wins over an
    /// [`SseLayer`](crate::SseLayer)'s.
    ///
    /// [`KeepAlive::disabled`] means "this body sends no heartbeat of its own":
    /// under an `SseLayer` the layer's heartbeats are sent; without a layer, none
    /// are. To have no heartbeats even under a layer, use
    /// [`without_heartbeats`](Self::without_heartbeats). See
    /// [the heartbeat rule](crate::layer#one-heartbeat-rule). The last of the two
    /// calls wins.
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.heartbeat = if keep_alive.frame().is_some() {
            BodyHeartbeat::Own
        } else {
            BodyHeartbeat::Disabled
        };
        self.lifecycle
            .set_heartbeat(Some(Heartbeat::new(keep_alive)));
        self
    }

    /// No heartbeats on this stream, from the body or from an
    /// [`SseLayer`](crate::SseLayer) around it: the one way to turn heartbeats
    /// off everywhere for a stream (a layer's own
    /// [`keep_alive`](crate::SseLayer::keep_alive) with [`KeepAlive::disabled`]
    /// turns them off for all its streams).
    ///
    /// Without heartbeats, a proxy may time an idle stream out, and a client that
    /// vanished without closing its connection is only noticed at the next event.
    /// The layer must find the body to honour this: make the body in the handler,
    /// or answer with [`into_response`](Self::into_response) (see
    /// [the heartbeat rule](crate::layer#one-heartbeat-rule)). The last of this
    /// and [`keep_alive`](Self::keep_alive) wins.
    pub fn without_heartbeats(mut self) -> Self {
        self.heartbeat = BodyHeartbeat::Never;
        self.lifecycle.set_heartbeat(None);
        self
    }

    /// Sets the timer for heartbeats and the lifetime. With the `tokio` feature
    /// (default) tokio's timer is used; without it, and without a timer set here,
    /// heartbeats and the lifetime are off.
    pub fn timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.lifecycle.set_timer(timer);
        self
    }

    /// Sends `retry: MILLISECONDS` at once, telling the client how long to wait
    /// before reconnecting.
    pub fn retry(mut self, retry: Duration) -> Self {
        let first = self.first.take().unwrap_or_default();
        self.first = Some(Box::new(first.retry(retry)));
        self.retry = Some(retry);
        if let Some(frame) = self.lifecycle.lifetime_frame_mut() {
            *frame = Some(retry_frame(retry));
        }
        self
    }

    /// Sends a comment at once, so the client and any proxy see the stream open
    /// before the first event.
    pub fn comment(mut self, text: impl Into<String>) -> Self {
        let first = self.first.take().unwrap_or_default();
        self.first = Some(Box::new(first.comment(text)));
        self
    }

    /// Joins events that are ready together into frames of at most `max_bytes`
    /// (values above 4 GiB count as 4 GiB). `0` writes one frame per event.
    pub fn coalesce(mut self, max_bytes: usize) -> Self {
        self.coalesce = u32::try_from(max_bytes).unwrap_or(u32::MAX);
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
        self.lifecycle.on_end(f);
        self
    }

    /// A handle that learns how the stream ended; see [`EndHandle`].
    pub fn end_handle(&self) -> EndHandle {
        self.lifecycle.end_handle().clone()
    }

    /// Reports the end to `handle`, one created before the body (for example by
    /// the layer, or by a handler that hands it to its event producer first).
    pub fn with_end_handle(mut self, handle: EndHandle) -> Self {
        self.lifecycle.set_end_handle(handle);
        self
    }

    /// Ends the stream when `shutdown` is triggered, after writing its last event.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.lifecycle.set_shutdown(shutdown.listener());
        self
    }

    /// Ends the stream cleanly once it has been open for `lifetime`, writing a
    /// `retry:` hint if [`retry`](Self::retry) was set, so the client comes back,
    /// possibly to another server.
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        let frame = self.retry.map(retry_frame);
        self.lifecycle.set_lifetime(lifetime, frame);
        self
    }

    /// Which request the stream answers, for its [`EndReport`] and tracing span.
    /// Under an [`SseLayer`](crate::SseLayer) the layer's report carries it
    /// already.
    pub fn request_info(mut self, info: RequestInfo) -> Self {
        self.lifecycle.set_request(Arc::new(info));
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
    /// The response also carries the body's link to an
    /// [`SseLayer`](crate::SseLayer) around the service, so that the stream has
    /// one heartbeat writer even when the body was made outside the handler.
    pub fn into_response(mut self) -> http::Response<Self> {
        let link = self.lifecycle.link_or_new();
        let mut res = crate::response::response(self);
        res.extensions_mut().insert(LinkExt(link));
        res
    }
}

/// The first poll: settles what the link to a layer decides.
fn start(lifecycle: &mut Lifecycle, heartbeat: BodyHeartbeat) {
    let link = lifecycle.link().cloned();
    if let Some(link) = &link {
        // From now on the body writes the stream's heartbeats, if any.
        link.mark_polled();
    }
    match heartbeat_rule(heartbeat, link.as_deref().and_then(Link::keep_alive)) {
        HeartbeatSource::Body => {}
        HeartbeatSource::Layer(keep_alive) => {
            lifecycle.set_heartbeat(Some(Heartbeat::new(keep_alive.clone())));
        }
        HeartbeatSource::Nothing => lifecycle.set_heartbeat(None),
    }
    let layered = link.is_some_and(|link| link.is_layered());
    if !layered {
        // Under a layer, the layer observes the stream (it sees every byte).
        lifecycle.observe();
    }
}

fn retry_frame(retry: Duration) -> Bytes {
    Event::default().retry(retry).encode().into_bytes()
}

pin_project! {
    /// Turns a stream of `T` into a stream of `Ok::<T, Infallible>(T)`.
    #[derive(Debug)]
    pub struct OkEvents<S> {
        #[pin]
        stream: S,
    }
}

impl<S: Stream> Stream for OkEvents<S> {
    type Item = Result<S::Item, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().stream.poll_next(cx).map(|item| item.map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl<S> SseBody<OkEvents<S>> {
    /// A body for a stream that cannot fail, of [`Event`]s or [`EncodedEvent`]s.
    pub fn from_events(stream: S) -> Self {
        Self::new(OkEvents { stream })
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
        let lifecycle = this.lifecycle;
        let limit = *this.coalesce as usize;
        if !*this.polled {
            *this.polled = true;
            start(lifecycle, *this.heartbeat);
        }
        if lifecycle.is_finished() {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            let bytes = first.encode().into_bytes();
            lifecycle.opening(bytes.len());
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if let Some(bytes) = this.leftover.event.take() {
            // An event that did not fit in the last frame starts the next one, unless
            // the stream is over or a shutdown is due: then it goes alone.
            let more = this.leftover.parts.is_none()
                && !lifecycle.is_ending()
                && bytes.len() < limit
                && !lifecycle.shutdown_triggered();
            let (bytes, events) = if more {
                let filled = coalesce(this.stream, cx, bytes, limit, this.leftover, this.on_error);
                end_after(lifecycle, filled)
            } else {
                (bytes, 1)
            };
            lifecycle.data(events, bytes.len());
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        // The rest of an event made of parts: each as it is, nothing between.
        if let Some(rest) = &mut this.leftover.parts {
            if let Some(part) = rest.next_part() {
                lifecycle.data(0, part.len());
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
            this.leftover.parts = None;
        }
        // Between two polls the body is always at an event boundary.
        if let Some(control) = lifecycle.poll_control(true, cx) {
            return Poll::Ready(written(control));
        }

        match this.stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                let (first, rest) = item.into().into_first();
                let (bytes, events) = if rest.is_some() {
                    this.leftover.parts = rest;
                    (first, 1)
                } else if first.len() < limit {
                    let filled =
                        coalesce(this.stream, cx, first, limit, this.leftover, this.on_error);
                    end_after(lifecycle, filled)
                } else {
                    (first, 1)
                };
                lifecycle.data(events, bytes.len());
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(err))) => {
                let (last, reason) = failure(err.into(), this.on_error);
                let last = last.map(|bytes| (bytes, 1));
                Poll::Ready(written(lifecycle.end_with(last, reason)))
            }
            Poll::Ready(None) => {
                lifecycle.finish(Outcome::Finished);
                Poll::Ready(None)
            }
            Poll::Pending => match lifecycle.poll_idle(true, cx) {
                Some(beat) => Poll::Ready(Some(Ok(Frame::data(beat)))),
                None => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lifecycle.is_finished()
    }
}

/// A coalesced frame, and its events; the stream ends after it if the
/// producer ended meanwhile.
fn end_after(lifecycle: &mut Lifecycle, filled: Coalesced) -> (Bytes, u64) {
    if let Some(end) = filled.end {
        lifecycle.end_after_frame(end);
    }
    (filled.frame, filled.events)
}

fn written(control: Control) -> Option<Result<Frame<Bytes>, Infallible>> {
    match control {
        Control::Write(bytes) => Some(Ok(Frame::data(bytes))),
        Control::End => None,
    }
}

impl<S> fmt::Debug for SseBody<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseBody")
            .field("lifecycle", &self.lifecycle)
            .field("coalesce", &self.coalesce)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::end::EndReason;

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
        // Per-connection state for idle connections; measured by tools/src/bin/idle_conns.rs.
        // 336 before the shared lifecycle; the link, request context and metrics
        // handles of the end report cost 24 more.
        type Idle = SseBody<OkEvents<futures_util::stream::Pending<Event>>>;
        assert!(
            std::mem::size_of::<Idle>() <= 360,
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
