//! Decoding: `tower_sse::EventStream` against `eventsource-stream` 0.2.3, same run.
//!
//! Both decode the same chunks from a `futures_util::stream::iter` (always ready, polled with a
//! no-op waker, so no runtime cost is measured) and yield every event with its type, data, id
//! and retry. Before measuring, each workload checks that both produce the same events.
//!
//! Workloads:
//! - `small_json`: 10 000 events of ~70 bytes (`id`, `event`, one JSON `data` line), in 16 KiB
//!   chunks as a socket read delivers them;
//! - `large_multiline`: 64 events of 64 KiB, each 820 `data` lines of 80 bytes, 16 KiB chunks;
//! - `llm_tokens`: 5 000 OpenAI-style `chat.completion.chunk` events, one chunk per event as a
//!   token-by-token server writes them;
//! - `one_byte_chunks`: one event with a long `data` line fed one byte per chunk, proving the
//!   decoder never rescans: 1 MiB for ours; 4 KiB and 16 KiB for both (eventsource-stream
//!   reparses its whole buffer on every chunk, so 1 MiB would take minutes).

use std::{
    hint::black_box,
    pin::pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventsource_stream::Eventsource;
use futures_util::{stream, Stream};
use tower_sse::EventStream;

/// Polls a stream that is always ready to its end; returns (events, total data bytes).
fn drain<S, T, E>(stream: S, data_len: impl Fn(&T) -> usize) -> (usize, usize)
where
    S: Stream<Item = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut stream = pin!(stream);
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let (mut events, mut bytes) = (0, 0);
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(item)) => {
                let item = item.unwrap();
                events += 1;
                bytes += data_len(&item);
                black_box(&item);
            }
            Poll::Ready(None) => return (events, bytes),
            Poll::Pending => unreachable!("stream::iter is always ready"),
        }
    }
}

fn ours(chunks: &[Bytes]) -> (usize, usize) {
    let source = stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
    drain(EventStream::from_stream(source), |e| e.data.len())
}

fn theirs(chunks: &[Bytes]) -> (usize, usize) {
    let source = stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
    drain(source.eventsource(), |e| e.data.len())
}

fn rechunk(wire: &[u8], size: usize) -> Vec<Bytes> {
    wire.chunks(size).map(Bytes::copy_from_slice).collect()
}

fn small_json() -> Vec<Bytes> {
    let mut wire = String::new();
    for n in 0..10_000 {
        wire.push_str(&format!(
            "id: {n}\nevent: quote\ndata: {{\"symbol\":\"ACME\",\"price\":{}.{:02},\"seq\":{n}}}\n\n",
            100 + n % 50,
            n % 100
        ));
    }
    rechunk(wire.as_bytes(), 16 * 1024)
}

fn large_multiline() -> Vec<Bytes> {
    let line = "x".repeat(79) + "\n";
    let mut wire = String::new();
    for n in 0..64 {
        wire.push_str(&format!("id: {n}\n"));
        for _ in 0..820 {
            wire.push_str("data: ");
            wire.push_str(&line);
        }
        wire.push('\n');
    }
    rechunk(wire.as_bytes(), 16 * 1024)
}

fn llm_tokens() -> Vec<Bytes> {
    let words = [
        "Hello", " world", ",", " this", " is", " a", " token", " stream", ".",
    ];
    (0..5_000)
        .map(|n| {
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-9x2\",\"object\":\"chat.completion.chunk\",\"created\":1731000000,\
                 \"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}},\
                 \"finish_reason\":null}}]}}\n\n",
                words[n % words.len()]
            ))
        })
        .collect()
}

fn one_long_line(len: usize) -> Vec<Bytes> {
    let mut wire = b"data: ".to_vec();
    wire.resize(len - 2, b'a');
    wire.extend_from_slice(b"\n\n");
    rechunk(&wire, 1)
}

fn bench(c: &mut Criterion) {
    let workloads = [
        ("small_json", small_json()),
        ("large_multiline", large_multiline()),
        ("llm_tokens", llm_tokens()),
    ];
    for (name, chunks) in &workloads {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        assert_eq!(ours(chunks), theirs(chunks), "{name}: same events");
        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function("tower-sse", |b| b.iter(|| ours(black_box(chunks))));
        group.bench_function("eventsource-stream", |b| {
            b.iter(|| theirs(black_box(chunks)))
        });
        group.finish();
    }

    // Both at 4 KiB and 16 KiB: 4x the bytes should cost 4x the time, not 16x.
    for kib in [4, 16] {
        let line = one_long_line(kib * 1024);
        assert_eq!(ours(&line), theirs(&line));
        let mut group = c.benchmark_group(format!("decode/one_byte_chunks_{kib}KiB"));
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.sample_size(10);
        group.bench_function("tower-sse", |b| b.iter(|| ours(black_box(&line))));
        group.bench_function("eventsource-stream", |b| {
            b.iter(|| theirs(black_box(&line)))
        });
        group.finish();
    }

    let large = one_long_line(1024 * 1024);
    assert_eq!(ours(&large), (1, 1024 * 1024 - 8));
    let mut group = c.benchmark_group("decode/one_byte_chunks_1MiB");
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.sample_size(10);
    group.bench_function("tower-sse", |b| b.iter(|| ours(black_box(&large))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
