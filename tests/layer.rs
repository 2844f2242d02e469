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
    // Made before the request (outside the handler): `into_response` links them.
    let own = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(20)));
    let silent =
        SseBody::from_events(futures_util::stream::pending::<Event>()).without_heartbeats();
    let disabled = SseBody::from_events(futures_util::stream::pending::<Event>())
        .keep_alive(KeepAlive::disabled());
    let default = SseBody::from_events(futures_util::stream::pending::<Event>());
    let next = Mutex::new(vec![default, disabled, silent, own]);
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

    // A body that turned heartbeats off for its stream has none.
    let c = get(server.addr, sse_request("/sse")).await;
    let mut body = c.res.into_body();
    let waited = tokio::time::timeout(Duration::from_millis(100), body.frame()).await;
    assert!(waited.is_err(), "no heartbeat: {waited:?}");
    c.conn.abort();

    // A body that set `disabled` (none of its own), or nothing, writes the
    // layer's heartbeat, alone.
    for _ in 0..2 {
        let mut c = get(server.addr, sse_request("/sse")).await;
        let mut buf = Vec::new();
        read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 18).await;
        assert_eq!(buf, b": layer\n\n: layer\n\n");
        c.conn.abort();
    }
    server.shutdown().await;
}

/// The layer's heartbeat, written once, whatever built the response: the body
/// made in the handler with `response(body)`, `into_response()` or axum's
/// `IntoResponse` for `Response`; the layer's interval and text apply.
#[tokio::test]
async fn one_heartbeat_rule_whatever_built_the_response() {
    let layer_beat = KeepAlive::new()
        .interval(Duration::from_millis(5))
        .text("layer");
    for constructor in ["response", "into_response", "axum"] {
        let svc = handler(move |_| {
            let body = SseBody::from_events(futures_util::stream::pending::<Event>());
            match constructor {
                "response" => boxed(tower_sse::response(body)),
                "into_response" => boxed(body.into_response()),
                _ => {
                    use axum::response::IntoResponse;
                    let res = body.into_response().into_response();
                    res.map(|b| {
                        b.map_err(|e| -> Infallible { panic!("{e}") })
                            .boxed_unsync()
                    })
                }
            }
        });
        let server = serve(
            ServiceBuilder::new()
                .layer(SseLayer::new().keep_alive(layer_beat.clone()))
                .service(svc),
        )
        .await;
        // A browser's `EventSource`, and curl (no `accept: text/event-stream`).
        for req in [sse_request("/sse"), Request::get("/sse")] {
            let mut c = get(server.addr, req).await;
            let mut buf = Vec::new();
            // Used to be `:` comments from the body every 15 s, plus (with
            // `response`) the layer's own: two writers.
            read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 36).await;
            assert_eq!(
                buf, b": layer\n\n: layer\n\n: layer\n\n: layer\n\n",
                "{constructor}"
            );
            c.conn.abort();
        }
        server.shutdown().await;
    }
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

    // A request that does not ask for a stream (curl) gets the id and a handle
    // too (there used to be none: `.get::<EndHandle>().unwrap()` panicked).
    let c = get(
        server.addr,
        Request::get("/sse").header("last-event-id", "9"),
    )
    .await;
    assert_eq!(c.res.status(), StatusCode::OK);
    read_to_end(c.res.into_body()).await;
    let (id, handle) = seen.recv().await.unwrap();
    assert_eq!(id.as_deref(), Some("9"));
    let report = guard("the handle", handle.expect("a handle").ended()).await;
    assert_eq!((report.reason, report.events), (EndReason::Completed, 1));
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

    // Outside the compression layer, the SSE layer takes `accept-encoding` away
    // from it, so even a predicate that compresses everything cannot. Inside it,
    // the compressor decides: its default predicate skips `text/event-stream`.
    // (The layer used to send `content-encoding: identity`, which RFC 9110 says
    // not to send.)
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
        let svc = if sse_outside {
            ServiceBuilder::new()
                .layer(SseLayer::new())
                .layer(CompressionLayer::new().compress_when(always))
                .service(svc)
                .map_response(|r| r.map(|b| b.map_err(|e| e.to_string()).boxed_unsync()))
                .boxed_clone()
        } else {
            ServiceBuilder::new()
                .layer(CompressionLayer::new())
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
        // Not compressed, and no `content-encoding: identity` either.
        assert_eq!(
            c.res.headers().get("content-encoding"),
            None,
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

#[tokio::test]
async fn a_dropped_response_future_resolves_the_handle() {
    // A slow handler; the client leaves (or an outer timeout fires) before it answers.
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<EndHandle>();
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service(service_fn(move |req: Request<()>| {
            seen_tx
                .send(req.extensions().get::<EndHandle>().unwrap().clone())
                .unwrap();
            async {
                futures_util::future::pending::<()>().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }
        }));
    let req = Request::get("/sse")
        .header("accept", "text/event-stream")
        .body(())
        .unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(10), svc.oneshot(req)).await;
    assert!(timed_out.is_err());
    // Used to wait forever: the handle was only resolved by a response.
    let report = guard("the handle", seen.recv().await.unwrap().ended()).await;
    assert_eq!(report.reason, EndReason::ClientGone);
}

/// Under the layer's shutdown, the inner `SseBody` reports the layer's reason,
/// not `ClientGone` (it is dropped after the layer ended the stream).
#[tokio::test]
async fn the_inner_body_reports_the_layers_reason() {
    let (body_tx, mut body_ended) = mpsc::unbounded_channel::<EndReport>();
    let svc = handler(move |_| {
        let tx = body_tx.clone();
        let body = SseBody::from_events(futures_util::stream::pending::<Event>())
            .on_end(move |r| drop(tx.send(r)));
        boxed(tower_sse::response(body))
    });
    let shutdown = Shutdown::new();
    let (on_end, mut layer_ended) = reports();
    let layer = SseLayer::new().with_shutdown(&shutdown).on_end(on_end);
    let server = serve(ServiceBuilder::new().layer(layer).service(svc)).await;
    let c = get(server.addr, sse_request("/sse?x=1")).await;
    shutdown.trigger();
    assert_eq!(read_to_end(c.res.into_body()).await, b"");
    let inner = guard("the body's report", body_ended.recv()).await.unwrap();
    let outer = guard("the layer's report", layer_ended.recv())
        .await
        .unwrap();
    assert_eq!(inner.reason, EndReason::Shutdown);
    assert_eq!(outer.reason, EndReason::Shutdown);
    // The layer's report says which request it was.
    let request = outer.request.expect("request context");
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("GET", "/sse")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_on_end_callback_of_the_layer_runs() {
    let (first, mut a) = reports();
    let (second, mut b) = reports();
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new().on_end(first).on_end(second))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(sse(Full::new(Bytes::from_static(b"data: a\n\n"))))
        }));
    let res = svc
        .oneshot(sse_request("/").body(()).unwrap())
        .await
        .unwrap();
    res.into_body().collect().await.unwrap();
    // `on_end` used to replace the previous callback.
    assert_eq!(a.recv().await.unwrap().events, 1);
    assert_eq!(b.recv().await.unwrap().events, 1);
}

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("broken")
    }
}

impl std::error::Error for Broken {}

/// Any body whose data is a `Buf` and whose error converts into a `BoxError`,
/// as tower-http takes them; the error itself reaches the report.
#[tokio::test]
async fn any_buf_and_any_error_and_the_error_is_kept() {
    let (on_end, mut ended) = reports();
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new().on_end(on_end))
        .service(service_fn(|_: Request<()>| async {
            let frames = futures_util::stream::iter([
                Ok(http_body::Frame::data(&b"data: a\n\n"[..])),
                Err(Broken),
            ]);
            Ok::<_, Infallible>(sse(http_body_util::StreamBody::new(frames)))
        }));
    let res = svc
        .oneshot(sse_request("/").body(()).unwrap())
        .await
        .unwrap();
    let mut body = res.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "data: a\n\n");
    let err = body.frame().await.unwrap().unwrap_err();
    assert!(std::error::Error::source(&*err).unwrap().is::<Broken>());
    let report = ended.recv().await.unwrap();
    let EndReason::Failed(cause) = report.reason else {
        panic!("{:?}", report.reason)
    };
    // Used to be flattened into a string.
    assert!(cause.is::<Broken>());
}

/// With the `axum` feature, the report names the route that matched.
#[cfg(feature = "axum")]
#[tokio::test]
async fn the_report_names_axums_matched_route() {
    use axum::{routing::get, Router};
    let (on_end, mut ended) = reports();
    let app: Router = Router::new()
        .route(
            "/rooms/{id}",
            get(|| async {
                let events = futures_util::stream::iter([Event::message("hi")]);
                SseBody::from_events(events).into_response()
            }),
        )
        .layer(SseLayer::new().on_end(on_end));
    let req = sse_request("/rooms/7")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();
    let report = guard("the report", ended.recv()).await.unwrap();
    let request = report.request.unwrap();
    assert_eq!(request.path, "/rooms/7");
    assert_eq!(request.route.as_deref(), Some("/rooms/{id}"));
}
