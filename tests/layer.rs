//! `SseLayer` over real sockets: a hyper-util server on 127.0.0.1:0, hyper clients.

mod layer_support;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use layer_support::*;
use tokio::sync::mpsc;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_sse::{
    EndHandle, EndReason, EndReport, Event, KeepAlive, LastEventId, Shutdown, SseBody, SseLayer,
};

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn boxed<B>(res: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    res.map(|b| b.boxed_unsync())
}

/// A service answering every request with `f(request)`.
fn handler(
    f: impl Fn(Request<Incoming>) -> Response<Body> + Send + Sync + 'static,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send {
    let f = Arc::new(f);
    service_fn(move |req| {
        let res = f(req);
        async move { Ok::<_, Infallible>(res) }
    })
}

/// Hands out pre-made bodies, one per request.
fn queue(bodies: Vec<Body>) -> impl Fn() -> Body + Send + Sync + 'static {
    let bodies = Mutex::new(std::collections::VecDeque::from(bodies));
    move || {
        bodies
            .lock()
            .unwrap()
            .pop_front()
            .expect("a body for this request")
    }
}

fn sse_request(path: &str) -> http::request::Builder {
    Request::get(path).header("accept", "text/event-stream")
}

fn reports() -> (
    impl Fn(EndReport) + Send + Sync + 'static,
    mpsc::UnboundedReceiver<EndReport>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (move |r| drop(tx.send(r)), rx)
}

#[tokio::test]
async fn headers_are_normalised_and_other_responses_untouched() {
    let svc = handler(|req| {
        let builder = Response::builder()
            .header("content-length", "9")
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header("cache-control", "max-age=60");
        if req.uri().path() == "/sse" {
            let body = Full::new(Bytes::from_static(b"data: a\n\n"));
            boxed(
                builder
                    .header("content-type", "text/event-stream; charset=utf-8")
                    .body(body)
                    .unwrap(),
            )
        } else {
            let body = Full::new(Bytes::from_static(b"plain one"));
            boxed(
                builder
                    .header("content-type", "text/plain")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let server = serve(ServiceBuilder::new().layer(SseLayer::new()).service(svc)).await;

    let c = get(server.addr, Request::get("/sse")).await;
    let h = c.res.headers().clone();
    assert_eq!(h["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
    assert_eq!(h["transfer-encoding"], "chunked");
    assert!(h.get("content-length").is_none());
    assert!(h.get("keep-alive").is_none());
    assert!(h.get("content-encoding").is_none());
    assert_eq!(read_to_end(c.res.into_body()).await, b"data: a\n\n");

    let c = get(server.addr, Request::get("/other")).await;
    let h = c.res.headers().clone();
    assert_eq!(h["content-length"], "9");
    assert_eq!(h["cache-control"], "max-age=60");
    assert_eq!(h["keep-alive"], "timeout=5");
    assert!(h.get("x-accel-buffering").is_none());
    assert_eq!(read_to_end(c.res.into_body()).await, b"plain one");
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_only_at_event_boundaries_of_a_foreign_body() {
    let (tx, body) = channel();
    let next = queue(vec![body.boxed_unsync()]);
    let svc = handler(move |_| sse(next()));
    let layer = SseLayer::new().keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(10))
            .text("hb"),
    );
    let server = serve(ServiceBuilder::new().layer(layer).service(svc)).await;
    let mut c = get(server.addr, sse_request("/sse")).await;
    let body = c.res.body_mut();
    let mut buf = Vec::new();

    // An event written in pieces, with idle gaps many heartbeat intervals long.
    tx.send("data: a").unwrap();
    read_until(body, &mut buf, |b| b.len() >= 7).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send("\r\n").unwrap();
    read_until(body, &mut buf, |b| b.len() >= 9).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send("\r\n").unwrap();
    // The event is complete: heartbeats may come now, and only now.
    read_until(body, &mut buf, |b| b.ends_with(b": hb\n\n: hb\n\n")).await;
    let (event, rest) = buf.split_at(11);
    assert_eq!(event, b"data: a\r\n\r\n");
    assert!(
        rest.chunks(6).all(|c| c == b": hb\n\n"),
        "{:?}",
        String::from_utf8_lossy(rest)
    );
    c.conn.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_of_our_own_body_are_not_doubled() {
    let fast = KeepAlive::new()
        .interval(Duration::from_millis(5))
        .text("layer");
    let own = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(20)));
    let silent = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::disabled());
    let next = Mutex::new(vec![silent, own]);
    let svc = handler(move |_| boxed(next.lock().unwrap().pop().unwrap().into_response()));
    let server = serve(
        ServiceBuilder::new()
            .layer(SseLayer::new().keep_alive(fast))
            .service(svc),
    )
    .await;

    let mut c = get(server.addr, sse_request("/sse")).await;
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 9).await;
    assert_eq!(buf, b":\n\n:\n\n:\n\n", "only the body's own heartbeats");
    c.conn.abort();

    // A body with its heartbeats off gets the layer's.
    let mut c = get(server.addr, sse_request("/sse")).await;
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 18).await;
    assert_eq!(buf, b": layer\n\n: layer\n\n");
    c.conn.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_leaving_a_foreign_body_is_reported() {
    let (tx, body) = channel();
    let next = queue(vec![body.boxed_unsync()]);
    let handles = Arc::new(Mutex::new(Vec::<EndHandle>::new()));
    let seen = handles.clone();
    let svc = handler(move |req| {
        seen.lock()
            .unwrap()
            .push(req.extensions().get::<EndHandle>().unwrap().clone());
        sse(next())
    });
    let (on_end, mut ended) = reports();
    let layer = SseLayer::new()
        .keep_alive(KeepAlive::disabled())
        .on_end(on_end);
    let server = serve(ServiceBuilder::new().layer(layer.clone()).service(svc)).await;

    let mut c = get(server.addr, sse_request("/sse")).await;
    tx.send("data: 1\n\n").unwrap();
    tx.send("data: 2\n\ndata: 3").unwrap();
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 25).await;
    assert_eq!(layer.live_streams(), 1);
    c.conn.abort(); // the client closes its socket

    let report = guard("the end report", ended.recv()).await.unwrap();
    assert_eq!(report.reason, EndReason::ClientGone);
    assert_eq!((report.events, report.heartbeats, report.bytes), (2, 0, 25));
    let handle = handles.lock().unwrap()[0].clone();
    assert_eq!(guard("the handle", handle.ended()).await, report);
    assert_eq!(layer.live_streams(), 0);
    drop(tx);
    server.shutdown().await;
}

#[tokio::test]
async fn last_event_id_and_end_handle_reach_the_handler() {
    type Seen = (Option<String>, Option<EndHandle>);
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Seen>();
    let svc = handler(move |req| {
        let id = req
            .extensions()
            .get::<LastEventId>()
            .map(|id| id.to_string());
        let handle = req.extensions().get::<EndHandle>().cloned();
        seen_tx.send((id, handle.clone())).unwrap();
        let events = futures_util::stream::iter([Event::message("resumed")]);
        let body = SseBody::from_events(events);
        let body = match handle {
            Some(handle) => body.with_end_handle(handle),
            None => body,
        };
        boxed(body.into_response())
    });
    let server = serve(ServiceBuilder::new().layer(SseLayer::new()).service(svc)).await;

    let c = get(
        server.addr,
        sse_request("/sse").header("last-event-id", "42"),
    )
    .await;
    assert_eq!(read_to_end(c.res.into_body()).await, b"data: resumed\n\n");
    let (id, handle) = seen.recv().await.unwrap();
    assert_eq!(id.as_deref(), Some("42"));
    let report = guard("the handle", handle.unwrap().ended()).await;
    assert_eq!(report.reason, EndReason::Completed);
    assert_eq!(report.events, 1);

    // A browser's first connection: the query; a hostile header: absent.
    let c = get(server.addr, sse_request("/sse?lastEventId=a%2F7")).await;
    read_to_end(c.res.into_body()).await;
    assert_eq!(seen.recv().await.unwrap().0.as_deref(), Some("a/7"));
    let c = get(
        server.addr,
        sse_request("/sse").header("last-event-id", "x\ty"),
    )
    .await;
    read_to_end(c.res.into_body()).await;
    assert_eq!(seen.recv().await.unwrap().0, None);

    // A request that does not ask for a stream gets the id, but no handle.
    let c = get(
        server.addr,
        Request::get("/sse").header("last-event-id", "9"),
    )
    .await;
    assert_eq!(c.res.status(), StatusCode::OK);
    read_to_end(c.res.into_body()).await;
    let (id, handle) = seen.recv().await.unwrap();
    assert_eq!((id.as_deref(), handle.is_none()), (Some("9"), true));
    server.shutdown().await;
}

#[tokio::test]
async fn a_handle_resolves_when_the_answer_is_not_a_stream() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<EndHandle>();
    let svc = handler(move |req| {
        seen_tx
            .send(req.extensions().get::<EndHandle>().unwrap().clone())
            .unwrap();
        tower_sse::no_content()
    });
    let server = serve(ServiceBuilder::new().layer(SseLayer::new()).service(svc)).await;
    let c = get(server.addr, sse_request("/sse")).await;
    assert_eq!(c.res.status(), StatusCode::NO_CONTENT);
    let report = guard("the handle", seen.recv().await.unwrap().ended()).await;
    assert_eq!(
        (report.reason, report.events, report.bytes),
        (EndReason::Completed, 0, 0)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn over_the_stream_limit_is_503_with_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = handler(move |req| {
        counted.fetch_add(1, Ordering::SeqCst);
        if req.uri().path() == "/sse" {
            boxed(SseBody::from_events(futures_util::stream::pending::<Event>()).into_response())
        } else {
            boxed(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let (on_end, mut ended) = reports();
    let layer = SseLayer::new()
        .max_streams(1, Duration::from_millis(2500))
        .on_end(on_end);
    let server = serve(ServiceBuilder::new().layer(layer.clone()).service(svc)).await;

    let first = get(server.addr, sse_request("/sse")).await;
    assert_eq!(first.res.status(), StatusCode::OK);
    assert_eq!(layer.live_streams(), 1);

    let c = get(server.addr, sse_request("/sse")).await;
    assert_eq!(c.res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(c.res.headers()["retry-after"], "3");
    assert_eq!(read_to_end(c.res.into_body()).await, b"");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused before the inner service"
    );

    // Without `accept`, the stream is refused once the response shows it is one.
    let c = get(server.addr, Request::get("/sse")).await;
    assert_eq!(c.res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Other requests are not limited.
    let c = get(server.addr, Request::get("/plain")).await;
    assert_eq!(read_to_end(c.res.into_body()).await, b"ok");

    // Once the first stream is over, there is room again.
    first.conn.abort();
    assert_eq!(
        guard("end", ended.recv()).await.unwrap().reason,
        EndReason::ClientGone
    );
    assert_eq!(layer.live_streams(), 0);
    let c = get(server.addr, sse_request("/sse")).await;
    assert_eq!(c.res.status(), StatusCode::OK);
    c.conn.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn lifetime_ends_at_an_event_boundary_with_a_retry_hint() {
    let (tx, body) = channel();
    let next = queue(vec![body.boxed_unsync()]);
    let svc = handler(move |_| sse(next()));
    let (on_end, mut ended) = reports();
    let layer = SseLayer::new()
        .keep_alive(KeepAlive::disabled())
        .max_lifetime(Duration::from_millis(50), Duration::from_secs(2))
        .on_end(on_end);
    let server = serve(ServiceBuilder::new().layer(layer).service(svc)).await;
    let mut c = get(server.addr, sse_request("/sse")).await;
    tx.send("data: a\n").unwrap();
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 8).await;
    // The lifetime runs out in the middle of the event...
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send("\n").unwrap();
    tx.send("data: never sent\n\n").unwrap();
    // ...so the stream ends right after it, with the hint.
    let rest = read_to_end(c.res.into_body()).await;
    buf.extend_from_slice(&rest);
    assert_eq!(buf, b"data: a\n\nretry: 2000\n\n");
    let report = ended.recv().await.unwrap();
    assert_eq!(
        (report.reason, report.events, report.bytes),
        (EndReason::Lifetime, 1, 22)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_streams_and_graceful_shutdown_completes() {
    let (tx, foreign) = channel();
    let own = SseBody::from_events(futures_util::stream::pending::<Event>()).into_response();
    let bodies = Mutex::new(vec![boxed(own), sse(foreign.boxed_unsync())]);
    let svc = handler(move |_| bodies.lock().unwrap().pop().unwrap());
    let shutdown = Shutdown::new();
    let layer = SseLayer::new().with_shutdown(&shutdown);
    let server = serve(ServiceBuilder::new().layer(layer).service(svc)).await;

    let mut a = get(server.addr, sse_request("/sse")).await;
    let b = get(server.addr, sse_request("/sse")).await;
    tx.send("data: 1\n\n").unwrap();
    let mut buf = Vec::new();
    read_until(a.res.body_mut(), &mut buf, |b| b.len() >= 9).await;
    assert_eq!(shutdown.live_streams(), 2);

    shutdown.trigger_with(Event::default().retry(Duration::from_secs(5)).encode());
    buf.extend(read_to_end(a.res.into_body()).await);
    assert_eq!(buf, b"data: 1\n\nretry: 5000\n\n");
    assert_eq!(read_to_end(b.res.into_body()).await, b"retry: 5000\n\n");
    guard("drained", shutdown.drained()).await;
    server.shutdown().await; // hyper-util's graceful shutdown completes
    drop(tx);
}

#[tokio::test]
async fn compression_cannot_touch_streams_in_either_order() {
    use tower_http::compression::CompressionLayer;
    let always = |_: StatusCode, _: http::Version, _: &http::HeaderMap, _: &http::Extensions| true;

    for sse_outside in [true, false] {
        let (tx, body) = channel();
        let next = queue(vec![body.boxed_unsync()]);
        let svc = handler(move |req| {
            if req.uri().path() == "/sse" {
                sse(next())
            } else {
                boxed(Response::new(Full::new(Bytes::from(vec![b'x'; 4096]))))
            }
        });
        let compression = CompressionLayer::new().compress_when(always);
        let svc = if sse_outside {
            ServiceBuilder::new()
                .layer(SseLayer::new())
                .layer(compression)
                .service(svc)
                .map_response(|r| r.map(|b| b.map_err(|e| e.to_string()).boxed_unsync()))
                .boxed_clone()
        } else {
            ServiceBuilder::new()
                .layer(compression)
                .layer(SseLayer::new())
                .service(svc)
                .map_response(|r| r.map(|b| b.map_err(|e| e.to_string()).boxed_unsync()))
                .boxed_clone()
        };
        let server = serve(svc).await;

        // The predicate is live: a plain response is compressed.
        let c = get(
            server.addr,
            Request::get("/plain").header("accept-encoding", "gzip, br"),
        )
        .await;
        assert!(c
            .res
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v != "identity"));

        let mut c = get(
            server.addr,
            sse_request("/sse").header("accept-encoding", "gzip, br"),
        )
        .await;
        // Not compressed: `identity`, which also stops an outer compression layer.
        assert_eq!(
            c.res.headers()["content-encoding"],
            "identity",
            "sse outside: {sse_outside}"
        );
        tx.send("data: 1\n\n").unwrap();
        let mut buf = Vec::new();
        // Event 1 arrives before the server produces event 2: nothing holds it back.
        read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 9).await;
        assert_eq!(buf, b"data: 1\n\n");
        tx.send("data: 2\n\n").unwrap();
        read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 18).await;
        assert_eq!(buf, b"data: 1\n\ndata: 2\n\n");
        c.conn.abort();
        server.shutdown().await;
    }
}
