use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{boundary::Boundary, config::Config};
use crate::{
    error::BoxError,
    event::Event,
    stream::end::Outcome,
    stream::heartbeat::Heartbeat,
    stream::lifecycle::{Control, Lifecycle},
    stream::link::Link,
    stream::permit::Permit,
    stream::report::Reporter,
};

pin_project! {
    /// Response body of [`Sse`](super::Sse).
    ///
    /// A response that is not an event stream keeps its body, polled straight
    /// through. An event stream gets heartbeats at event boundaries, end
    /// reporting, shutdown and lifetime. A refused stream (`503`) is empty.
    ///
    /// Like tower-http's bodies, it accepts any inner body whose data is a
    /// [`Buf`] and whose error converts into a [`BoxError`]; data frames come out
    /// as [`Bytes`] (zero-copy when they were `Bytes`). A failure of the inner
    /// body comes out as a [`BodyError`], whose [`source`](Error::source) is
    /// the inner error; the same error is in the [`EndReport`](crate::EndReport).
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Plain {
            #[pin]
            body: B,
        },
        Stream {
            // Declared first, so dropped first: the inner body's end report reads
            // the layer's reason from the link after the layer has recorded it.
            #[pin]
            body: B,
            state: Box<State>,
        },
        Empty,
    }
}

/// Everything a stream needs beyond its body; boxed, so a plain body stays small.
struct State {
    boundary: Boundary,
    lifecycle: Lifecycle,
    /// The link to an `SseBody` inside, until it is known to write heartbeats.
    link: Option<Arc<Link>>,
}

impl<B> ResponseBody<B> {
    #[inline]
    pub(crate) fn plain(body: B) -> Self {
        Self {
            kind: Kind::Plain { body },
        }
    }

    pub(crate) fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    pub(crate) fn stream(
        body: B,
        config: &Config,
        mut reporter: Reporter,
        permit: Permit,
        link: Arc<Link>,
    ) -> Self {
        for on_end in &config.on_end {
            let on_end = on_end.clone();
            reporter.on_end(move |report| on_end(report));
        }
        reporter.observe();
        let mut lifecycle = Lifecycle::new(reporter, config.timer.clone());
        lifecycle.set_heartbeat(Some(Heartbeat::new(config.keep_alive.clone())));
        if let Some(shutdown) = &config.shutdown {
            lifecycle.set_shutdown(shutdown.listener());
        }
        if let Some(l) = config.lifetime {
            let hint = Event::default().retry(l.retry).encode().into_bytes();
            lifecycle.set_lifetime(l.after, Some(hint));
        }
        lifecycle.set_permit(permit);
        let state = State {
            boundary: Boundary::new(),
            lifecycle,
            link: Some(link),
        };
        Self {
            kind: Kind::Stream {
                body,
                state: Box::new(state),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: 'static,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame.map_data(to_bytes)))),
                Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Stream { body, state } => poll_stream(body, state, cx),
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            // Only once ended: the end must be seen to be reported as such.
            Kind::Stream { state, .. } => state.lifecycle.is_finished(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Plain { body } => body.size_hint(),
            Kind::Stream { .. } => SizeHint::default(),
            Kind::Empty => SizeHint::with_exact(0),
        }
    }
}

/// A data frame's bytes, without a copy for `Bytes` and for what converts
/// without one (`Vec<u8>`, `&'static [u8]`, `Bytes` inside other `Buf`s).
#[inline]
fn to_bytes<D: Buf + 'static>(data: D) -> Bytes {
    // Most bodies' data is `Bytes` already: handed over as it is (the check is
    // on types, decided at compile time), where `copy_to_bytes` would split it
    // and drop the empty rest.
    let mut slot = Some(data);
    match (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Bytes>>() {
        Some(bytes) => bytes.take().unwrap_or_default(),
        None => slot.map_or_else(Bytes::new, |mut data| data.copy_to_bytes(data.remaining())),
    }
}

/// Out of line: the plain path of `poll_frame` stays small enough to inline.
#[inline(never)]
fn poll_stream<B>(
    body: Pin<&mut B>,
    state: &mut State,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Data: 'static,
    B::Error: Into<BoxError>,
{
    let State {
        boundary,
        lifecycle,
        link,
    } = state;
    if let Some(control) = lifecycle.poll_control(boundary.at_boundary(), cx) {
        return Poll::Ready(match control {
            Control::Write(bytes) => Some(Ok(Frame::data(bytes))),
            Control::End => None,
        });
    }
    match body.poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => {
            let frame = frame.map_data(to_bytes);
            if let Some(data) = frame.data_ref() {
                let events = boundary.feed(data);
                lifecycle.data(events, data.len());
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(Some(Err(err))) => {
            let err: Arc<dyn Error + Send + Sync> = Arc::from(err.into());
            lifecycle.finish(Outcome::Failed(err.clone()));
            Poll::Ready(Some(Err(Box::new(BodyError(err)))))
        }
        Poll::Ready(None) => {
            // An `SseBody` inside knows why it ended (a failure, its own shutdown).
            lifecycle.finish(Outcome::InnerEnded);
            Poll::Ready(None)
        }
        Poll::Pending => {
            if link.as_ref().is_some_and(|l| l.is_polled()) {
                // An `SseBody` inside writes the heartbeats (with our `KeepAlive`
                // unless it has its own): one writer per stream.
                lifecycle.set_heartbeat(None);
                *link = None;
            }
            match lifecycle.poll_idle(boundary.at_boundary(), cx) {
                Some(beat) => Poll::Ready(Some(Ok(Frame::data(beat)))),
                None => Poll::Pending,
            }
        }
    }
}

/// The error of a [`ResponseBody`] whose inner body failed; its
/// [`source`](Error::source) is the inner body's error, also reported in the
/// stream's [`EndReport`](crate::EndReport) as
/// [`EndReason::Failed`](crate::EndReason::Failed).
#[derive(Clone)]
pub struct BodyError(Arc<dyn Error + Send + Sync>);

impl BodyError {
    /// The inner body's error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for BodyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Plain { .. } => "plain",
            Kind::Stream { .. } => "stream",
            Kind::Empty => "empty",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("boundary", &self.boundary)
            .field("lifecycle", &self.lifecycle)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        future::Future,
        sync::atomic::{AtomicU64, Ordering},
        time::Duration,
    };

    use super::*;
    use crate::{
        layer::config::Lifetime,
        stream::end::EndHandle,
        stream::end::EndReason,
        stream::heartbeat::KeepAlive,
        stream::shutdown::Shutdown,
        timer::{Sleep, Timer},
    };

    #[derive(Debug, PartialEq)]
    struct MockError;

    impl fmt::Display for MockError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("mock failed")
        }
    }

    impl Error for MockError {}

    type Step = Poll<Option<Result<Frame<Bytes>, MockError>>>;

    /// Plays a script of polls, counting them; `Pending` once the script is over.
    struct Mock {
        script: VecDeque<Step>,
        polls: usize,
    }

    impl Body for Mock {
        type Data = Bytes;
        type Error = MockError;

        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Step {
            self.polls += 1;
            self.script.pop_front().unwrap_or(Poll::Pending)
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(7)
        }
    }

    fn data(bytes: &'static [u8]) -> Step {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(bytes)))))
    }

    fn mock(script: impl IntoIterator<Item = Step>) -> Mock {
        Mock {
            script: script.into_iter().collect(),
            polls: 0,
        }
    }

    /// A manual clock, in milliseconds: a sleep is done once the clock reaches it.
    #[derive(Debug, Default)]
    struct Manual {
        now: Arc<AtomicU64>,
    }

    struct ManualSleep {
        now: Arc<AtomicU64>,
        at: u64,
    }

    impl Future for ManualSleep {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.now.load(Ordering::SeqCst) >= self.at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    impl Sleep for ManualSleep {
        fn reset(mut self: Pin<&mut Self>, after: Duration) {
            self.at = self.now.load(Ordering::SeqCst).saturating_add(ms(after));
        }
    }

    impl Timer for Manual {
        fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>> {
            let at = self.now.load(Ordering::SeqCst).saturating_add(ms(after));
            Box::pin(ManualSleep {
                now: self.now.clone(),
                at,
            })
        }
    }

    struct Harness {
        body: Pin<Box<ResponseBody<Mock>>>,
        handle: EndHandle,
        clock: Arc<AtomicU64>,
    }

    fn harness(script: Mock, config: Config, own_heartbeat: bool) -> Harness {
        let timer = Manual::default();
        let clock = timer.now.clone();
        let config = Config {
            timer: Some(Arc::new(timer)),
            ..config
        };
        let handle = EndHandle::new();
        let permit = config.try_acquire().unwrap();
        let link = Arc::new(Link::default());
        if own_heartbeat {
            // What an `SseBody` inside does on its first poll.
            link.mark_polled();
        }
        let reporter = Reporter::new(handle.clone());
        let body = ResponseBody::stream(script, &config, reporter, permit, link);
        Harness {
            body: Box::pin(body),
            handle,
            clock,
        }
    }

    impl Harness {
        fn advance(&self, by: Duration) {
            self.clock.fetch_add(ms(by), Ordering::SeqCst);
        }

        fn poll(&mut self) -> Poll<Option<Result<Bytes, String>>> {
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            self.poll_with(&mut cx)
        }

        fn poll_with(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
            self.body.as_mut().poll_frame(cx).map(|f| {
                f.map(|r| {
                    r.map(|frame| frame.into_data().expect("a data frame"))
                        .map_err(|e| e.to_string())
                })
            })
        }

        fn polls(&self) -> usize {
            match &self.body.kind {
                Kind::Stream { body, .. } | Kind::Plain { body } => body.polls,
                Kind::Empty => 0,
            }
        }
    }

    fn ready(bytes: &[u8]) -> Poll<Option<Result<Bytes, String>>> {
        Poll::Ready(Some(Ok(Bytes::copy_from_slice(bytes))))
    }

    #[test]
    fn data_frames_come_out_as_bytes_without_a_copy_when_they_were_bytes() {
        let bytes = Bytes::from(vec![b'x'; 64]);
        let out = to_bytes(bytes.clone());
        assert_eq!(out.as_ptr(), bytes.as_ptr(), "the same allocation");
        assert_eq!(out, bytes);
        // Other `Buf`s are copied out whole, wherever they stand.
        assert_eq!(to_bytes(&b"static"[..]), Bytes::from_static(b"static"));
        let mut partly_read = std::io::Cursor::new(b"skip-rest".to_vec());
        partly_read.advance(5);
        assert_eq!(to_bytes(partly_read), Bytes::from_static(b"rest"));
        let chained = Bytes::from_static(b"ab").chain(Bytes::from_static(b"cd"));
        assert_eq!(to_bytes(chained), Bytes::from_static(b"abcd"));
        assert_eq!(to_bytes(Bytes::new()), Bytes::new());
    }

    #[test]
    fn plain_bodies_are_polled_straight_through() {
        let mut body = Box::pin(ResponseBody::plain(mock([
            data(b"hello"),
            Poll::Pending,
            Poll::Ready(None),
        ])));
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert_eq!(body.size_hint().exact(), Some(7));
        let frame = body.as_mut().poll_frame(&mut cx);
        assert!(matches!(frame, Poll::Ready(Some(Ok(f))) if f.data_ref().unwrap() == "hello"));
        assert!(body.as_mut().poll_frame(&mut cx).is_pending());
        assert!(matches!(
            body.as_mut().poll_frame(&mut cx),
            Poll::Ready(None)
        ));
        let Kind::Plain { body: inner } = &body.kind else {
            unreachable!()
        };
        assert_eq!(inner.polls, 3);
    }

    #[test]
    fn heartbeats_wait_for_an_event_boundary() {
        let script = mock([
            Poll::Pending,
            data(b"data: a"),
            Poll::Pending,
            data(b"\r\n"),
            Poll::Pending,
            data(b"\r\n"),
            Poll::Pending,
            Poll::Pending,
            Poll::Ready(None),
        ]);
        let mut h = harness(script, Config::default(), false);
        assert!(h.poll().is_pending(), "idle: the heartbeat is armed");
        h.advance(Duration::from_secs(3600)); // and overdue from here on
        assert_eq!(h.poll(), ready(b"data: a"));
        assert!(h.poll().is_pending(), "no heartbeat inside an event");
        assert_eq!(h.poll(), ready(b"\r\n"));
        assert!(
            h.poll().is_pending(),
            "no heartbeat after a line of an event"
        );
        assert_eq!(h.poll(), ready(b"\r\n"));
        assert!(
            h.poll().is_pending(),
            "the idle time restarts after the event"
        );
        h.advance(KeepAlive::DEFAULT_INTERVAL);
        assert_eq!(h.poll(), ready(b":\n\n"));
        assert_eq!(h.polls(), 8);
        assert_eq!(h.poll(), Poll::Ready(None));
        assert!(h.body.is_end_stream());
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason, EndReason::Completed);
        assert_eq!((report.events, report.heartbeats, report.bytes), (1, 1, 14));
        // After the end: `None` again, and the inner body is left alone.
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(h.polls(), 9);
    }

    #[test]
    fn no_heartbeat_when_the_body_has_its_own() {
        let mut h = harness(mock([data(b":\n\n")]), Config::default(), true);
        h.advance(Duration::from_secs(3600));
        assert_eq!(h.poll(), ready(b":\n\n"));
        assert!(h.poll().is_pending());
        assert!(h.poll().is_pending());
        assert_eq!(h.polls(), 3);
        drop(h.body);
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason, EndReason::ClientGone);
        assert_eq!((report.events, report.heartbeats, report.bytes), (0, 0, 3));
    }

    #[test]
    fn no_heartbeat_when_disabled() {
        let config = Config {
            keep_alive: KeepAlive::disabled(),
            ..Config::default()
        };
        let mut h = harness(mock([]), config, false);
        h.advance(Duration::from_secs(3600));
        assert!(h.poll().is_pending());
        assert!(h.poll().is_pending());
    }

    #[test]
    fn errors_pass_through_and_are_reported() {
        let script = mock([data(b"data: a\n\n"), Poll::Ready(Some(Err(MockError)))]);
        let mut h = harness(script, Config::default(), false);
        assert_eq!(h.poll(), ready(b"data: a\n\n"));
        assert_eq!(h.poll(), Poll::Ready(Some(Err("mock failed".to_owned()))));
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(h.polls(), 2);
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason.to_string(), "failed: mock failed");
        assert_eq!(report.events, 1);
    }

    #[test]
    fn lifetime_ends_at_the_next_boundary_with_a_retry_hint() {
        let config = Config {
            keep_alive: KeepAlive::disabled(),
            lifetime: Some(Lifetime {
                after: Duration::from_secs(60),
                retry: Duration::from_millis(1500),
            }),
            ..Config::default()
        };
        let script = mock([
            data(b"data: a\n"),
            Poll::Pending,
            data(b"\n"),
            data(b"data: b\n\n"),
        ]);
        let mut h = harness(script, config, false);
        assert_eq!(h.poll(), ready(b"data: a\n"));
        h.advance(Duration::from_secs(60)); // the lifetime is over, mid-event
        assert!(h.poll().is_pending());
        assert_eq!(h.poll(), ready(b"\n"));
        assert_eq!(h.poll(), ready(b"retry: 1500\n\n"));
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(h.polls(), 3, "the next event is never read");
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason, EndReason::Lifetime);
        assert_eq!((report.events, report.bytes), (1, 22));
    }

    #[test]
    fn shutdown_ends_at_the_next_boundary_with_the_last_event() {
        let shutdown = Shutdown::new();
        let config = Config {
            shutdown: Some(shutdown.clone()),
            ..Config::default()
        };
        let script = mock([data(b"data: a"), data(b"\n\n"), data(b"data: b\n\n")]);
        let mut h = harness(script, config, false);
        assert_eq!(shutdown.live_streams(), 1);
        assert_eq!(h.poll(), ready(b"data: a"));
        shutdown.trigger_with(Event::message("bye").encode());
        assert_eq!(h.poll(), ready(b"\n\n"));
        assert_eq!(h.poll(), ready(b"data: bye\n\n"));
        assert_eq!(shutdown.live_streams(), 1);
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(shutdown.live_streams(), 0);
        assert_eq!(h.polls(), 2);
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason, EndReason::Shutdown);
        assert_eq!(report.events, 2);
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_shutdown_mid_event_does_not_spin_and_ends_after_the_grace_period() {
        let shutdown = Shutdown::new();
        let config = Config {
            shutdown: Some(shutdown.clone()),
            ..Config::default()
        };
        // The producer stalls in the middle of an event.
        let mut h = harness(mock([data(b"data: a\n")]), config, false);
        assert_eq!(h.poll(), ready(b"data: a\n"));
        shutdown.trigger();
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(h.poll_with(&mut cx).is_pending());
        }
        // Used to wake itself on every poll (the fired shutdown re-woke it): a
        // busy loop polling the stalled producer without end.
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert_eq!(h.polls(), 4);
        h.advance(Shutdown::DEFAULT_GRACE); // the grace period is over
        assert_eq!(h.poll_with(&mut cx), Poll::Ready(None));
        assert_eq!(h.handle.report().unwrap().reason, EndReason::Shutdown);
        assert_eq!(shutdown.live_streams(), 0);
    }

    #[test]
    fn the_slot_is_freed_at_the_end_not_at_drop() {
        let config = Config::default();
        let live = config.live.clone();
        let mut h = harness(mock([Poll::Ready(None)]), config, false);
        assert_eq!(live.load(Ordering::SeqCst), 1);
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    /// A body waiting for events that never come, as a handler would make it.
    type Idle = crate::body::SseBody<crate::body::OkEvents<futures_util::stream::Pending<Event>>>;

    /// The frames a client gets in `window` (paused time) from a body made by
    /// `set` in the handler, under an `SseLayer` with `layer`'s heartbeat, or
    /// alone without one.
    async fn heard(
        layer: Option<KeepAlive>,
        set: fn(Idle) -> Idle,
        window: Duration,
    ) -> Vec<Bytes> {
        use http_body_util::BodyExt;
        use tower::{ServiceBuilder, ServiceExt};

        let body: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>> = match layer {
            Some(keep_alive) => {
                let svc = ServiceBuilder::new()
                    .layer(crate::layer::SseLayer::new().keep_alive(keep_alive))
                    .service_fn(move |_: http::Request<()>| {
                        let body = set(crate::body::SseBody::from_events(
                            futures_util::stream::pending(),
                        ));
                        async move { Ok::<_, std::convert::Infallible>(body.into_response()) }
                    });
                let req = http::Request::get("/sse")
                    .header("accept", "text/event-stream")
                    .body(())
                    .unwrap();
                let res = svc.oneshot(req).await.unwrap();
                Box::pin(res.into_body())
            }
            None => {
                let body = set(crate::body::SseBody::from_events(
                    futures_util::stream::pending(),
                ));
                Box::pin(body.map_err(|never| match never {}))
            }
        };
        let mut body = body;
        let end = tokio::time::Instant::now() + window;
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = tokio::time::timeout_at(end, body.frame()).await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        frames
    }

    fn layer_beat() -> KeepAlive {
        KeepAlive::new()
            .interval(Duration::from_millis(100))
            .text("layer")
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_with_heartbeats_disabled_gets_the_layers() {
        // Used to write none at all: the body's `disabled` won, and the layer
        // left the heartbeats to the body (the chat example, issue 17).
        let disabled: fn(Idle) -> Idle = |b| b.keep_alive(KeepAlive::disabled());
        let unset: fn(Idle) -> Idle = |b| b;
        for set in [disabled, unset] {
            let frames = heard(Some(layer_beat()), set, Duration::from_millis(1050)).await;
            assert_eq!(frames, vec![Bytes::from_static(b": layer\n\n"); 10]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_heartbeats_there_are_none_even_under_a_layer() {
        let never: fn(Idle) -> Idle = |b| b.without_heartbeats();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            heard(Some(layer_beat()), never, hour).await,
            Vec::<Bytes>::new()
        );
        // Without a layer, `disabled` and `without_heartbeats` both mean none.
        let disabled: fn(Idle) -> Idle = |b| b.keep_alive(KeepAlive::disabled());
        for set in [disabled, never] {
            assert_eq!(heard(None, set, hour).await, Vec::<Bytes>::new());
        }
        // The last setting wins.
        let again: fn(Idle) -> Idle = |b| b.without_heartbeats().keep_alive(KeepAlive::disabled());
        let frames = heard(Some(layer_beat()), again, Duration::from_millis(250)).await;
        assert_eq!(frames.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_with_its_own_interval_wins_over_the_layers() {
        let own: fn(Idle) -> Idle = |b| {
            b.keep_alive(
                KeepAlive::new()
                    .interval(Duration::from_millis(300))
                    .text("body"),
            )
        };
        let frames = heard(Some(layer_beat()), own, Duration::from_millis(1050)).await;
        assert_eq!(frames, vec![Bytes::from_static(b": body\n\n"); 3]);
        // Without a layer, the body's own; with nothing set, every 15 s.
        let frames = heard(None, own, Duration::from_millis(1050)).await;
        assert_eq!(frames.len(), 3);
        let unset: fn(Idle) -> Idle = |b| b;
        let frames = heard(None, unset, Duration::from_secs(31)).await;
        assert_eq!(frames, vec![Bytes::from_static(b":\n\n"); 2]);
    }

    #[test]
    fn empty_body() {
        let body = ResponseBody::<Mock>::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
