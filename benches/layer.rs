//! The cost of `SseLayer`: on a non-SSE request/response (the goal: within noise
//! of the bare service), and on an SSE response made by `SseBody` (vs the same
//! service without the layer). Each side builds the same request and calls the
//! same service with `oneshot`; only the layer differs.
//!
//! ```sh
//! cargo bench --bench layer -- --warm-up-time 1 --measurement-time 3
//! ```

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_sse::{Event, SseBody, SseLayer};

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

fn request() -> Request<()> {
    Request::get("/api/items?page=2")
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, br")
        .body(())
        .unwrap()
}

const EVENTS: usize = 100;

fn sse_service() -> impl Service<
    Request<()>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = Infallible>>,
    Error = Infallible,
> + Clone {
    tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(events().into_response()) })
}

fn sse_request() -> Request<()> {
    Request::get("/sse")
        .header("accept", "text/event-stream")
        .body(())
        .unwrap()
}

fn events() -> SseBody<tower_sse::OkEvents<futures_util::stream::Iter<std::vec::IntoIter<Event>>>> {
    let events: Vec<Event> = (0..EVENTS)
        .map(|n| Event::message(format!("event number {n}")))
        .collect();
    SseBody::from_events(futures_util::stream::iter(events))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("layer/non_sse");
    group.bench_function("bare", |b| {
        let svc = plain_service();
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(request()).await.unwrap();
                black_box(res.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });
    group.bench_function("through_layer", |b| {
        let svc = tower::ServiceBuilder::new()
            .layer(SseLayer::new())
            .service(plain_service());
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(request()).await.unwrap();
                black_box(res.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });
    group.finish();

    let bytes = rt.block_on(events().collect()).unwrap().to_bytes().len();
    let mut group = c.benchmark_group("layer/sse_100_events");
    group.throughput(Throughput::Bytes(bytes as u64));
    // Both sides build the same request and call the same service; only the
    // layer differs.
    group.bench_function("sse_body_alone", |b| {
        let svc = sse_service();
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(sse_request()).await.unwrap();
                black_box(res.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });
    group.bench_function("sse_body_through_layer", |b| {
        let svc = tower::ServiceBuilder::new()
            .layer(SseLayer::new())
            .service(sse_service());
        b.to_async(&rt).iter(|| {
            let svc = svc.clone();
            async move {
                let res = svc.oneshot(sse_request()).await.unwrap();
                black_box(res.into_body().collect().await.unwrap().to_bytes())
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
