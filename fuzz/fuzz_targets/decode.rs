//! Arbitrary bytes, fed whole, in two chunks and in small chunks, must never panic and must
//! decode to the same frames however they are chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_sse::{Decoder, Frame};

fn decode(chunks: impl Iterator<Item = Vec<u8>>) -> (Vec<Result<Frame, String>>, String) {
    let mut decoder = Decoder::new().comments(true).max_event_size(256);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.push(&chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(err) => out.push(Err(err.to_string())),
            }
        }
    }
    (out, decoder.last_event_id().to_owned())
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(data.to_vec()));
    let at = usize::from(split) % (data.len() + 1);
    let two = decode([data[..at].to_vec(), data[at..].to_vec()].into_iter());
    assert_eq!(whole, two);
    let step = usize::from(split % 7) + 1;
    let small = decode(data.chunks(step).map(<[u8]>::to_vec));
    assert_eq!(whole, small);
});
