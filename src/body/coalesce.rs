//! Coalescing: the events a stream has ready right now, joined into one frame,
//! so a burst costs one write instead of one per event. An event made of parts
//! ends a frame (its first part may join it); its other parts are frames of
//! their own.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;

use crate::{
    body::error::{failure, OnError},
    error::BoxError,
    event::encoded::PartsLeft,
    event::EncodedEvent,
    stream::end::Outcome,
};

/// What the last frame left over: written before the body polls its stream
/// again.
#[derive(Default)]
pub(crate) struct Leftover {
    /// An encoded event (or the last event of a failure) that did not fit in
    /// the last frame: it starts the next one.
    pub(crate) event: Option<Bytes>,
    /// The parts still to write of an event made of several, after `event`.
    pub(crate) parts: Option<PartsLeft>,
}

/// One frame of coalesced events.
pub(crate) struct Coalesced {
    /// The bytes to write.
    pub(crate) frame: Bytes,
    /// The complete events in it.
    pub(crate) events: u64,
    /// The stream ended while the frame was filled: the frame (with what is
    /// left over) is its last.
    pub(crate) end: Option<Outcome>,
}

/// Pulls the events that are ready right now into one frame of at most `max` bytes.
pub(crate) fn coalesce<S, T, E>(
    mut stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    first: Bytes,
    max: usize,
    leftover: &mut Leftover,
    on_error: &Option<OnError>,
) -> Coalesced
where
    S: Stream<Item = Result<T, E>>,
    T: Into<EncodedEvent>,
    E: Into<BoxError>,
{
    let mut buf: Option<BytesMut> = None;
    let mut events = 1;
    let mut end = None;
    let mut len = first.len();
    while len < max {
        let next = match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => match item.into().into_first() {
                (next, None) => next,
                // An event made of parts ends the frame: its first part joins
                // it if it fits, the others follow as they are.
                (next, more) => {
                    leftover.parts = more;
                    if len + next.len() > max {
                        leftover.event = Some(next);
                    } else {
                        append(&mut buf, &first, &next, max);
                        events += 1;
                    }
                    break;
                }
            },
            Poll::Ready(Some(Err(err))) => {
                let (last, outcome) = failure(err.into(), on_error);
                end = Some(outcome);
                match last {
                    Some(last) if len + last.len() <= max => {
                        append(&mut buf, &first, &last, max);
                        events += 1;
                    }
                    Some(last) => leftover.event = Some(last),
                    None => {}
                }
                break;
            }
            Poll::Ready(None) => {
                end = Some(Outcome::Finished);
                break;
            }
            Poll::Pending => break,
        };
        if len + next.len() > max {
            leftover.event = Some(next);
            break;
        }
        len += next.len();
        append(&mut buf, &first, &next, max);
        events += 1;
    }
    let frame = match buf {
        Some(buf) => buf.freeze(),
        None => first,
    };
    Coalesced { frame, events, end }
}

/// Appends `next` to the frame started with `first`. The buffer doubles as it
/// grows, but never past `max` (the frame limit, which `next` never crosses):
/// a frame held by a connection that stopped reading holds at most `max`
/// bytes of memory, not up to twice that.
fn append(buf: &mut Option<BytesMut>, first: &Bytes, next: &[u8], max: usize) {
    let buf = buf.get_or_insert_with(|| {
        let mut buf = BytesMut::with_capacity(((first.len() + next.len()) * 2).min(max));
        buf.extend_from_slice(first);
        buf
    });
    let need = buf.len() + next.len();
    if need > buf.capacity() {
        // `reserve` could double past `max`; a buffer of the exact size cannot.
        let capacity = (buf.capacity() * 2).min(max).max(need);
        let mut bigger = BytesMut::with_capacity(capacity);
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_buffer_never_grows_past_the_limit() {
        for max in [16 * 1024, 1000, 31] {
            let event = Bytes::from_static(b"data: 1234567\n\n");
            let mut buf = None;
            let mut len = event.len();
            while len + event.len() <= max {
                append(&mut buf, &event, &event, max);
                len += event.len();
                let buf = buf.as_ref().unwrap();
                assert_eq!(buf.len(), len);
                assert!(buf.capacity() <= max, "{} > {max}", buf.capacity());
            }
            let frame = buf.unwrap();
            assert!(frame.chunks(event.len()).all(|e| e == &event[..]));
        }
    }
}
