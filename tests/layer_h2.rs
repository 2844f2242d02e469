//! `SseLayer` over HTTP/2 (h2c, hyper-util's auto builder).

mod layer_support;

use std::{convert::Infallible, time::Duration};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use layer_support::*;
use tokio::sync::mpsc;
use tower::{service_fn, ServiceBuilder};
use tower_sse::{EndReason, KeepAlive, SseLayer};

#[tokio::test]
async fn sse_over_h2c_with_heartbeats_and_reset_detection() {
    let (tx, body) = channel();
    let body = std::sync::Arc::new(std::sync::Mutex::new(Some(body)));
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let body = match req.uri().path() {
            "/sse" => body.lock().unwrap().take().unwrap().boxed_unsync(),
            _ => http_body_util::Full::from("ok").boxed_unsync(),
        };
        let mut res = sse(body);
        // Left by a careless inner service; forbidden on HTTP/2.
        res.headers_mut()
            .insert("connection", "keep-alive".parse().unwrap());
        async move { Ok::<Response<_>, Infallible>(res) }
    });
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let layer = SseLayer::new()
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_millis(10))
                .text("hb"),
        )
        .on_end(move |r| drop(ended_tx.send(r)));
    let server = serve(ServiceBuilder::new().layer(layer).service(svc)).await;

    let mut c = get_h2(
        server.addr,
        Request::get("/sse").header("accept", "text/event-stream"),
    )
    .await;
    assert_eq!(c.res.version(), http::Version::HTTP_2);
    assert_eq!(c.res.status(), StatusCode::OK);
    assert!(c.res.headers().get("connection").is_none());
    assert_eq!(c.res.headers()["x-accel-buffering"], "no");

    tx.send("data: over h2\n\n").unwrap();
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| {
        b.ends_with(b": hb\n\n: hb\n\n")
    })
    .await;
    assert!(buf.starts_with(b"data: over h2\n\n: hb\n\n"));

    // Dropping the body resets the stream (RST_STREAM); the connection stays up.
    drop(c.res);
    let report = guard("the reset is seen", ended.recv()).await.unwrap();
    assert_eq!((report.reason, report.events), (EndReason::ClientGone, 1));
    // The same connection still serves requests: only the stream was reset.
    let mut sender = c.h2.take().unwrap();
    let uri = format!("http://{}/other", server.addr);
    let req = Request::get(uri)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = guard("a second request", sender.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!c.conn.is_finished());
    c.conn.abort();
    server.shutdown().await;
    drop(tx);
}
