//! Instructions per non-SSE request through `SseLayer`, against the bare
//! service, for `valgrind --tool=callgrind` (immune to the wall-clock noise of a
//! shared machine).
//!
//! ```sh
//! cargo build --release -p tower-sse-tools --bin layer_cost
//! tools/layer_cost.sh        # runs the four counts below and prints the ratio
//! ```
//!
//! `layer_cost bare N` and `layer_cost layer N` build a current-thread runtime,
//! then send N requests through `ServiceExt::oneshot` (the same request, the
//! same `service_fn` answering JSON with a `Full` body, the body collected)
//! without and with the layer. Two counts per side, N = 1 000 and 11 000,
//! cancel the start-up: the difference divided by 10 000 is the cost of one
//! request.

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_sse::SseLayer;

fn plain_service(
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone {
    tower::service_fn(|_req: Request<()>| async {
        let res = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(b"{\"ok\":true}")))
            .unwrap();
        Ok::<_, Infallible>(res)
    })
}

/// The request of `benches/layer.rs`.
fn request() -> Request<()> {
    Request::get("/api/items?page=2")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, br")
        .body(())
        .unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let side = args.next().unwrap_or_else(|| "layer".into());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        match side.as_str() {
            "bare" => {
                let svc = plain_service();
                for _ in 0..n {
                    let res = svc.clone().oneshot(request()).await.unwrap();
                    black_box(res.into_body().collect().await.unwrap().to_bytes());
                }
            }
            "layer" => {
                let svc = tower::ServiceBuilder::new()
                    .layer(SseLayer::new())
                    .service(plain_service());
                for _ in 0..n {
                    let res = svc.clone().oneshot(request()).await.unwrap();
                    black_box(res.into_body().collect().await.unwrap().to_bytes());
                }
            }
            other => panic!("unknown side {other:?}: bare or layer"),
        }
    });
}
