//! WHATWG "Server-sent events" parsing conformance for [`tower_sse::Decoder`].
//!
//! The cases live in `tests/data/conformance.json` (shared with the cross-checks against
//! other parsers). Each case runs with its input whole, split in two at every byte, split in
//! three at every pair of positions (short inputs), one byte at a time, and through
//! [`tower_sse::EventStream`].

use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/decode.rs"]
mod decode_example;

use futures_util::{stream, StreamExt};
use proptest::prelude::*;
use serde_json::Value;
mod conformance;
use conformance::{cases, event_json, Case};
use tower_sse::{decode::Frame, DecodeError, Decoder, Event, EventStream, MessageEvent};

fn to_json(event: &MessageEvent) -> Value {
    event_json(&event.event, &event.data, &event.id, event.retry)
}

/// What a decoder produced from some chunks.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Value>,
    last_event_id: String,
    retry: Option<Duration>,
}

fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame().unwrap() {
            match frame {
                Frame::Event(event) => events.push(to_json(&event)),
                other => panic!("comments are off, got {other:?}"),
            }
        }
    }
    decoder.finish();
    Outcome {
        events,
        last_event_id: decoder.last_event_id().to_owned(),
        retry: decoder.retry(),
    }
}

fn check(case: &Case, how: &str, got: &Outcome) {
    let context = || format!("case `{}` ({}), {how}", case.name, case.rule);
    assert_eq!(got.events, case.events, "{}", context());
    if let Some(id) = &case.last_event_id {
        assert_eq!(&got.last_event_id, id, "{}: last event id", context());
    }
    if let Some(retry) = case.final_retry {
        assert_eq!(
            got.retry,
            Some(Duration::from_millis(retry)),
            "{}: retry",
            context()
        );
    }
}

#[test]
fn conformance_whole() {
    for case in cases() {
        check(&case, "whole", &decode([&case.bytes()[..]]));
    }
}

#[test]
fn conformance_split_in_two_everywhere() {
    for case in cases() {
        let bytes = case.bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            check(&case, &format!("split at {at}"), &decode([a, b]));
        }
    }
}

#[test]
fn conformance_split_in_three_everywhere() {
    for case in cases().into_iter().filter(|c| c.bytes().len() <= 80) {
        let bytes = case.bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let got = decode([&bytes[..i], &bytes[i..j], &bytes[j..]]);
                check(&case, &format!("split at {i} and {j}"), &got);
            }
        }
    }
}

#[test]
fn conformance_one_byte_at_a_time() {
    for case in cases() {
        let bytes = case.bytes();
        check(&case, "byte by byte", &decode(bytes.chunks(1)));
    }
}

#[tokio::test]
async fn conformance_event_stream() {
    for case in cases() {
        let bytes = case.bytes();
        for size in [1, 2, 3, 7, usize::MAX] {
            let chunks: Vec<_> = bytes
                .chunks(size.min(bytes.len().max(1)))
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect();
            let mut events = EventStream::from_stream(stream::iter(chunks));
            let mut got = Vec::new();
            while let Some(event) = events.next().await {
                got.push(to_json(&event.unwrap()));
            }
            assert_eq!(got, case.events, "case `{}`, chunks of {size}", case.name);
        }
    }
}

/// `examples/decode.rs` prints exactly the expected events, keys in order.
#[test]
fn conformance_decode_example() {
    for case in cases() {
        let mut out = Vec::new();
        decode_example::run(&case.bytes()[..], &mut out).unwrap();
        let expected: String = case
            .events
            .iter()
            .map(|e| {
                let mut line = format!(
                    r#"{{"type":{},"data":{},"id":{}"#,
                    e["type"], e["data"], e["id"]
                );
                if let Some(retry) = e.get("retry") {
                    line.push_str(&format!(r#","retry":{retry}"#));
                }
                line + "}\n"
            })
            .collect();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "case {}",
            case.name
        );
    }
}

#[test]
fn every_rule_has_cases() {
    let cases = cases();
    assert!(cases.len() >= 80);
    let mut names: Vec<_> = cases.iter().map(|c| &c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
}

#[test]
fn comments_surface_when_enabled() {
    let mut decoder = Decoder::new().comments(true);
    decoder.push(b":\n:  two\n:one\ndata: x\n: after\n\n");
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        frames.push(frame);
    }
    let comment = |s: &str| Frame::Comment(s.to_owned());
    assert_eq!(frames[..3], [comment(""), comment(" two"), comment("one")]);
    assert_eq!(frames[3], comment("after"));
    assert!(matches!(&frames[4], Frame::Event(e) if e.data == "x"));
    assert_eq!(frames.len(), 5);
}

#[test]
fn too_large_partial_line_is_reported_once_and_skipped() {
    let mut decoder = Decoder::new().max_event_size(12);
    // The line is 11 bytes, within the limit.
    decoder.push(b"data: first\n\n");
    assert!(matches!(decoder.next_frame(), Ok(Some(Frame::Event(_)))));
    decoder.push(b"id: 1\ndata: 0123456789");
    assert!(matches!(
        decoder.next_frame(),
        Err(DecodeError::TooLarge { limit: 12 })
    ));
    // The rest of the line and of its block are skipped without being held.
    for _ in 0..1000 {
        decoder.push(b"0123456789");
        assert!(decoder.next_frame().unwrap().is_none());
    }
    decoder.push(b"\ndata: dropped too\n\ndata: ok\n\n");
    let Some(Frame::Event(event)) = decoder.next_frame().unwrap() else {
        panic!("expected the next block");
    };
    assert_eq!(event.data, "ok");
    // The id line before the oversized line had been read, as the spec would.
    assert_eq!(event.id, "1");
    assert!(decoder.next_frame().unwrap().is_none());
}

#[test]
fn too_large_counts_data_across_lines() {
    let mut decoder = Decoder::new().max_event_size(12);
    decoder.push(b"data: 12345\ndata: 12345\n\ndata: ok\n\n");
    assert!(matches!(
        decoder.next_frame(),
        Err(DecodeError::TooLarge { .. })
    ));
    assert!(matches!(decoder.next_frame(), Ok(Some(Frame::Event(e))) if e.data == "ok"));
}

#[test]
fn too_large_line_split_by_cr_at_chunk_end() {
    let mut decoder = Decoder::new().max_event_size(8);
    decoder.push(b"data: 0123456789\r");
    assert!(decoder.next_frame().is_err());
    decoder.push(b"\n\r\ndata: x\n\n");
    assert!(matches!(decoder.next_frame(), Ok(Some(Frame::Event(e))) if e.data == "x"));
}

#[test]
fn limit_is_exact() {
    // The pending line may hold exactly `limit` bytes.
    let line = b"data: 0123";
    let mut decoder = Decoder::new().max_event_size(line.len());
    decoder.push(line);
    assert!(decoder.next_frame().unwrap().is_none());
    decoder.push(b"4");
    assert!(decoder.next_frame().is_err());

    let mut decoder = Decoder::new().max_event_size(line.len());
    decoder.push(line);
    decoder.push(b"\n\n");
    assert!(matches!(decoder.next_frame(), Ok(Some(Frame::Event(e))) if e.data == "0123"));
}

#[test]
fn buffer_stays_bounded_over_a_long_stream() {
    let mut decoder = Decoder::new().max_event_size(64);
    for i in 0..100_000u32 {
        decoder.push(format!("id: {i}\ndata: {i}\n\n").as_bytes());
        let Some(Frame::Event(event)) = decoder.next_frame().unwrap() else {
            panic!()
        };
        assert_eq!(event.id, i.to_string());
    }
}

#[test]
fn finish_keeps_id_and_retry_and_strips_a_new_bom() {
    let mut decoder = Decoder::new();
    decoder.push(b"retry: 300\nid: 7\ndata: a\n\nid: 8\ndata: half\r");
    while decoder.next_frame().unwrap().is_some() {}
    decoder.finish();
    assert_eq!(decoder.last_event_id(), "7");
    // A new connection may start with a BOM and with a LF that is not the old CR's.
    decoder.push(b"\xEF\xBB\xBF\ndata: b\n\n");
    let Some(Frame::Event(event)) = decoder.next_frame().unwrap() else {
        panic!()
    };
    assert_eq!((event.data.as_str(), event.id.as_str()), ("b", "7"));
    assert_eq!(decoder.retry(), Some(Duration::from_millis(300)));
}

#[tokio::test]
async fn event_stream_reports_body_error_then_ends() {
    let chunks = stream::iter([
        Ok(bytes::Bytes::from_static(b"data: a\n\ndata: b")),
        Err(std::io::Error::other("reset")),
        Ok(bytes::Bytes::from_static(b"\n\n")),
    ]);
    let mut events = EventStream::from_stream(chunks);
    assert_eq!(events.next().await.unwrap().unwrap().data, "a");
    let err = events.next().await.unwrap().unwrap_err();
    assert!(matches!(err, DecodeError::Body(_)));
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "reset"
    );
    assert!(events.next().await.is_none());
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn event_stream_over_a_body_with_trailers() {
    use http_body_util::{BodyExt, Full};
    let body = Full::new(bytes::Bytes::from_static(b"id: 3\ndata: x\n\n"))
        .with_trailers(async { Some(Ok(http::HeaderMap::new())) });
    let mut events = std::pin::pin!(EventStream::new(body));
    let event = events.next().await.unwrap().unwrap();
    assert_eq!((event.data.as_str(), event.id.as_str()), ("x", "3"));
    assert!(events.next().await.is_none());
    assert_eq!(events.last_event_id(), "3");
}

// Round trip: whatever our encoder writes, our decoder reads back.

/// Text with the characters that matter to the format: line breaks of every kind, spaces,
/// colons, NUL, BOM, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just("\u{0}".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("data: x".to_owned()),
        "[a-z]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

fn line_text() -> impl Strategy<Value = String> {
    text().prop_map(|s| s.replace(['\r', '\n'], ""))
}

#[derive(Debug, Clone)]
struct Spec {
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::of(text()),
        prop::option::of(line_text()),
        prop::option::of(line_text().prop_map(|s| s.replace('\0', ""))),
        prop::option::of(0u64..=u64::MAX / 2),
        prop::option::of(text()),
    )
        .prop_map(|(data, event, id, retry, comment)| Spec {
            data,
            event,
            id,
            retry,
            comment,
        })
}

fn build(spec: &Spec) -> Event {
    let mut event = Event::default();
    if let Some(data) = &spec.data {
        event = event.data(data.clone());
    }
    if let Some(t) = &spec.event {
        event = event.event(t.clone()).unwrap();
    }
    if let Some(id) = &spec.id {
        event = event.id(id.clone()).unwrap();
    }
    if let Some(retry) = spec.retry {
        event = event.retry(Duration::from_millis(retry));
    }
    if let Some(comment) = &spec.comment {
        event = event.comment(comment.clone());
    }
    event
}

fn lines(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(str::to_owned)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encoded_events_decode_to_the_same_fields(
        specs in prop::collection::vec(spec(), 1..6),
        chunk in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for spec in &specs {
            wire.extend_from_slice(build(spec).encode().as_bytes());
        }
        let mut decoder = Decoder::new().comments(true);
        let mut frames = Vec::new();
        for piece in wire.chunks(chunk) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }

        let mut expected = Vec::new();
        let mut last_id = String::new();
        let mut last_retry = None;
        for spec in &specs {
            if let Some(comment) = &spec.comment {
                expected.extend(lines(comment).into_iter().map(Frame::Comment));
            }
            if let Some(id) = &spec.id {
                last_id.clone_from(id);
            }
            let retry = spec.retry.map(Duration::from_millis);
            last_retry = retry.or(last_retry);
            if let Some(data) = &spec.data {
                let event = match spec.event.as_deref() {
                    None | Some("") => "message".to_owned(),
                    Some(t) => t.to_owned(),
                };
                let mut want = MessageEvent::default();
                want.event = event;
                want.data = lines(data).join("\n");
                want.id = last_id.clone();
                want.retry = retry;
                expected.push(Frame::Event(want));
            }
        }
        prop_assert_eq!(frames, expected);
        prop_assert_eq!(decoder.last_event_id(), last_id.as_str());
        prop_assert_eq!(decoder.retry(), last_retry);
    }

    #[test]
    fn chunking_never_changes_the_result(
        bytes in prop::collection::vec(
            prop_oneof![
                Just(b'\r'), Just(b'\n'), Just(b':'), Just(b' '), Just(0xEF), Just(0xBB),
                Just(0xBF), Just(0xFF), Just(b'd'), Just(b'a'), Just(b't'), Just(b'i'),
            ],
            0..200,
        ),
        cuts in prop::collection::vec(0usize..200, 0..6),
    ) {
        let whole = decode([&bytes[..]]);
        let mut cuts: Vec<_> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts {
            pieces.push(&bytes[from..cut]);
            from = cut;
        }
        pieces.push(&bytes[from..]);
        prop_assert_eq!(decode(pieces), whole);
    }
}
