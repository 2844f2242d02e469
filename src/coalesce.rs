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
    body::{failure, OnError},
    encoded::PartsLeft,
    BoxError, EncodedEvent, EndReason,
};

/// What a body owes before it polls its stream again.
#[derive(Default)]
pub(crate) struct Owed {
    /// An event that did not fit in the last frame, with its event count.
    pub(crate) frame: Option<(Bytes, u64)>,
    /// The parts still to write of an event made of several, after `frame`.
    pub(crate) rest: Option<PartsLeft>,
}

/// Pulls the events that are ready right now into one frame of at most `max` bytes.
pub(crate) fn coalesce<S, T, E>(
    mut stream: Pin<&mut S>,
    cx: &mut Context<'_>,
    first: Bytes,
    max: usize,
    owed: &mut Owed,
    ending: &mut Option<EndReason>,
    on_error: &Option<OnError>,
) -> (Bytes, u64)
where
    S: Stream<Item = Result<T, E>>,
    T: Into<EncodedEvent>,
    E: Into<BoxError>,
{
    let mut buf: Option<BytesMut> = None;
    let mut events = 1;
    let mut len = first.len();
    while len < max {
        let next = match stream.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => match item.into().into_first() {
                (next, None) => next,
                // An event made of parts ends the frame: its first part joins
                // it if it fits, the others follow as they are.
                (next, more) => {
                    owed.rest = more;
                    if len + next.len() > max {
                        owed.frame = Some((next, 1));
                    } else {
                        append(&mut buf, &first, &next);
                        events += 1;
                    }
                    break;
                }
            },
            Poll::Ready(Some(Err(err))) => {
                let (last, reason) = failure(err.into(), on_error);
                *ending = Some(reason);
                match last {
                    Some(last) if len + last.len() <= max => {
                        append(&mut buf, &first, &last);
                        events += 1;
                    }
                    Some(last) => owed.frame = Some((last, 1)),
                    None => {}
                }
                break;
            }
            Poll::Ready(None) => {
                *ending = Some(EndReason::Completed);
                break;
            }
            Poll::Pending => break,
        };
        if len + next.len() > max {
            owed.frame = Some((next, 1));
            break;
        }
        len += next.len();
        append(&mut buf, &first, &next);
        events += 1;
    }
    match buf {
        Some(buf) => (buf.freeze(), events),
        None => (first, events),
    }
}

fn append(buf: &mut Option<BytesMut>, first: &Bytes, next: &[u8]) {
    buf.get_or_insert_with(|| {
        let mut buf = BytesMut::with_capacity((first.len() + next.len()) * 2);
        buf.extend_from_slice(first);
        buf
    })
    .extend_from_slice(next);
}
