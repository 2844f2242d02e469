//! Reads a `text/event-stream` from stdin and prints each dispatched event as one JSON line:
//! `{"type":..., "data":..., "id":..., "retry":...}`, where `id` is the last event id at
//! dispatch and `retry` (milliseconds) appears only when the event's block set it.
//!
//! ```sh
//! curl -sN https://example.com/events | cargo run --example decode
//! printf 'id: 1\ndata: hi\n\n' | cargo run --example decode
//! ```
//!
//! Input is read as it arrives, so events print while the stream is open. Decoding follows
//! the WHATWG rules exactly: see `tower_sse::Decoder`.

use std::io::{self, Read, Write};

use tower_sse::{decode::Frame, DecodeError, Decoder, MessageEvent};

/// One JSON object per event, keys in a fixed order.
fn to_json(event: &MessageEvent) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    let mut line = format!(
        r#"{{"type":{},"data":{},"id":{}"#,
        string(&event.event),
        string(&event.data),
        string(&event.id)
    );
    if let Some(retry) = event.retry {
        line.push_str(&format!(r#","retry":{}"#, retry.as_millis()));
    }
    line.push('}');
    line
}

/// Decodes `input` as it arrives, writing one JSON line per event to `output`.
pub fn run(mut input: impl Read, mut output: impl Write) -> io::Result<()> {
    let mut decoder = Decoder::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(Frame::Event(event))) => writeln!(output, "{}", to_json(&event))?,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err @ DecodeError::TooLarge { .. }) => eprintln!("skipped an event: {err}"),
                Err(err) => return Err(io::Error::other(err)),
            }
        }
        output.flush()?;
    }
    // End of input: an unterminated final block is discarded, as the spec requires.
    decoder.finish();
    Ok(())
}

fn main() -> io::Result<()> {
    run(io::stdin().lock(), io::stdout().lock())
}
