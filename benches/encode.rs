//! Encoding one event: `tower_sse::Event` against axum 0.8's `Event`, same run.
//!
//! axum writes an event's bytes while the event is built (each builder call appends
//! to a `BytesMut`) and has no public way to get them except through its `Sse`
//! response body. So the fair comparison is "from the same owned inputs to the
//! bytes": ours is build + [`Event::encode`], axum's is build only. Building is
//! a lower bound of axum's cost (its private `finalize` still appends the final
//! `\n` and freezes), so the ratio favours axum slightly. Inputs are handed over
//! as owned `String`s (as from `n.to_string()` or `serde_json::to_string`) made in
//! criterion's untimed setup, so neither side pays for making them. We also
//! measure `encode` of an already built event, and a plain `Bytes::copy_from_slice`
//! of the same output bytes as the floor for the 64 KiB event.
//!
//! Before measuring, every case checks that both libraries produce exactly the same
//! bytes (axum's taken from its real `Sse` body).

use std::{convert::Infallible, hint::black_box};

use axum::response::{sse as axum_sse, IntoResponse};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt;
use http_body_util::BodyExt;
use tower_sse::Event;

/// The inputs of one event, owned, in the order both encoders write them.
#[derive(Clone)]
struct Inputs {
    comment: Option<String>,
    event: Option<&'static str>,
    id: Option<String>,
    data: Option<String>,
}

fn ours(i: Inputs) -> Event {
    let mut e = Event::default();
    if let Some(c) = i.comment {
        e = e.comment(c);
    }
    if let Some(t) = i.event {
        e = e.event(t).expect("valid type");
    }
    if let Some(id) = i.id {
        e = e.id(id).expect("valid id");
    }
    if let Some(d) = i.data {
        e = e.data(d);
    }
    e
}

fn axum(i: Inputs) -> axum_sse::Event {
    let mut e = axum_sse::Event::default();
    if let Some(c) = i.comment {
        e = e.comment(c);
    }
    if let Some(t) = i.event {
        e = e.event(t);
    }
    if let Some(id) = i.id {
        e = e.id(id);
    }
    if let Some(d) = i.data {
        e = e.data(d);
    }
    e
}

/// axum's bytes for one event, from its real `Sse` body.
fn axum_bytes(e: axum_sse::Event) -> Bytes {
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(e) });
    let mut body = axum_sse::Sse::new(stream).into_response().into_body();
    let frame = body
        .frame()
        .now_or_never()
        .expect("ready")
        .expect("a frame");
    frame.expect("no error").into_data().expect("data")
}

fn cases() -> Vec<(&'static str, Inputs)> {
    let json = serde_json::json!({
        "id": 12345, "user": "alice", "action": "update",
        "items": [1, 2, 3, 4, 5], "ts": "2026-11-23T18:49:21Z", "ok": true
    })
    .to_string();
    assert!((90..=110).contains(&json.len()), "~100 B of JSON");
    let lines: Vec<String> = (0..20)
        .map(|n| format!("line {n:02}: the quick brown fox jumps"))
        .collect();
    let big: String = "0123456789abcdef".repeat(64 * 1024 / 16);
    vec![
        (
            "typical",
            Inputs {
                comment: None,
                event: Some("update"),
                id: Some("12345".into()),
                data: Some(json),
            },
        ),
        (
            "multiline_20",
            Inputs {
                comment: None,
                event: None,
                id: None,
                data: Some(lines.join("\n")),
            },
        ),
        (
            "data_64k",
            Inputs {
                comment: None,
                event: None,
                id: None,
                data: Some(big),
            },
        ),
        (
            "comment",
            Inputs {
                comment: Some("keep-alive 2026-11-23T18:49:21Z".into()),
                event: None,
                id: None,
                data: None,
            },
        ),
    ]
}

fn bench(c: &mut Criterion) {
    for (name, inputs) in cases() {
        let wire = ours(inputs.clone()).encode().into_bytes();
        assert_eq!(wire, axum_bytes(axum(inputs.clone())), "{name}: same bytes");

        let mut g = c.benchmark_group(format!("encode/{name}"));
        g.throughput(Throughput::Bytes(wire.len() as u64));
        // Every routine drops its output inside the timed region, so frees count.
        g.bench_function("ours_build_encode", |b| {
            b.iter_batched(
                || inputs.clone(),
                |i| drop(black_box(ours(black_box(i)).encode())),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("axum_build", |b| {
            b.iter_batched(
                || inputs.clone(),
                |i| drop(black_box(axum(black_box(i)))),
                BatchSize::SmallInput,
            )
        });
        let built = ours(inputs.clone());
        g.bench_function("ours_encode_built", |b| {
            b.iter(|| drop(black_box(black_box(&built).encode())))
        });
        if name == "data_64k" {
            g.bench_function("memcpy", |b| {
                b.iter(|| drop(black_box(Bytes::copy_from_slice(black_box(&wire[..])))))
            });
            // Diagnostic: the line-break scan alone, which a memcpy does not do.
            let data = inputs.data.clone().unwrap_or_default();
            g.bench_function("scan_only", |b| {
                b.iter(|| memchr::memchr2(b'\n', b'\r', black_box(data.as_bytes())))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
