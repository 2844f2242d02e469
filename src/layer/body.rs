use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{
    boundary::Boundary,
    config::{Config, Permit},
};
use crate::{
    end::Tracker,
    keep_alive::Heartbeat,
    shutdown::ShutdownListener,
    timer::{Deadline, Timer},
    EndHandle, EndReason, Event,
};

pin_project! {
    /// Response body of [`Sse`](super::Sse).
    ///
    /// A response that is not an event stream keeps its body, polled straight
    /// through. An event stream gets heartbeats at event boundaries, end
    /// reporting, shutdown and lifetime. A refused stream (`503`) is empty.
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
    /// `None` when the body sends its own heartbeats, or they are off.
    heartbeat: Option<Heartbeat>,
    timer: Option<Arc<dyn Timer>>,
    tracker: Tracker,
    shutdown: Option<ShutdownListener>,
    lifetime: Option<(Deadline, Bytes)>,
    /// Set when the stream must end, waiting for an event boundary: the reason,
    /// and a last frame to write (with its event count) if any.
    stopping: Option<(EndReason, Option<(Bytes, u64)>)>,
    /// The last frame was written; the stream ends at the next poll.
    ending: Option<EndReason>,
    permit: Option<Permit>,
}

impl<B> ResponseBody<B> {
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
        handle: EndHandle,
        permit: Permit,
        own_heartbeat: bool,
    ) -> Self {
        let mut tracker = Tracker::new(handle);
        if let Some(on_end) = &config.on_end {
            let on_end = on_end.clone();
            tracker.on_end(move |report| on_end(report));
        }
        let heartbeat = (!own_heartbeat).then(|| Heartbeat::new(config.keep_alive.clone()));
        let lifetime = config.lifetime.map(|l| {
            let hint = Event::default().retry(l.retry).encode().into_bytes();
            (Deadline::new(l.after), hint)
        });
        let state = State {
            boundary: Boundary::new(),
            heartbeat: heartbeat.filter(Heartbeat::is_enabled),
            timer: config.timer.clone(),
            tracker,
            shutdown: config.shutdown.as_ref().map(|s| s.listener()),
            lifetime,
            stopping: None,
            ending: None,
            permit: Some(permit),
        };
        Self {
            kind: Kind::Stream {
                body,
                state: Box::new(state),
            },
        }
    }
}

impl State {
    fn finish(&mut self, reason: EndReason) {
        // Leave the counts of live streams as soon as the stream is over.
        self.shutdown = None;
        self.permit = None;
        self.tracker.finish(reason);
    }

    /// Notices a shutdown or the end of the lifetime (registering for both).
    fn check_stop(&mut self, cx: &mut Context<'_>) {
        if let Some(listener) = self.shutdown.as_ref().filter(|l| l.is_triggered()) {
            let last = listener.final_frame().map(|bytes| (bytes, 1));
            self.stopping = Some((EndReason::Shutdown, last));
        } else if let Some((deadline, hint)) = self.lifetime.as_mut() {
            if deadline.poll_expired(self.timer.as_ref(), cx).is_ready() {
                self.stopping = Some((EndReason::Lifetime, Some((hint.clone(), 0))));
            }
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Plain { body } => body.poll_frame(cx),
            KindProj::Stream { body, state } => poll_stream(body, state, cx),
            KindProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Plain { body } => body.is_end_stream(),
            // Only once ended: the end must be seen to be reported as such.
            Kind::Stream { state, .. } => state.tracker.is_finished(),
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

fn poll_stream<B>(
    body: Pin<&mut B>,
    state: &mut State,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body<Data = Bytes>,
    B::Error: fmt::Display,
{
    if state.tracker.is_finished() {
        return Poll::Ready(None);
    }
    if let Some(reason) = state.ending.take() {
        state.finish(reason);
        return Poll::Ready(None);
    }
    if state.stopping.is_none() {
        state.check_stop(cx);
    }
    if state.boundary.at_boundary() {
        if let Some((reason, last)) = state.stopping.take() {
            return Poll::Ready(match last {
                Some((bytes, events)) => {
                    state.tracker.sent(events, bytes.len());
                    state.ending = Some(reason);
                    Some(Ok(Frame::data(bytes)))
                }
                None => {
                    state.finish(reason);
                    None
                }
            });
        }
    }
    match body.poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => {
            if let Some(data) = frame.data_ref() {
                let events = state.boundary.feed(data);
                state.tracker.sent(events, data.len());
                if let Some(heartbeat) = state.heartbeat.as_mut() {
                    heartbeat.activity();
                }
            }
            Poll::Ready(Some(Ok(frame)))
        }
        Poll::Ready(Some(Err(err))) => {
            let reason = EndReason::Failed(Arc::new(BodyFailed(err.to_string())));
            state.finish(reason);
            Poll::Ready(Some(Err(err)))
        }
        Poll::Ready(None) => {
            state.finish(EndReason::Completed);
            Poll::Ready(None)
        }
        Poll::Pending => {
            if state.stopping.is_none() && state.boundary.at_boundary() {
                if let Some(heartbeat) = state.heartbeat.as_mut() {
                    if let Some(beat) = heartbeat.poll_due(state.timer.as_ref(), cx) {
                        state.tracker.heartbeat(beat.len());
                        return Poll::Ready(Some(Ok(Frame::data(beat))));
                    }
                }
            }
            if let Some(listener) = state.shutdown.as_ref() {
                listener.register(cx);
            }
            Poll::Pending
        }
    }
}

/// The reason reported when the inner body fails: its error's message.
#[derive(Debug)]
struct BodyFailed(String);

impl fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for BodyFailed {}

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
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        future::Future,
        sync::atomic::{AtomicBool, Ordering},
        time::Duration,
    };

    use super::*;
    use crate::{
        layer::config::Lifetime,
        timer::{Sleep, Timer},
        KeepAlive, Shutdown,
    };

    #[derive(Debug, PartialEq)]
    struct MockError;

    impl fmt::Display for MockError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("mock failed")
        }
    }

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

    /// A timer whose sleeps are all done once `fired` is set.
    #[derive(Debug, Default)]
    struct Manual {
        fired: Arc<AtomicBool>,
    }

    struct ManualSleep(Arc<AtomicBool>);

    impl Future for ManualSleep {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    impl Sleep for ManualSleep {
        fn reset(self: Pin<&mut Self>, _: Duration) {}
    }

    impl Timer for Manual {
        fn sleep(&self, _: Duration) -> Pin<Box<dyn Sleep>> {
            Box::pin(ManualSleep(self.fired.clone()))
        }
    }

    struct Harness {
        body: Pin<Box<ResponseBody<Mock>>>,
        handle: EndHandle,
        fired: Arc<AtomicBool>,
    }

    fn harness(script: Mock, config: Config, own_heartbeat: bool) -> Harness {
        let timer = Manual::default();
        let fired = timer.fired.clone();
        let config = Config {
            timer: Some(Arc::new(timer)),
            ..config
        };
        let handle = EndHandle::new();
        let permit = config.try_acquire().unwrap();
        let body = ResponseBody::stream(script, &config, handle.clone(), permit, own_heartbeat);
        Harness {
            body: Box::pin(body),
            handle,
            fired,
        }
    }

    impl Harness {
        fn poll(&mut self) -> Poll<Option<Result<Bytes, MockError>>> {
            let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
            self.body
                .as_mut()
                .poll_frame(&mut cx)
                .map(|f| f.map(|r| r.map(|frame| frame.into_data().expect("a data frame"))))
        }

        fn polls(&self) -> usize {
            match &self.body.kind {
                Kind::Stream { body, .. } | Kind::Plain { body } => body.polls,
                Kind::Empty => 0,
            }
        }
    }

    fn ready(bytes: &[u8]) -> Poll<Option<Result<Bytes, MockError>>> {
        Poll::Ready(Some(Ok(Bytes::copy_from_slice(bytes))))
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
            data(b"data: a"),
            Poll::Pending,
            data(b"\r\n"),
            Poll::Pending,
            data(b"\r\n"),
            Poll::Pending,
            Poll::Ready(None),
        ]);
        let mut h = harness(script, Config::default(), false);
        h.fired.store(true, Ordering::SeqCst); // every heartbeat is due at once
        assert_eq!(h.poll(), ready(b"data: a"));
        assert!(h.poll().is_pending(), "no heartbeat inside an event");
        assert_eq!(h.poll(), ready(b"\r\n"));
        assert!(
            h.poll().is_pending(),
            "no heartbeat after a line of an event"
        );
        assert_eq!(h.poll(), ready(b"\r\n"));
        assert_eq!(h.poll(), ready(b":\n\n"));
        assert_eq!(h.polls(), 6);
        assert_eq!(h.poll(), Poll::Ready(None));
        assert!(h.body.is_end_stream());
        let report = h.handle.report().unwrap();
        assert_eq!(report.reason, EndReason::Completed);
        assert_eq!((report.events, report.heartbeats, report.bytes), (1, 1, 14));
        // After the end: `None` again, and the inner body is left alone.
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(h.polls(), 7);
    }

    #[test]
    fn no_heartbeat_when_the_body_has_its_own() {
        let mut h = harness(mock([data(b":\n\n")]), Config::default(), true);
        h.fired.store(true, Ordering::SeqCst);
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
        h.fired.store(true, Ordering::SeqCst);
        assert!(h.poll().is_pending());
        assert!(h.poll().is_pending());
    }

    #[test]
    fn errors_pass_through_and_are_reported() {
        let script = mock([data(b"data: a\n\n"), Poll::Ready(Some(Err(MockError)))]);
        let mut h = harness(script, Config::default(), false);
        assert_eq!(h.poll(), ready(b"data: a\n\n"));
        assert_eq!(h.poll(), Poll::Ready(Some(Err(MockError))));
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
        h.fired.store(true, Ordering::SeqCst); // the lifetime is over, mid-event
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

    #[test]
    fn the_slot_is_freed_at_the_end_not_at_drop() {
        let config = Config::default();
        let live = config.live.clone();
        let mut h = harness(mock([Poll::Ready(None)]), config, false);
        assert_eq!(live.load(Ordering::SeqCst), 1);
        assert_eq!(h.poll(), Poll::Ready(None));
        assert_eq!(live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn empty_body() {
        let body = ResponseBody::<Mock>::empty();
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
