//! warp 0.4 serving SSE through `SseLayer`, via `warp::service`.
//!
//! ```sh
//! ADDR=127.0.0.1:3000 cargo run --example warp
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3000/sse
//! ```

use std::{convert::Infallible, time::Duration};

use futures_util::StreamExt;
use tokio_stream::wrappers::IntervalStream;
use tower::ServiceBuilder;
use tower_sse::SseLayer;
use tower_sse_serve::Server;
use warp::Filter;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let route = warp::path("sse").and(warp::get()).map(|| {
        let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
            .enumerate()
            .map(|(n, _)| {
                Ok::<_, Infallible>(
                    warp::sse::Event::default()
                        .id((n + 1).to_string())
                        .data(format!("tick {}", n + 1)),
                )
            });
        warp::sse::reply(ticks)
    });
    // The layer adds heartbeats, stream headers and end reports to warp's reply.
    let service = ServiceBuilder::new()
        .layer(SseLayer::new().on_end(|r| eprintln!("stream ended: {}", r.reason)))
        .service(warp::service(route));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on http://{addr}");
    // The crate's serving defaults (see `tower_sse_serve`).
    Server::new().serve(listener, service).await.unwrap();
}
