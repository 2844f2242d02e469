//! 100 000 ready events pulled through a body to completion: `SseBody` against
//! axum 0.8's `Sse` response body, same run.
//!
//! Both bodies get the same stream: events built from the same inputs as they are
//! pulled (a fresh `id` string, the type `update`, ~100 B of JSON borrowed as
//! `&str`), so each side pays for building and encoding its own events, as a
//! server does. A second case sends one event that was encoded once and shared,
//! as a broadcast does (ours clones an `EncodedEvent`, axum clones its `Event`).
//! The body is polled with a no-op waker, as a connection would after each write;
//! frames and bytes are counted and checked, so frames per event (coalescing)
//! is printed once before measuring.

use std::{
    convert::Infallible,
    hint::black_box,
    pin::pin,
    task::{Context, Poll},
};

use axum::response::{sse as axum_sse, IntoResponse};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::{stream, StreamExt};
use http_body::Body;
use tower_sse::{Event, SseBody};

const EVENTS: u64 = 100_000;

fn json() -> String {
    serde_json::json!({
        "id": 12345, "user": "alice", "action": "update",
        "items": [1, 2, 3, 4, 5], "ts": "2026-11-23T18:49:21Z", "ok": true
    })
    .to_string()
}

/// Polls `body` to its end: (frames, bytes).
fn drain<B: Body>(body: B) -> (u64, u64)
where
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let (mut frames, mut bytes) = (0, 0);
    loop {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                let data = frame.expect("no error").into_data().ok().expect("data");
                frames += 1;
                bytes += bytes::Buf::remaining(&data) as u64;
                black_box(data);
            }
            Poll::Ready(None) => return (frames, bytes),
            Poll::Pending => unreachable!("every event is ready"),
        }
    }
}

fn ours_built(json: &'static str) -> (u64, u64) {
    let events = stream::iter(0..EVENTS).map(move |i| {
        Event::default()
            .event("update")
            .expect("valid")
            .id(i.to_string())
            .expect("valid")
            .data(json)
    });
    drain(SseBody::from_events(events))
}

fn axum_built(json: &'static str) -> (u64, u64) {
    let events = stream::iter(0..EVENTS).map(move |i| {
        Ok::<_, Infallible>(
            axum_sse::Event::default()
                .event("update")
                .id(i.to_string())
                .data(json),
        )
    });
    drain(axum_sse::Sse::new(events).into_response().into_body())
}

fn bench(c: &mut Criterion) {
    let json: &'static str = Box::leak(json().into_boxed_str());
    let ours = ours_built(json);
    let axum = axum_built(json);
    assert_eq!(ours.1, axum.1, "same bytes");
    println!(
        "built events: ours {} frames ({:.4}/event), axum {} frames ({:.4}/event), {} bytes",
        ours.0,
        ours.0 as f64 / EVENTS as f64,
        axum.0,
        axum.0 as f64 / EVENTS as f64,
        ours.1
    );

    let mut g = c.benchmark_group("body_100k/built");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    g.bench_function("ours", |b| b.iter(|| ours_built(black_box(json))));
    g.bench_function("axum", |b| b.iter(|| axum_built(black_box(json))));
    g.finish();

    let shared_ours = Event::default()
        .event("update")
        .unwrap()
        .id("12345")
        .unwrap()
        .data(json)
        .encode();
    let shared_axum = axum_sse::Event::default()
        .event("update")
        .id("12345")
        .data(json);
    let run_ours = || {
        let e = shared_ours.clone();
        drain(SseBody::from_events(
            stream::repeat_with(move || e.clone()).take(EVENTS as usize),
        ))
    };
    let run_axum = || {
        let e = shared_axum.clone();
        let events = stream::repeat_with(move || Ok::<_, Infallible>(e.clone()));
        drain(
            axum_sse::Sse::new(events.take(EVENTS as usize))
                .into_response()
                .into_body(),
        )
    };
    let (o, a) = (run_ours(), run_axum());
    assert_eq!(o.1, a.1, "same bytes");
    println!(
        "shared event: ours {} frames ({:.4}/event), axum {} frames",
        o.0,
        o.0 as f64 / EVENTS as f64,
        a.0
    );
    let mut g = c.benchmark_group("body_100k/shared");
    g.throughput(Throughput::Elements(EVENTS));
    g.sample_size(10);
    g.bench_function("ours", |b| b.iter(run_ours));
    g.bench_function("axum", |b| b.iter(run_axum));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
