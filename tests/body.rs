//! Poll semantics of `SseBody`: scripted streams, paused time, exact bytes.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{task::noop_waker_ref, Stream, StreamExt};
use http_body::Body;
use tower_sse::{EncodedEvent, EndReason, EndReport, Event, KeepAlive, Shutdown, SseBody};

/// A stream that answers from a script of polls and counts them.
struct Script {
    polls: Arc<Mutex<usize>>,
    steps: VecDeque<Poll<Option<Result<Event, std::io::Error>>>>,
}

impl Script {
    fn new(steps: impl IntoIterator<Item = Poll<Option<Result<Event, std::io::Error>>>>) -> Self {
        Self {
            polls: Arc::default(),
            steps: steps.into_iter().collect(),
        }
    }
}

impl Stream for Script {
    type Item = Result<Event, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        *self.polls.lock().unwrap() += 1;
        // An exhausted script stays pending, like an idle source.
        self.steps.pop_front().unwrap_or(Poll::Pending)
    }
}

fn ev(data: &str) -> Poll<Option<Result<Event, std::io::Error>>> {
    Poll::Ready(Some(Ok(Event::message(data))))
}

type Polled = Poll<Option<Bytes>>;

fn poll<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Polled
where
    B::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(noop_waker_ref());
    match Pin::new(body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(frame.into_data().unwrap())),
        Poll::Ready(Some(Err(e))) => panic!("body error {e:?}"),
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    }
}

fn data(bytes: &'static str) -> Polled {
    Poll::Ready(Some(Bytes::from_static(bytes.as_bytes())))
}

fn reports() -> (
    Arc<Mutex<Vec<EndReport>>>,
    impl FnOnce(EndReport) + Send + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |r| sink.lock().unwrap().push(r))
}

#[test]
fn ends_and_keeps_answering_none() {
    let (seen, on_end) = reports();
    let mut body = SseBody::new(Script::new([ev("a"), Poll::Ready(None)]))
        .coalesce(0)
        .on_end(on_end);
    assert!(!body.is_end_stream());
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    assert!(body.is_end_stream());
    assert_eq!(poll(&mut body), Poll::Ready(None));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    // The stream is not polled after its end.
    assert_eq!(*body.get_ref().polls.lock().unwrap(), 2);
    drop(body);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].reason, EndReason::Completed);
    assert_eq!((seen[0].events, seen[0].bytes), (1, 9));
}

#[test]
fn size_hint_is_unknown() {
    let body = SseBody::new(Script::new([]));
    let hint = body.size_hint();
    assert_eq!((hint.lower(), hint.upper()), (0, None));
}

#[test]
fn ready_events_are_coalesced_up_to_the_limit() {
    let mut body = SseBody::new(Script::new([
        ev("a"),
        ev("b"),
        ev("c"),
        Poll::Pending,
        ev("d"),
    ]))
    .keep_alive(KeepAlive::disabled());
    assert_eq!(poll(&mut body), data("data: a\n\ndata: b\n\ndata: c\n\n"));
    assert_eq!(poll(&mut body), data("data: d\n\n"));
    assert_eq!(poll(&mut body), Poll::Pending);

    // A limit of 20 bytes fits two 9-byte events; the third waits for its own frame.
    let mut body = SseBody::new(Script::new([ev("a"), ev("b"), ev("c"), Poll::Ready(None)]))
        .coalesce(20)
        .keep_alive(KeepAlive::disabled());
    assert_eq!(poll(&mut body), data("data: a\n\ndata: b\n\n"));
    assert_eq!(poll(&mut body), data("data: c\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));

    // An event as large as the limit is its own frame, shared, not copied.
    let big = Event::message("x".repeat(100)).encode();
    let ptr = big.as_bytes().as_ptr();
    let stream = futures_util::stream::iter([big.clone(), big]);
    let mut body = SseBody::from_events(stream).coalesce(50);
    match poll(&mut body) {
        Poll::Ready(Some(bytes)) => assert_eq!(bytes.as_ptr(), ptr),
        other => panic!("{other:?}"),
    }
}

#[test]
fn coalescing_stops_at_the_end_and_reports_completion() {
    let (seen, on_end) = reports();
    let mut body = SseBody::new(Script::new([ev("a"), ev("b"), Poll::Ready(None)])).on_end(on_end);
    assert_eq!(poll(&mut body), data("data: a\n\ndata: b\n\n"));
    assert!(
        seen.lock().unwrap().is_empty(),
        "not ended before the frame is taken"
    );
    assert_eq!(poll(&mut body), Poll::Ready(None));
    assert_eq!(seen.lock().unwrap()[0].events, 2);
}

#[test]
fn stream_error_writes_the_error_event_and_ends_cleanly() {
    let (seen, on_end) = reports();
    let err = || Poll::Ready(Some(Err(std::io::Error::other("db down"))));
    let mut body = SseBody::new(Script::new([ev("a"), Poll::Pending, err(), ev("never")]))
        .on_error(|e| Some(Event::default().event("error").unwrap().data(e.to_string())))
        .on_end(on_end);
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(poll(&mut body), data("event: error\ndata: db down\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].reason.to_string(), "failed: db down");
    assert_eq!(seen[0].events, 2);

    // Without a callback: the event before the error is written, then the end.
    let mut body = SseBody::new(Script::new([ev("a"), err()]));
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
}

#[test]
fn first_frame_comes_first() {
    let mut body = SseBody::new(Script::new([ev("a")]))
        .comment("hello")
        .retry(Duration::from_millis(2500));
    assert_eq!(poll(&mut body), data(": hello\nretry: 2500\n\n"));
    assert_eq!(poll(&mut body), data("data: a\n\n"));
}

#[test]
fn end_reported_once_when_dropped_before_first_poll() {
    let (seen, on_end) = reports();
    let body = SseBody::new(Script::new([ev("a")])).on_end(on_end);
    let handle = body.end_handle();
    drop(body);
    assert_eq!(seen.lock().unwrap().len(), 1);
    let report = handle.report().unwrap();
    assert_eq!(report.reason, EndReason::ClientGone);
    assert_eq!((report.events, report.bytes), (0, 0));
}

#[test]
fn dropped_mid_stream_is_client_gone_with_counts() {
    let handle = tower_sse::EndHandle::new();
    let mut body = SseBody::new(Script::new([ev("a"), Poll::Pending, ev("b")]))
        .with_end_handle(handle.clone());
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert!(!handle.is_ended());
    drop(body);
    let report = handle.report().unwrap();
    assert!(report.reason.is_client_gone());
    assert_eq!((report.events, report.bytes), (1, 9));
}

#[test]
fn shutdown_writes_the_last_event_then_ends() {
    let shutdown = Shutdown::new();
    let handle = tower_sse::EndHandle::new();
    let mut body = SseBody::new(Script::new([ev("a")]))
        .with_shutdown(&shutdown)
        .with_end_handle(handle.clone());
    let mut quiet = SseBody::new(Script::new([])).with_shutdown(&shutdown);
    assert_eq!(shutdown.live_streams(), 2);
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(poll(&mut body), Poll::Pending);
    shutdown.trigger_with(Event::message("bye").retry(Duration::from_secs(1)).encode());
    assert_eq!(poll(&mut body), data("retry: 1000\ndata: bye\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    assert_eq!(handle.report().unwrap().reason, EndReason::Shutdown);
    assert_eq!(shutdown.live_streams(), 1);
    assert_eq!(poll(&mut quiet), data("retry: 1000\ndata: bye\n\n"));
    assert_eq!(poll(&mut quiet), Poll::Ready(None));
    assert_eq!(shutdown.live_streams(), 0);

    // A body created after the trigger ends at once.
    let mut late = SseBody::new(Script::new([ev("a")])).with_shutdown(&shutdown);
    assert_eq!(poll(&mut late), data("retry: 1000\ndata: bye\n\n"));
    assert_eq!(poll(&mut late), Poll::Ready(None));
}

#[tokio::test(start_paused = true)]
async fn shutdown_wakes_an_idle_body_and_drains() {
    use http_body_util::BodyExt;
    let shutdown = Shutdown::new();
    let bodies: Vec<_> = (0..3)
        .map(|_| {
            SseBody::from_events(futures_util::stream::pending::<Event>())
                .keep_alive(KeepAlive::disabled())
                .with_shutdown(&shutdown)
        })
        .collect();
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|b| tokio::spawn(async move { b.collect().await.unwrap().to_bytes() }))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(shutdown.live_streams(), 3);
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(1), shutdown.drained())
        .await
        .expect("all streams end");
    for t in tasks {
        assert_eq!(t.await.unwrap(), Bytes::new());
    }
}

/// Collects frames with the time they arrived, under paused time.
async fn frames_until<B>(body: B, until: Duration) -> Vec<(u128, String)>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let start = tokio::time::Instant::now();
    let mut body = body;
    let mut out = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout_at(start + until, body.frame()).await {
        let bytes = frame.unwrap().into_data().unwrap();
        out.push((
            start.elapsed().as_millis(),
            String::from_utf8(bytes.to_vec()).unwrap(),
        ));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn heartbeat_only_while_idle_and_restarts_after_each_event() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    let body = SseBody::from_events(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)));
    tokio::spawn(async move {
        // Events at 4 s and 8 s keep it busy; then idle.
        for at in [4, 8] {
            tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(4)).await;
            tx.send(Event::message(format!("t{at}"))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(100)).await;
    });
    let frames = frames_until(body, Duration::from_millis(38_500)).await;
    let expected: Vec<(u128, String)> = vec![
        (4_000, "data: t4\n\n".into()),
        (8_000, "data: t8\n\n".into()),
        (18_000, ":\n\n".into()),
        (28_000, ":\n\n".into()),
        (38_000, ":\n\n".into()),
    ];
    assert_eq!(frames, expected);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_text_and_disabled() {
    let body = SseBody::from_events(futures_util::stream::pending::<Event>()).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(1))
            .text("ping"),
    );
    let frames = frames_until(body, Duration::from_millis(2_500)).await;
    assert_eq!(
        frames,
        vec![
            (1_000, ": ping\n\n".to_string()),
            (2_000, ": ping\n\n".to_string())
        ]
    );

    let body = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::disabled());
    assert!(frames_until(body, Duration::from_secs(60)).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_with_the_retry_hint() {
    let handle = tower_sse::EndHandle::new();
    let body = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(2)))
        .retry(Duration::from_millis(750))
        .max_lifetime(Duration::from_secs(5))
        .with_end_handle(handle.clone());
    let frames = frames_until(body, Duration::from_secs(60)).await;
    let expected: Vec<(u128, String)> = vec![
        (0, "retry: 750\n\n".into()),
        (2_000, ":\n\n".into()),
        (4_000, ":\n\n".into()),
        (5_000, "retry: 750\n\n".into()),
    ];
    assert_eq!(frames, expected);
    let report = handle.report().unwrap();
    assert_eq!(report.reason, EndReason::Lifetime);
    assert_eq!(report.heartbeats, 2);
}

#[test]
fn accepts_encoded_events_and_raw_bytes() {
    let raw = EncodedEvent::from_raw("event: a\ndata: 1\n\n").unwrap();
    let shared = Event::message("s").encode();
    let mut body = SseBody::from_events(futures_util::stream::iter([raw, shared])).coalesce(0);
    assert_eq!(poll(&mut body), data("event: a\ndata: 1\n\n"));
    assert_eq!(poll(&mut body), data("data: s\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
}

#[test]
fn end_handle_future_resolves_for_every_clone() {
    let body = SseBody::from_events(futures_util::stream::iter([Event::message("x")]));
    let a = body.end_handle();
    let b = a.clone();
    let waiting = std::thread::spawn(move || futures_executor_block_on(b.ended()));
    std::thread::sleep(Duration::from_millis(20));
    drop(body);
    assert_eq!(waiting.join().unwrap().reason, EndReason::ClientGone);
    assert_eq!(
        futures_executor_block_on(a.ended()).reason,
        EndReason::ClientGone
    );
}

/// A minimal executor: the test must not depend on a runtime to observe the end.
fn futures_executor_block_on<F: std::future::Future>(fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(fut)
}

#[test]
fn body_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let body = SseBody::from_events(futures_util::stream::iter([Event::message("x")]))
        .on_end(|_| {})
        .on_error(|_| None);
    assert_send_sync(&body);
    // So it fits `BoxBody`, which requires `Sync`.
    let _ = http_body_util::combinators::BoxBody::new(body);
}

/// A timer driven by hand: sleeps complete when the test says so.
#[derive(Debug, Default)]
struct ManualTimer {
    fired: Arc<Mutex<bool>>,
    made: Arc<Mutex<usize>>,
}

struct ManualSleep(Arc<Mutex<bool>>);

impl std::future::Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if std::mem::take(&mut *self.0.lock().unwrap()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl tower_sse::timer::Sleep for ManualSleep {
    fn reset(self: Pin<&mut Self>, _: Duration) {}
}

impl tower_sse::timer::Timer for ManualTimer {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn tower_sse::timer::Sleep>> {
        *self.made.lock().unwrap() += 1;
        Box::pin(ManualSleep(self.fired.clone()))
    }
}

#[test]
fn heartbeats_use_the_timer_given_without_a_runtime() {
    let timer = ManualTimer::default();
    let (fired, made) = (timer.fired.clone(), timer.made.clone());
    let mut body = SseBody::new(Script::new([ev("a")]))
        .keep_alive(KeepAlive::new().text("t"))
        .timer(Arc::new(timer));
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(poll(&mut body), Poll::Pending);
    *fired.lock().unwrap() = true;
    assert_eq!(poll(&mut body), data(": t\n\n"));
    assert_eq!(poll(&mut body), Poll::Pending);
    *fired.lock().unwrap() = true;
    assert_eq!(poll(&mut body), data(": t\n\n"));
    // One sleep per body, re-armed in place.
    assert_eq!(*made.lock().unwrap(), 1);
}

#[test]
fn tokio_timer_outside_a_runtime_is_off_not_a_panic() {
    let mut body = SseBody::new(Script::new([ev("a")]))
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(1)))
        .max_lifetime(Duration::from_millis(1));
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(poll(&mut body), Poll::Pending);
}

/// `KeepAlive::interval(Duration::MAX)` used to panic inside `poll_frame` when
/// the heartbeat was re-armed after an event (`Instant + Duration` overflowed).
#[tokio::test(start_paused = true)]
async fn a_huge_heartbeat_interval_never_panics() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    let body = SseBody::from_events(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::MAX))
        .max_lifetime(Duration::MAX);
    tokio::spawn(async move {
        for at in [1, 2] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(Event::message(format!("t{at}"))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let frames = frames_until(body, Duration::from_secs(60)).await;
    let data: Vec<&str> = frames.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(data, ["data: t1\n\n", "data: t2\n\n"]);
}

/// A stream that is given the request's context reports it.
#[test]
fn the_request_context_is_in_the_report() {
    let req = http::Request::get("/feed?token=x").body(()).unwrap();
    let (seen, on_end) = reports();
    let body = SseBody::new(Script::new([Poll::Ready(None)]))
        .request_info(tower_sse::RequestInfo::new(&req))
        .on_end(on_end);
    drop(body);
    let report = seen.lock().unwrap().pop().unwrap();
    assert_eq!(report.request.unwrap().path, "/feed");
}

/// An event made of a small head, a large shared list and a small tail.
fn parted(list: &Bytes, you: &str) -> EncodedEvent {
    EncodedEvent::from_parts([
        Bytes::from(format!(
            "event: members\ndata: {{\"you\":\"{you}\",\"names\":"
        )),
        list.clone(),
        Bytes::from_static(b"}\n\n"),
    ])
    .unwrap()
}

#[test]
fn an_event_of_parts_is_written_part_by_part_without_a_copy() {
    let list = Bytes::from(format!("[{}]", vec!["\"someone\""; 2_000].join(",")));
    let (seen, on_end) = reports();
    let events = vec![
        Event::message("a").encode(),
        parted(&list, "ada"),
        Event::message("b").encode(),
    ];
    let mut body = SseBody::from_events(futures_util::stream::iter(events))
        .keep_alive(KeepAlive::disabled())
        .on_end(on_end);
    // The head joins the frame of the events ready before it; the list is a
    // frame of its own, the very buffer shared by every snapshot made from it.
    assert_eq!(
        poll(&mut body),
        data("data: a\n\nevent: members\ndata: {\"you\":\"ada\",\"names\":")
    );
    match poll(&mut body) {
        Poll::Ready(Some(bytes)) => assert_eq!(bytes.as_ptr(), list.as_ptr()),
        other => panic!("{other:?}"),
    }
    assert_eq!(poll(&mut body), data("}\n\n"));
    assert_eq!(poll(&mut body), data("data: b\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));
    let report = seen.lock().unwrap().pop().unwrap();
    assert_eq!(report.events, 3);
    assert_eq!(report.bytes, (9 + parted(&list, "ada").len() + 9) as u64);

    // First in its frame, and with coalescing off, it is the same.
    let mut body = SseBody::from_events(futures_util::stream::iter([parted(&list, "bo")]))
        .coalesce(0)
        .keep_alive(KeepAlive::disabled());
    assert_eq!(
        poll(&mut body),
        data("event: members\ndata: {\"you\":\"bo\",\"names\":")
    );
    assert!(matches!(poll(&mut body), Poll::Ready(Some(b)) if b.as_ptr() == list.as_ptr()));
    assert_eq!(poll(&mut body), data("}\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));

    // A head that does not fit the frame starts the next one, still whole.
    let events = [Event::message("a").encode(), parted(&list, "cy")];
    let mut body = SseBody::from_events(futures_util::stream::iter(events))
        .coalesce(12)
        .keep_alive(KeepAlive::disabled());
    assert_eq!(poll(&mut body), data("data: a\n\n"));
    assert_eq!(
        poll(&mut body),
        data("event: members\ndata: {\"you\":\"cy\",\"names\":")
    );
    assert!(matches!(poll(&mut body), Poll::Ready(Some(b)) if b.as_ptr() == list.as_ptr()));
    assert_eq!(poll(&mut body), data("}\n\n"));
}

#[tokio::test(start_paused = true)]
async fn nothing_is_written_between_the_parts_of_an_event() {
    let list = Bytes::from_static(b"[\"ada\",\"bo\"]");
    let shutdown = Shutdown::new();
    let events =
        futures_util::stream::iter([parted(&list, "ada")]).chain(futures_util::stream::pending());
    let mut body = SseBody::from_events(events)
        .with_shutdown(&shutdown)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(10)));
    assert_eq!(
        poll(&mut body),
        data("event: members\ndata: {\"you\":\"ada\",\"names\":")
    );
    // A heartbeat due and a shutdown both wait for the event's end.
    tokio::time::advance(Duration::from_secs(1)).await;
    shutdown.trigger_with(Event::message("bye").encode());
    assert_eq!(poll(&mut body), data("[\"ada\",\"bo\"]"));
    assert_eq!(poll(&mut body), data("}\n\n"));
    assert_eq!(poll(&mut body), data("data: bye\n\n"));
    assert_eq!(poll(&mut body), Poll::Ready(None));

    // Without the shutdown, the heartbeat comes after the event.
    let events =
        futures_util::stream::iter([parted(&list, "bo")]).chain(futures_util::stream::pending());
    let mut body = SseBody::from_events(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(10)));
    assert!(matches!(poll(&mut body), Poll::Ready(Some(_))));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(poll(&mut body), data("[\"ada\",\"bo\"]"));
    assert_eq!(poll(&mut body), data("}\n\n"));
    // The interval restarts after the event's last part.
    assert_eq!(poll(&mut body), Poll::Pending);
    tokio::time::advance(Duration::from_millis(11)).await;
    assert!(matches!(poll(&mut body), Poll::Ready(Some(b)) if b.starts_with(b":")));
}
