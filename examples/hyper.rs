//! `SseBody` behind `SseLayer`, on plain hyper 1 + hyper-util, with graceful
//! shutdown on Ctrl-C that ends every stream.
//!
//! ```sh
//! ADDR=127.0.0.1:3000 cargo run --example hyper
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3000/sse
//! ```

use std::{convert::Infallible, time::Duration};

use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio_stream::wrappers::IntervalStream;
use tower::ServiceBuilder;
use tower_sse::{EndHandle, Event, LastEventId, Shutdown, SseBody, SseLayer};
use tower_sse_serve::Server;

type Body = UnsyncBoxBody<bytes::Bytes, Infallible>;

/// Far beyond any tick (a second each), and exact in JavaScript.
const MAX_TICK: u64 = (1 << 53) - 1;

/// `GET /sse`: a tick a second, resuming after `Last-Event-ID`.
pub async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/sse" {
        let mut res = Response::new(Full::from("GET /sse\n").boxed_unsync());
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    }
    // Both set by the layer.
    // A number near `u64::MAX` is not a tick this server sent: start over
    // rather than wrap.
    let start = req
        .extensions()
        .get::<LastEventId>()
        .and_then(LastEventId::as_u64)
        .filter(|&n| n <= MAX_TICK)
        .unwrap_or(0);
    let handle = req
        .extensions()
        .get::<EndHandle>()
        .cloned()
        .unwrap_or_default();
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).enumerate();
    // Never wraps: the stream ends rather than count past `u64::MAX`.
    let ticks = tokio_stream::StreamExt::map_while(ticks, move |(n, _)| {
        start.checked_add(n as u64)?.checked_add(1)
    })
    .map(|n| Event::message(format!("tick {n}")).id(n.to_string()));
    let body = SseBody::new(ticks).with_end_handle(handle);
    Ok(body.into_response().map(BodyExt::boxed_unsync))
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    let shutdown = Shutdown::new();
    let layer = SseLayer::new()
        .with_shutdown(&shutdown)
        .max_streams(10_000, Duration::from_secs(5))
        .on_end(|report| {
            eprintln!(
                "stream ended: {} after {} events",
                report.reason, report.events
            )
        });
    let service = ServiceBuilder::new().layer(layer).service_fn(handle);
    println!("listening on http://{addr}");

    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        // End every stream (clients come back in 2 s); connections still open
        // after the grace period (10 s) are closed.
        stop.trigger_with(Event::default().retry(Duration::from_secs(2)).encode());
    });
    Server::new()
        .with_shutdown(&shutdown)
        .serve(listener, service)
        .await
        .unwrap();
}
