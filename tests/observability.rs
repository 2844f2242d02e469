//! The `metrics` and `tracing` features: what a stream records, with a
//! recorder and a subscriber written here (no exporter needed).
#![cfg(all(feature = "metrics", feature = "tracing"))]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use http::Request;
use http_body::Body;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::{Layer, Service};
use tower_sse::{metrics as names, Event, SseBody, SseLayer};

/// Every series by its key (name and labels), as a number.
#[derive(Default)]
struct Recorded {
    values: Mutex<BTreeMap<String, Arc<Value>>>,
}

#[derive(Default)]
struct Value(AtomicU64);

impl metrics::CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl metrics::GaugeFn for Value {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, Ordering::SeqCst);
    }
    fn decrement(&self, value: f64) {
        self.0.fetch_sub(value as u64, Ordering::SeqCst);
    }
    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::SeqCst);
    }
}

impl Recorded {
    fn value(&self, key: &Key) -> Arc<Value> {
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name += &format!("{{{}={}}}", label.key(), label.value());
        }
        self.values.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |v| v.0.load(Ordering::SeqCst))
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn drain<B: Body + Unpin>(body: &mut B) {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    while let Poll::Ready(Some(_)) = Pin::new(&mut *body).poll_frame(&mut cx) {}
}

#[test]
fn a_stream_records_its_metrics_once_even_under_the_layer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let recorded = Recorded::default();
    metrics::with_local_recorder(&recorded, || {
        // A body alone.
        let events = futures_util::stream::iter([Event::message("a"), Event::message("b")]);
        let mut body = SseBody::from_events(events);
        drain(&mut body);
        assert_eq!(recorded.get(names::STREAMS_OPEN), 0);
        drop(body);

        // A body under the layer: counted once, by the layer.
        let mut svc = SseLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
            let events = futures_util::stream::iter([Event::message("c")]);
            Ok::<_, Infallible>(SseBody::from_events(events).into_response())
        }));
        let req = Request::get("/sse")
            .header("accept", "text/event-stream")
            .body(())
            .unwrap();
        let res = futures_executor(svc.call(req)).unwrap();
        let mut body = res.into_body();
        assert_eq!(recorded.get(names::STREAMS_OPEN), 1);
        drain(&mut body);
        drop(body);
    });
    assert_eq!(recorded.get(names::STREAMS_OPEN), 0);
    assert_eq!(recorded.get(names::EVENTS_SENT), 3);
    assert_eq!(recorded.get(names::BYTES_SENT), 3 * 9);
    let completed = format!("{}{{reason=completed}}", names::STREAMS_ENDED);
    assert_eq!(recorded.get(&completed), 2);
}

fn futures_executor<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Spans and events, as `name field=value ...` lines.
#[derive(Default, Clone)]
struct Lines(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!(" {}={:?}", field.name(), value);
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0 += &format!(" {}={}", field.name(), value);
    }
}

impl tracing::Subscriber for Lines {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(format!("span {}", span.metadata().name()));
        span.record(&mut fields);
        let mut lines = self.0.lock().unwrap();
        lines.push(fields.0);
        tracing::span::Id::from_u64(lines.len() as u64)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(format!("event {}", event.metadata().level()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Serialises this file's tests: tracing caches whether a callsite is enabled
/// when it is first hit, so a test on another thread without this test's
/// subscriber could leave the stream's span cached as disabled.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_span_per_stream_with_the_request_and_an_event_for_its_end() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lines = Lines::default();
    tracing::subscriber::with_default(lines.clone(), || {
        let mut svc = SseLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
            let events = futures_util::stream::iter([Event::message("a")]);
            Ok::<_, Infallible>(SseBody::from_events(events).into_response())
        }));
        let req = Request::get("/feed?token=secret")
            .header("accept", "text/event-stream")
            .header("x-request-id", "req-7")
            .body(())
            .unwrap();
        let mut body = futures_executor(svc.call(req)).unwrap().into_body();
        drain(&mut body);
    });
    let lines = lines.0.lock().unwrap();
    let span = lines
        .iter()
        .find(|l| l.starts_with("span sse_stream"))
        .unwrap();
    assert!(span.contains("method=GET"), "{span}");
    assert!(span.contains("path=/feed"), "{span}");
    assert!(span.contains("request_id=req-7"), "{span}");
    assert!(!span.contains("secret"), "{span}");
    let end = lines
        .iter()
        .find(|l| l.contains("sse stream ended"))
        .unwrap();
    assert!(end.starts_with("event INFO"), "{end}");
    assert!(end.contains("reason=completed"), "{end}");
    assert!(end.contains("events=1"), "{end}");
    // One span for the stream, though a body and a layer both saw it.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("span sse_stream"))
            .count(),
        1
    );
}
