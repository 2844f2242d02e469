//! Streams the time once per second at `GET /sse`, with plain hyper 1.
//!
//! ```sh
//! cargo run --example clock
//! curl -N http://127.0.0.1:3000/sse
//! ```

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio_stream::{wrappers::IntervalStream, StreamExt};
use tower_sse::{Event, SseBody};
use tower_sse_serve::Server;

type Body = UnsyncBoxBody<bytes::Bytes, Infallible>;

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() != "/sse" {
        let mut res = Response::new(Full::from("GET /sse for the clock\n").boxed_unsync());
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    }
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(|_| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Event::default()
            .event("tick")?
            .id(now.as_secs().to_string())
            .map(|e| e.data(format!("{}.{:03}", now.as_secs(), now.subsec_millis())))
    });
    let body = SseBody::new(ticks)
        .retry(Duration::from_secs(2))
        .on_end(|report| {
            eprintln!(
                "stream ended: {} after {:?}",
                report.reason, report.duration
            )
        });
    Ok(body.into_response().map(|b| b.boxed_unsync()))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Socket options that report a vanished client within heartbeat + 30 s, a
    // header read timeout, bounded buffers: see `tower_sse_serve`.
    Server::new()
        .serve(listener, tower::service_fn(handle))
        .await
}
