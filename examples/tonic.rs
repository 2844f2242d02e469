//! A tonic 0.14 gRPC service (the standard health service, so no code
//! generation) and an SSE route on ONE port, served by one server. The layer
//! wraps the SSE route only; gRPC is untouched.
//!
//! ```sh
//! ADDR=127.0.0.1:3000 cargo run --example tonic
//! curl -N -H 'accept: text/event-stream' http://127.0.0.1:3000/sse
//! grpcurl -plaintext 127.0.0.1:3000 grpc.health.v1.Health/Check
//! ```

use std::time::Duration;

use axum::{routing::get, Router};
use futures_util::StreamExt;
use tokio_stream::wrappers::IntervalStream;
use tower_sse::{Event, SseBody, SseLayer};
use tower_sse_serve::Server;

#[tokio::main]
async fn main() {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let (_reporter, health) = tonic_health::server::health_reporter();
    let grpc = tonic::service::Routes::new(health).into_axum_router();
    let sse = Router::new()
        .route(
            "/sse",
            get(|| async {
                let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
                    .enumerate()
                    .map(|(n, _)| Event::message(format!("tick {}", n + 1)));
                SseBody::from_events(ticks).into_response()
            }),
        )
        .layer(SseLayer::new());
    // `merge` after `layer`: the layer stays on the SSE route.
    let app = sse.merge(grpc);
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("listening on http://{addr}");
    // HTTP/1.1 and h2c (which gRPC needs), with the crate's serving defaults.
    Server::new().serve(listener, app).await.unwrap();
}
