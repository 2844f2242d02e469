//! Cross-checks against independent parsers, on the cases of `tests/data/conformance.json`:
//! the `eventsource-stream` crate, and the `eventsource-parser` npm package (through
//! `tests/js/crosscheck.mjs`, when `tests/js/node_modules` exists).
//!
//! Each parser must agree with the spec's expected events on every case, except the ones
//! listed as its known deviations (and it must disagree on those, so the lists stay true).
//! `tests/js/README.md` explains each deviation.

use std::{collections::BTreeMap, io::Write, path::Path, process::Command};

use futures_util::{stream, StreamExt};
use serde_json::Value;
mod conformance;
use conformance::{cases, event_json};
use tower_sse::{decode::Frame, Decoder};

/// Cases where `eventsource-stream` 0.2.3 departs from the spec, and why.
const EVENTSOURCE_STREAM_KNOWN: &[(&str, &str)] = &[
    (
        "retry_sign",
        "retry is parsed with `u64::from_str`, which accepts a leading `+`",
    ),
    (
        "invalid_byte",
        "invalid UTF-8 is a fatal stream error instead of U+FFFD",
    ),
    ("truncated_sequence_at_line_end", "same: fatal UTF-8 error"),
    ("surrogate_encoding", "same: fatal UTF-8 error"),
    ("overlong", "same: fatal UTF-8 error"),
    ("invalid_in_event_type", "same: fatal UTF-8 error"),
    ("invalid_in_id", "same: fatal UTF-8 error"),
    ("invalid_in_field_name", "same: fatal UTF-8 error"),
    ("partial_bom", "same: fatal UTF-8 error"),
    (
        "bom",
        "panics on a leading BOM: it strips it with `&buffer[1..]`, inside the 3-byte char",
    ),
    ("two_boms", "same: panics on the leading BOM"),
    ("bom_then_comment", "same: panics on the leading BOM"),
    (
        "cr",
        "a CR at the end of the input waits for a possible LF, so the blank line ending the \
         last block is never seen and the event is lost at the end of the stream",
    ),
    (
        "cr_only_stream",
        "same: the final CR CR loses the last event",
    ),
];

/// `eventsource-stream`'s events, or `Err` when it reported an error or panicked.
async fn eventsource_stream(chunks: Vec<Vec<u8>>) -> Result<Vec<Value>, String> {
    // It panics on some inputs: run it in a task to observe that as a result.
    match tokio::spawn(eventsource_stream_inner(chunks)).await {
        Ok(result) => result,
        Err(err) => Err(format!("panicked: {err}")),
    }
}

async fn eventsource_stream_inner(chunks: Vec<Vec<u8>>) -> Result<Vec<Value>, String> {
    use eventsource_stream::Eventsource;
    let mut events = stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>)).eventsource();
    let mut out = Vec::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| e.to_string())?;
        out.push(event_json(
            &event.event,
            &event.data,
            &event.id,
            event.retry,
        ));
    }
    Ok(out)
}

fn ours(chunks: &[Vec<u8>]) -> Vec<Value> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        while let Some(frame) = decoder.next_frame().unwrap() {
            if let Frame::Event(e) = frame {
                out.push(event_json(&e.event, &e.data, &e.id, e.retry));
            }
        }
    }
    out
}

#[tokio::test]
async fn eventsource_stream_agrees_except_known_deviations() {
    let mut disagreements = BTreeMap::new();
    for case in cases() {
        let bytes = case.bytes();
        let whole = vec![bytes.clone()];
        let bytewise: Vec<_> = bytes.iter().map(|&b| vec![b]).collect();
        // Ours agrees with the expected events, chunked either way.
        assert_eq!(ours(&whole), case.events, "ours, case {}", case.name);
        assert_eq!(ours(&bytewise), case.events, "ours, case {}", case.name);
        for (how, chunks) in [("whole", whole), ("bytewise", bytewise)] {
            let theirs = eventsource_stream(chunks).await;
            if theirs.as_ref() != Ok(&case.events) {
                disagreements
                    .entry(case.name.clone())
                    .or_insert_with(|| format!("{how}: {theirs:?}"));
            }
        }
    }
    let known: BTreeMap<_, _> = EVENTSOURCE_STREAM_KNOWN.iter().copied().collect();
    let unexpected: Vec<_> = disagreements
        .iter()
        .filter(|(name, _)| !known.contains_key(name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "eventsource-stream disagrees with the spec on unlisted cases: {unexpected:#?}"
    );
    let stale: Vec<_> = known
        .keys()
        .filter(|name| !disagreements.contains_key(**name))
        .collect();
    assert!(stale.is_empty(), "listed but agreeing now: {stale:?}");
}

#[test]
fn eventsource_parser_npm_agrees_except_known_deviations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    // Written straight to stderr so that it shows even though the test passes.
    let skip = |why: &str| {
        let _ = writeln!(
            std::io::stderr(),
            "SKIP eventsource_parser_npm_agrees_except_known_deviations: {why} \
             (run `npm ci` in tests/js to enable)"
        );
    };
    if !dir.join("node_modules/eventsource-parser").exists() {
        return skip("tests/js/node_modules is missing");
    }
    let output = match Command::new("node")
        .arg("crosscheck.mjs")
        .current_dir(&dir)
        .output()
    {
        Ok(output) => output,
        Err(err) => return skip(&format!("cannot run node: {err}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "eventsource-parser cross-check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("0 failures"), "{stdout}");
}
