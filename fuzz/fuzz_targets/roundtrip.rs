//! Any event our encoder accepts decodes to the same fields, however the bytes are chunked.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tower_sse::{decode::Frame, Decoder, Event, MessageEvent};

type Input = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<u32>,
    Option<String>,
    u8,
);

fn lines(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .split('\n')
        .map(str::to_owned)
        .collect()
}

fuzz_target!(|input: Input| {
    let (data, event_type, id, retry, comment, chunk) = input;
    let mut event = Event::default();
    let mut expected = Vec::new();
    if let Some(comment) = &comment {
        event = event.comment(comment.clone());
        expected.extend(lines(comment).into_iter().map(Frame::Comment));
    }
    // The encoder refuses what it cannot write; the decoder must then not see it.
    let event_type = event_type.and_then(|t| {
        let built = event.clone().event(t.clone()).ok()?;
        event = built;
        Some(t)
    });
    let id = id.and_then(|i| {
        let built = event.clone().id(i.clone()).ok()?;
        event = built;
        Some(i)
    });
    let retry = retry.map(|ms| Duration::from_millis(u64::from(ms)));
    if let Some(retry) = retry {
        event = event.retry(retry);
    }
    if let Some(data) = &data {
        event = event.data(data.clone());
        let mut want = MessageEvent::default();
        want.event = match event_type.as_deref() {
            None | Some("") => "message".to_owned(),
            Some(t) => t.to_owned(),
        };
        want.data = lines(data).join("\n");
        want.id = id.clone().unwrap_or_default();
        want.retry = retry;
        expected.push(Frame::Event(want));
    }

    let wire = event.encode();
    let mut decoder = Decoder::new().comments(true);
    let mut frames = Vec::new();
    for piece in wire.as_bytes().chunks(usize::from(chunk).max(1)) {
        decoder.push(piece);
        while let Some(frame) = decoder.next_frame().expect("within the default limit") {
            frames.push(frame);
        }
    }
    assert_eq!(frames, expected);
    assert_eq!(decoder.last_event_id(), id.as_deref().unwrap_or(""));
    assert_eq!(decoder.retry(), retry);
});
