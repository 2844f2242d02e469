//! [`EncodedEvent`]: an event already written to bytes, shared by reference count.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::{Arc, OnceLock},
};

use bytes::Bytes;

use super::{Event, EventError};

/// An event written once to `text/event-stream` bytes.
///
/// Cloning costs a reference count, not a copy, so one `EncodedEvent` can be sent
/// to any number of streams: this is what the broadcast hub (`tower-sse-hub`) does for fan-out.
/// [`SseBody`](crate::SseBody) accepts any stream item that converts into an
/// `EncodedEvent`, which includes [`Event`] itself.
///
/// An event can also be made of several shared buffers ([`from_parts`](Self::from_parts)):
/// a large piece that many connections send (a room's member list) between
/// small pieces of their own. [`SseBody`](crate::SseBody) writes the pieces as
/// they are, one frame each, without copying them into one buffer and with
/// nothing (no heartbeat) between them.
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
#[derive(Clone)]
pub struct EncodedEvent(Repr);

#[derive(Clone)]
enum Repr {
    One(Bytes),
    Parts(Arc<Parts>),
}

/// Two or more non-empty buffers that make one or more complete events.
struct Parts {
    parts: Box<[Bytes]>,
    len: usize,
    /// The parts in one buffer, made on the first call that needs it.
    joined: OnceLock<Bytes>,
}

impl Parts {
    fn joined(&self) -> &Bytes {
        self.joined.get_or_init(|| {
            let mut buf = Vec::with_capacity(self.len);
            for part in self.parts.iter() {
                buf.extend_from_slice(part);
            }
            Bytes::from(buf)
        })
    }
}

/// The parts of an event that [`SseBody`](crate::SseBody) has yet to write,
/// after the first.
pub(crate) struct PartsLeft {
    parts: Arc<Parts>,
    next: usize,
}

impl PartsLeft {
    /// The next part, or `None` when all are written.
    pub(crate) fn next_part(&mut self) -> Option<Bytes> {
        let part = self.parts.parts.get(self.next)?.clone();
        self.next += 1;
        Some(part)
    }
}

impl EncodedEvent {
    /// Used by the encoder, whose output is well-formed by construction.
    pub(crate) fn from_encoder(bytes: Bytes) -> Self {
        Self(Repr::One(bytes))
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
        if !terminated(&bytes) {
            return Err(EventError::RawUnterminated);
        }
        Ok(Self(Repr::One(bytes)))
    }

    /// An event whose bytes are `parts`, one after the other, each kept as the
    /// shared buffer it is: cloning the event, or making many events that share
    /// a large part, copies none of them.
    ///
    /// This is how a per-connection event with a large common piece stays small
    /// per connection: a chat's `members` snapshot is a few bytes of its own
    /// (the member's name, the snapshot's id) around one member list shared by
    /// everyone who joined at the same time. [`SseBody`](crate::SseBody)
    /// writes each part as its own frame, never inserting anything (a
    /// heartbeat, a shutdown's last event) between them.
    ///
    /// The concatenation must be complete events, as for
    /// [`from_raw`](Self::from_raw); a part may end anywhere else (inside a
    /// line, say), but not inside a UTF-8 character. Empty parts are skipped.
    ///
    /// [`as_bytes`](Self::as_bytes) and [`into_bytes`](Self::into_bytes) join
    /// the parts into one buffer, once per event (its clones share it); use
    /// [`parts`](Self::parts) to read them without copying.
    ///
    /// # Errors
    ///
    /// [`EventError::RawNotUtf8`] when a part is not UTF-8 on its own, and
    /// [`EventError::RawUnterminated`] when the whole does not end with a blank
    /// line.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower_sse::EncodedEvent;
    ///
    /// // One list, shared by every snapshot made from it.
    /// let names = Bytes::from(r#"["ada","grace"]"#);
    /// let snapshot = |you: &str| {
    ///     EncodedEvent::from_parts([
    ///         Bytes::from(format!("event: members\ndata: {{\"you\":\"{you}\",\"names\":")),
    ///         names.clone(),
    ///         Bytes::from_static(b"}\n\n"),
    ///     ])
    /// };
    /// let ada = snapshot("ada")?;
    /// assert_eq!(ada.parts().len(), 3);
    /// assert_eq!(ada.parts()[1].as_ptr(), names.as_ptr()); // not a copy
    /// assert_eq!(
    ///     ada.as_bytes(),
    ///     br#"event: members
    /// data: {"you":"ada","names":["ada","grace"]}
    ///
    /// "#
    /// );
    /// assert!(EncodedEvent::from_parts([names]).is_err()); // no blank line
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    pub fn from_parts<I>(parts: I) -> Result<Self, EventError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        let mut parts: Vec<Bytes> = parts
            .into_iter()
            .map(Into::into)
            .filter(|part| !part.is_empty())
            .collect();
        if parts.iter().any(|part| std::str::from_utf8(part).is_err()) {
            return Err(EventError::RawNotUtf8);
        }
        let (tail, tail_len) = last_bytes(&parts);
        if !terminated(&tail[4 - tail_len..]) {
            return Err(EventError::RawUnterminated);
        }
        Ok(match parts.len() {
            0 => Self(Repr::One(Bytes::new())),
            1 => Self(Repr::One(parts.remove(0))),
            _ => Self(Repr::Parts(Arc::new(Parts {
                len: parts.iter().map(Bytes::len).sum(),
                parts: parts.into_boxed_slice(),
                joined: OnceLock::new(),
            }))),
        })
    }

    /// A comment line (`: text`), useful as a heartbeat or for debugging. Line
    /// breaks in `text` become several comment lines.
    pub fn comment(text: &str) -> Self {
        Event::default().comment(text).encode()
    }

    /// The encoded bytes. An event made [`from_parts`](Self::from_parts) joins
    /// them into one buffer the first time (once, shared by its clones).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::One(bytes) => bytes,
            Repr::Parts(parts) => parts.joined(),
        }
    }

    /// The encoded bytes, as a shared buffer (joined once, as for
    /// [`as_bytes`](Self::as_bytes)).
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::One(bytes) => bytes,
            Repr::Parts(parts) => parts.joined().clone(),
        }
    }

    /// The buffers the event is made of, in order, without copying: one,
    /// unless it was made [`from_parts`](Self::from_parts) (none when empty).
    pub fn parts(&self) -> &[Bytes] {
        match &self.0 {
            Repr::One(bytes) if bytes.is_empty() => &[],
            Repr::One(bytes) => std::slice::from_ref(bytes),
            Repr::Parts(parts) => &parts.parts,
        }
    }

    /// The first buffer, and what is left to write after it.
    pub(crate) fn into_first(self) -> (Bytes, Option<PartsLeft>) {
        match self.0 {
            Repr::One(bytes) => (bytes, None),
            Repr::Parts(parts) => {
                let first = parts.parts[0].clone();
                (first, Some(PartsLeft { parts, next: 1 }))
            }
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::One(bytes) => bytes.len(),
            Repr::Parts(parts) => parts.len,
        }
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `bytes` end with a blank line (or are empty, or one line ending).
/// The last four bytes decide.
fn terminated(bytes: &[u8]) -> bool {
    bytes.is_empty()
        || strip_line_end(bytes)
            .is_some_and(|rest| rest.is_empty() || strip_line_end(rest).is_some())
}

/// The last (up to) four bytes of `parts`, right-aligned, and how many there are.
fn last_bytes(parts: &[Bytes]) -> ([u8; 4], usize) {
    let mut tail = [0u8; 4];
    let mut n = 0;
    for part in parts.iter().rev() {
        for &byte in part.iter().rev() {
            if n == 4 {
                return (tail, n);
            }
            n += 1;
            tail[4 - n] = byte;
        }
    }
    (tail, n)
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
        event.into_bytes()
    }
}

impl PartialEq for EncodedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.as_bytes() == other.as_bytes()
    }
}

impl Eq for EncodedEvent {}

impl Hash for EncodedEvent {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl AsRef<[u8]> for EncodedEvent {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedEvent")
            .field(&String::from_utf8_lossy(self.as_bytes()))
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
    fn parts_are_checked_as_one() {
        let ok = |parts: &[&str]| EncodedEvent::from_parts(parts.iter().map(|p| p.to_string()));
        for parts in [
            &["data: a", "\n\n"][..],
            &["data: a\n", "\n"],
            &["data: a\r", "\n", "\r\n"],
            &["data: a\r\n\r", "", "\n"],
            &["d", "a", "t", "a", ":", "\n", "\n"],
            &[],
            &["", ""],
            &["\n"],
        ] {
            let event = ok(parts).unwrap_or_else(|e| panic!("{parts:?}: {e}"));
            assert_eq!(event.as_bytes(), parts.concat().as_bytes());
            assert_eq!(event.len(), parts.concat().len());
            assert_eq!(
                event.parts().len(),
                parts.iter().filter(|p| !p.is_empty()).count()
            );
            assert_eq!(event, EncodedEvent::from_raw(parts.concat()).unwrap());
        }
        for parts in [
            &["data: a", "\n"][..],
            &["data: a\n\n", "data: b"],
            &["data: a\r", "\n"],
        ] {
            assert_eq!(
                ok(parts).unwrap_err(),
                EventError::RawUnterminated,
                "{parts:?}"
            );
        }
        let split_char = [
            Bytes::from_static(b"data: \xc3"),
            Bytes::from_static(b"\xa9\n\n"),
        ];
        assert_eq!(
            EncodedEvent::from_parts(split_char).unwrap_err(),
            EventError::RawNotUtf8
        );
    }

    #[test]
    fn parts_are_shared_not_copied() {
        let big = Bytes::from("x".repeat(10_000));
        let event = EncodedEvent::from_parts([
            Bytes::from_static(b"data: "),
            big.clone(),
            Bytes::from_static(b"\n\n"),
        ])
        .unwrap();
        let copy = event.clone();
        assert_eq!(copy.parts()[1].as_ptr(), big.as_ptr());
        let (first, rest) = event.into_first();
        assert_eq!(&first[..], b"data: ");
        let mut rest = rest.unwrap();
        assert_eq!(rest.next_part().unwrap().as_ptr(), big.as_ptr());
        assert_eq!(rest.next_part().as_deref(), Some(&b"\n\n"[..]));
        assert!(rest.next_part().is_none());
        // Joined once, shared by the clones.
        assert_eq!(copy.as_bytes().len(), 10_008);
        let again = copy.clone();
        assert_eq!(again.as_bytes().as_ptr(), copy.as_bytes().as_ptr());
    }

    #[test]
    fn comment_helper() {
        assert_eq!(EncodedEvent::comment("a\nb").as_bytes(), b": a\n: b\n\n");
    }
}
