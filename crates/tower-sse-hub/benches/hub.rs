//! Fan-out: one event published to 1k and 10k subscribers, each with its own
//! response body, polled once for the frame the connection would write.
//!
//! - `tower-sse Hub`: `Hub::publish` encodes once; every `SseBody` over a
//!   `Subscriber` writes a clone of the same bytes.
//! - `tokio broadcast + axum Event` (the anchor, the usual axum chat): the message
//!   goes through `tokio::sync::broadcast`, and every subscriber's `axum::Sse`
//!   body builds and encodes its own `axum::response::sse::Event` (id and data).
//!
//! Publish throughput: two threads publishing to 1, 16 and 1 024 topics (round
//! robin), each topic with one subscriber that does not read.
//!
//! - `tower-sse Hub`: `Hub::publish` (per-topic locks, the event encoded once,
//!   history kept).
//! - `tower-sse Publisher`: the same through a `Publisher` per topic and
//!   thread (`Hub::publisher`), which finds its topic once, as each
//!   broadcast sender is its channel.
//! - `tokio broadcast` (the anchor): one `tokio::sync::broadcast` channel of
//!   capacity 1 024 per topic, sending the same event encoded by tower-sse (so
//!   both sides pay the same encoding).
//!
//! Run: `cargo bench --bench hub -- --warm-up-time 1 --measurement-time 3`.

use std::{
    convert::Infallible,
    hint::black_box,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::response::{sse, IntoResponse};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::{FutureExt, StreamExt};
use http_body::Body;
use tokio_stream::wrappers::BroadcastStream;
use tower_sse::{Event, KeepAlive, SseBody};
use tower_sse_hub::Hub;

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
                let sub = hub.subscribe("t", None).now_or_never().unwrap().unwrap();
                Box::pin(SseBody::from_events(sub).keep_alive(KeepAlive::disabled()))
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("tower-sse Hub", n), &n, |b, _| {
            b.iter(|| {
                let published = hub.publish("t", Event::message(DATA)).now_or_never();
                black_box(published.unwrap().unwrap());
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

/// Runs `iters` publishes split over two threads and returns the wall time.
fn two_threads(iters: u64, publish: impl Fn(usize, u64) + Sync) -> Duration {
    two_threads_with(iters, |_| (), |(), thread, i| publish(thread, i))
}

/// [`two_threads`] with state of each thread's own (its publishers), made by
/// `make` on that thread.
fn two_threads_with<S>(
    iters: u64,
    make: impl Fn(usize) -> S + Sync,
    publish: impl Fn(&mut S, usize, u64) + Sync,
) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let (make, publish) = (&make, &publish);
            scope.spawn(move || {
                let mut state = make(thread);
                for i in 0..iters / 2 {
                    publish(&mut state, thread, i);
                }
            });
        }
    });
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    publish_from_two_threads(c, "publish from 2 threads", |_| DATA, true);
}

/// The chat message of [`DATA`] cut to one of seven lengths (112 to 130
/// bytes) by `i`: a room's messages are not all one size, so the history's
/// bytes change with almost every publish.
fn sized(i: u64) -> &'static str {
    &DATA[..DATA.len() - (i as usize % 7) * 3]
}

/// [`throughput`]'s `Publisher` and its anchor with events of several sizes.
fn throughput_sizes_vary(c: &mut Criterion) {
    publish_from_two_threads(c, "publish from 2 threads, sizes vary", sized, false);
}

/// The group `name`: publishes of `data(i)` from two threads to 1, 16 and
/// 1 024 topics through `Publisher` (and `Hub::publish` when `with_hub`),
/// against `tokio::sync::broadcast` sending the same events encoded.
/// (Generic over `data`, so that it inlines: no call through a pointer in
/// the timed loop.)
fn publish_from_two_threads(
    c: &mut Criterion,
    name: &str,
    data: impl Fn(u64) -> &'static str + Copy + Sync,
    with_hub: bool,
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(1));
    for topics in [1usize, 16, 1_024] {
        let names: Vec<String> = (0..topics).map(|t| format!("topic-{t}")).collect();
        let hub = Hub::new();
        let _subs: Vec<_> = names
            .iter()
            .map(|t| hub.subscribe(t, None).now_or_never().unwrap().unwrap())
            .collect();
        if with_hub {
            group.bench_with_input(
                BenchmarkId::new("tower-sse Hub", topics),
                &topics,
                |b, _| {
                    b.iter_custom(|iters| {
                        two_threads(iters, |thread, i| {
                            let topic = &names[(i as usize * 2 + thread) % topics];
                            let published =
                                hub.publish(topic, Event::message(data(i))).now_or_never();
                            black_box(published.unwrap().unwrap());
                        })
                    })
                },
            );
        }

        group.bench_with_input(
            BenchmarkId::new("tower-sse Publisher", topics),
            &topics,
            |b, _| {
                b.iter_custom(|iters| {
                    two_threads_with(
                        iters,
                        |_| names.iter().map(|t| hub.publisher(t)).collect::<Vec<_>>(),
                        |publishers, thread, i| {
                            let publisher = &mut publishers[(i as usize * 2 + thread) % topics];
                            let event = Event::message(data(i));
                            black_box(publisher.publish(event).now_or_never().unwrap().unwrap());
                        },
                    )
                })
            },
        );

        let channels: Vec<_> = (0..topics)
            .map(|_| tokio::sync::broadcast::channel::<tower_sse::EncodedEvent>(1_024))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("tokio broadcast", topics),
            &topics,
            |b, _| {
                b.iter_custom(|iters| {
                    two_threads(iters, |thread, i| {
                        let (tx, _) = &channels[(i as usize * 2 + thread) % topics];
                        black_box(tx.send(Event::message(data(i)).encode()).unwrap());
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fanout, throughput, throughput_sizes_vary);
criterion_main!(benches);
