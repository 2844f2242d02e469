//! [`EncodedEvent`]: an event already written to bytes, shared by reference count.

use std::fmt;

use bytes::Bytes;

use crate::{Event, EventError};

/// An event written once to `text/event-stream` bytes.
///
/// Cloning costs a reference count, not a copy, so one `EncodedEvent` can be sent
/// to any number of streams: this is what the [broadcast hub](crate::Hub) does for fan-out.
/// [`SseBody`](crate::SseBody) accepts any stream item that converts into an
/// `EncodedEvent`, which includes [`Event`] itself.
///
/// # Example
///
/// ```
/// use tower_sse::{EncodedEvent, Event};
///
/// let once = Event::message("hi").encode();
/// let shared = once.clone(); // no copy of the bytes
/// assert_eq!(shared.as_bytes(), b"data: hi\n\n".as_slice());
///
/// // Already-encoded bytes from elsewhere are checked, not trusted blindly.
/// let raw = EncodedEvent::from_raw("event: tick\ndata: 1\n\n")?;
/// assert_eq!(raw.len(), 21);
/// assert!(EncodedEvent::from_raw("data: no blank line\n").is_err());
/// # Ok::<(), tower_sse::EventError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EncodedEvent(Bytes);

impl EncodedEvent {
    /// Used by the encoder, whose output is well-formed by construction.
    pub(crate) fn from_encoder(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// Wraps bytes that are already in `text/event-stream` format: an escape hatch
    /// for events encoded elsewhere (a cache, another process, a broker).
    ///
    /// The bytes may hold any number of complete events, comments included.
    ///
    /// # Errors
    ///
    /// [`EventError::RawNotUtf8`] when they are not UTF-8, and
    /// [`EventError::RawUnterminated`] when they do not end with a blank line
    /// (`\n\n`, `\r\r` or `\r\n\r\n`), since whatever was sent next would then join
    /// the last event. Empty input is accepted and sends nothing.
    pub fn from_raw(bytes: impl Into<Bytes>) -> Result<Self, EventError> {
        let bytes = bytes.into();
        if std::str::from_utf8(&bytes).is_err() {
            return Err(EventError::RawNotUtf8);
        }
        let terminated = bytes.is_empty()
            || strip_line_end(&bytes)
                .is_some_and(|rest| rest.is_empty() || strip_line_end(rest).is_some());
        if !terminated {
            return Err(EventError::RawUnterminated);
        }
        Ok(Self(bytes))
    }

    /// A comment line (`: text`), useful as a heartbeat or for debugging. Line
    /// breaks in `text` become several comment lines.
    pub fn comment(text: &str) -> Self {
        Event::default().comment(text).encode()
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, as a shared buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `bytes` without its final line ending (CRLF, LF or CR), if it has one.
fn strip_line_end(bytes: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = bytes.strip_suffix(b"\r\n") {
        Some(rest)
    } else {
        bytes
            .strip_suffix(b"\n")
            .or_else(|| bytes.strip_suffix(b"\r"))
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        event.encode()
    }
}

impl From<&Event> for EncodedEvent {
    fn from(event: &Event) -> Self {
        event.encode()
    }
}

impl From<EncodedEvent> for Bytes {
    fn from(event: EncodedEvent) -> Self {
        event.0
    }
}

impl AsRef<[u8]> for EncodedEvent {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedEvent")
            .field(&String::from_utf8_lossy(&self.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_checked() {
        for ok in [
            "",
            "\n",
            "\r\n",
            "data: a\n\n",
            "data: a\r\r",
            "data: a\r\n\r\n",
            ": c\n\n",
            "data: a\r\r\n",
            "data: a\n\r",
            "data: a\n\r\n",
        ] {
            assert!(EncodedEvent::from_raw(ok).is_ok(), "{ok:?}");
        }
        for bad in ["data: a", "data: a\n", "data: a\r\n", "data: a\r"] {
            assert_eq!(
                EncodedEvent::from_raw(bad).unwrap_err(),
                EventError::RawUnterminated,
                "{bad:?}"
            );
        }
        assert_eq!(
            EncodedEvent::from_raw(&b"data: \xff\n\n"[..]).unwrap_err(),
            EventError::RawNotUtf8
        );
    }

    #[test]
    fn clone_shares_the_buffer() {
        let a = Event::message("x".repeat(1000)).encode();
        let b = a.clone();
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
    }

    #[test]
    fn comment_helper() {
        assert_eq!(EncodedEvent::comment("a\nb").as_bytes(), b": a\n: b\n\n");
    }
}
