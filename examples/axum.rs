//! axum 0.8: a route returning `SseBody`, another returning axum's own `Sse`,
//! both under `SseLayer`, stacked with tower-http's `CompressionLayer` (which
//! cannot compress the streams) and `TraceLayer`.
//!
//! ```sh
//! ADDR=127.0.0.1:3000 cargo run --example axum
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3000/sse
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3000/axum
//! ```

use std::{convert::Infallible, time::Duration};

use axum::serve::ListenerExt;
use axum::{
    response::{sse, IntoResponse},
    routing::get,
    Router,
};
use futures_util::StreamExt;
use tokio_stream::wrappers::IntervalStream;
use tower::ServiceBuilder;
use tower_http::{compression::CompressionLayer, trace::TraceLayer};
use tower_sse::{EndHandle, Event, LastEventId, SseBody, SseLayer};
use tower_sse_serve::TcpOptions;

fn ticks() -> impl tokio_stream::Stream<Item = u64> {
    IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
        .enumerate()
        .map(|(n, _)| n as u64 + 1)
}

/// Where a stream resumes: after the client's `Last-Event-ID` when it is a
/// tick this server could have sent, from the start otherwise (a number near
/// `u64::MAX` is not a resume point: it would wrap, or overflow).
pub fn resume_after(last: Option<&LastEventId>) -> u64 {
    /// Far beyond any tick (a second each), and exact in JavaScript.
    const MAX_TICK: u64 = (1 << 53) - 1;
    last.and_then(LastEventId::as_u64)
        .filter(|&n| n <= MAX_TICK)
        .unwrap_or(0)
}

/// Our body; resumes after the client's `Last-Event-ID` and watches for the end.
pub async fn ours(last: Option<LastEventId>, handle: EndHandle) -> impl IntoResponse {
    let start = resume_after(last.as_ref());
    // A task that learns when the client leaves (or the stream ends otherwise).
    let watcher = handle.clone();
    tokio::spawn(async move {
        let report = watcher.ended().await;
        eprintln!("/sse: {} after {} events", report.reason, report.events);
    });
    // Never wraps: the stream ends rather than count past `u64::MAX`.
    let events = tokio_stream::StreamExt::map_while(ticks(), move |n| start.checked_add(n))
        .map(|n| Event::message(format!("tick {n}")).id(n.to_string()));
    SseBody::new(events).with_end_handle(handle)
}

/// axum's own `Sse`: the layer adds heartbeats and headers, and reports its end.
async fn theirs() -> impl IntoResponse {
    let events =
        ticks().map(|n| Ok::<_, Infallible>(sse::Event::default().data(format!("axum tick {n}"))));
    sse::Sse::new(events)
}

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let app = Router::new()
        .route("/sse", get(ours))
        .route("/axum", get(theirs))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(SseLayer::new().on_end(|r| eprintln!("stream ended: {}", r.reason)))
                // Compress everything: the layer above keeps the streams out of it.
                .layer(CompressionLayer::new().compress_when(|_, _, _: &_, _: &_| true)),
        );
    // With `axum::serve`, the crate's socket options go on through `tap_io`, so
    // a vanished client is reported within heartbeat + 30 s. (`tower_sse_serve::Server`
    // also sets a header read timeout and bounded buffers; see the chat example.)
    let options = TcpOptions::new();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .unwrap()
        .tap_io(move |tcp| {
            let _ = options.apply(tcp);
        });
    println!("listening on http://{addr}");
    axum::serve(listener, app).await.unwrap();
}
