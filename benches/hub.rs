//! Fan-out: one event published to 1k and 10k subscribers, each with its own
//! response body, polled once for the frame the connection would write.
//!
//! - `tower-sse Hub`: `Hub::publish` encodes once; every `SseBody` over a
//!   `Subscriber` writes a clone of the same bytes.
//! - `tokio broadcast + axum Event` (the anchor, the usual axum chat): the message
//!   goes through `tokio::sync::broadcast`, and every subscriber's `axum::Sse`
//!   body builds and encodes its own `axum::response::sse::Event` (id and data).
//!
//! Run: `cargo bench --bench hub -- --warm-up-time 1 --measurement-time 3`.

use std::{
    convert::Infallible,
    hint::black_box,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::{sse, IntoResponse};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use http_body::Body;
use tokio_stream::wrappers::BroadcastStream;
use tower_sse::{Event, Hub, KeepAlive, SseBody};

/// A typical chat message.
const DATA: &str = r#"{"id":1,"room":"lobby","name":"alice","text":"hello everyone, how is it going today?","ts":1795460162100}"#;

/// Polls each body once and checks it produced one data frame.
fn poll_all<B>(bodies: &mut [Pin<Box<B>>], cx: &mut Context<'_>) -> usize
where
    B: Body<Data = bytes::Bytes> + ?Sized,
    B::Error: std::fmt::Debug,
{
    let mut bytes = 0;
    for body in bodies {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                bytes += frame.data_ref().map_or(0, |d| d.len());
            }
            other => panic!("no frame: {:?}", other.map(|f| f.map(|f| f.is_ok()))),
        }
    }
    black_box(bytes)
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let mut group = c.benchmark_group("publish one event");
    for n in [1_000u64, 10_000] {
        group.throughput(Throughput::Elements(n));

        let hub = Hub::new();
        let mut bodies: Vec<_> = (0..n)
            .map(|_| {
                Box::pin(SseBody::from_events(hub.subscribe("t")).keep_alive(KeepAlive::disabled()))
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("tower-sse Hub", n), &n, |b, _| {
            b.iter(|| {
                hub.publish("t", Event::message(DATA));
                poll_all(&mut bodies, &mut cx)
            })
        });
        drop(bodies);

        let (tx, _) = tokio::sync::broadcast::channel::<(u64, Arc<str>)>(16);
        let mut bodies: Vec<_> = (0..n)
            .map(|_| {
                let events = BroadcastStream::new(tx.subscribe()).map(|msg| {
                    let (id, data) = msg.expect("no lag in this bench");
                    Ok::<_, Infallible>(sse::Event::default().id(id.to_string()).data(&*data))
                });
                Box::pin(sse::Sse::new(events).into_response().into_body())
            })
            .collect();
        let data: Arc<str> = Arc::from(DATA);
        let mut id = 0;
        group.bench_with_input(
            BenchmarkId::new("tokio broadcast + axum Event", n),
            &n,
            |b, _| {
                b.iter(|| {
                    id += 1;
                    tx.send((id, data.clone())).unwrap();
                    poll_all(&mut bodies, &mut cx)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
