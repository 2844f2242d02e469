//! [`Event`]: one server-sent event, validated when it is built.

use std::{fmt, time::Duration};

use bytes::{BufMut, BytesMut};

pub(crate) mod encoded;
pub(crate) mod last_event_id;

pub use self::{
    encoded::EncodedEvent,
    last_event_id::{LastEventId, MAX_LAST_EVENT_ID_LEN},
};

/// One server-sent event: data, type, id, reconnection time and comments.
///
/// Every field is checked when it is set, so an `Event` that exists can always be
/// written as a well-formed `text/event-stream` block. Fields that cannot carry a
/// line break (`event`, `id`) are fallible and return an [`EventError`]; fields that
/// can (`data`, comments) are split into several lines, never injected.
///
/// # Wire format
///
/// | field | written as |
/// |---|---|
/// | comment | one `: line` per line of the comment |
/// | `event` | `event: TYPE` |
/// | `id` | `id: ID` (`id:` when empty, which resets the client's last event id) |
/// | `retry` | `retry: MILLISECONDS` |
/// | `data` | one `data: line` per line; LF, CR and CRLF each end one line |
///
/// The block ends with a blank line. A value is always written after `": "`, so a
/// value that starts with a space keeps it. Data set to the empty string is written
/// as `data:` so that the browser dispatches an event with empty data. An event with
/// no data field is not dispatched by clients, but its `id`, `retry` and comments
/// still take effect.
///
/// # Example
///
/// ```
/// use tower_sse::Event;
///
/// let event = Event::default()
///     .event("message")?
///     .id("42")?
///     .data("hello\r\nworld");
/// assert_eq!(
///     event.encode().as_bytes(),
///     b"event: message\nid: 42\ndata: hello\ndata: world\n\n".as_slice()
/// );
///
/// // A line break in the event type is refused, never written.
/// assert!(Event::default().event("a\nb").is_err());
/// # Ok::<(), tower_sse::EventError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Event {
    comment: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
    data: Option<String>,
    // Where the first CR or LF of `data` is, found once when the data is set, so
    // that encoding single-line data is a plain copy.
    data_break: Option<usize>,
}

impl Event {
    /// An event with `data` and no other field, the most common kind.
    ///
    /// Same as `Event::default().data(data)`.
    pub fn message(data: impl Into<String>) -> Self {
        Self::default().data(data)
    }

    /// Sets the data. Any text is valid: LF, CR and CRLF each start a new `data:`
    /// line, and the empty string is sent as a single `data:` line.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        let data = data.into();
        self.data_break = find_line_break(data.as_bytes());
        self.data = Some(data);
        self
    }

    /// Sets the data to the JSON serialization of `value`.
    ///
    /// JSON never contains a raw line break, so the data is always one line.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] when `value` cannot be serialized.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json_data<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<Self, EventError> {
        let json = serde_json::to_string(value).map_err(|e| EventError::Json(e.to_string()))?;
        Ok(self.data(json))
    }

    /// Sets the event type (`event:` field). Clients dispatch an event without a
    /// type, or with an empty one, as `message`.
    ///
    /// # Errors
    ///
    /// [`EventError::LineBreakInEventType`] when `event` contains CR or LF.
    pub fn event(mut self, event: impl Into<String>) -> Result<Self, EventError> {
        let event = event.into();
        if has_line_break(&event) {
            return Err(EventError::LineBreakInEventType);
        }
        self.event = Some(event);
        Ok(self)
    }

    /// Sets the event id (`id:` field). An empty id resets the client's last event
    /// id, so it will not send `Last-Event-ID` on reconnect.
    ///
    /// # Errors
    ///
    /// [`EventError::LineBreakInId`] when `id` contains CR or LF, and
    /// [`EventError::NulInId`] when it contains NUL (clients ignore such ids).
    pub fn id(mut self, id: impl Into<String>) -> Result<Self, EventError> {
        let id = id.into();
        check_id(&id)?;
        self.id = Some(id);
        Ok(self)
    }

    /// Sets the reconnection time the client should wait before reconnecting
    /// (`retry:` field), written in whole milliseconds (rounded down).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Adds a comment. Clients ignore comments; they are useful for debugging and
    /// to keep a connection alive. A comment with line breaks is written as several
    /// comment lines. Calling this again appends another comment line.
    pub fn comment(mut self, comment: impl Into<String>) -> Self {
        let comment = comment.into();
        match &mut self.comment {
            Some(existing) => {
                existing.push('\n');
                existing.push_str(&comment);
            }
            None => self.comment = Some(comment),
        }
        self
    }

    /// The data, if set (named like `std::process::Command::get_args`, as `data` is the setter).
    pub fn get_data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// The event type, if set.
    pub fn get_event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The id, if set.
    pub fn get_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The reconnection time, if set.
    pub fn get_retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The comment, if set (several comment lines are joined with LF).
    pub fn get_comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// Writes the event once into a shared buffer.
    ///
    /// The result is cheap to clone (a reference count), which is how one event is
    /// sent to many streams without copying it.
    pub fn encode(&self) -> EncodedEvent {
        self.encode_as(self.id.as_deref())
    }

    /// Writes the event once as if its id were `id`, without building another
    /// event: what a fan-out that numbers the events it sends does (a hub
    /// writes its own id into each event it stores). The same bytes as
    /// `self.clone().id(id)?.encode()`.
    ///
    /// ```
    /// use tower_sse::Event;
    ///
    /// let event = Event::default().event("join")?.data("alice");
    /// assert_eq!(
    ///     event.encode_with_id("7")?.as_bytes(),
    ///     b"event: join\nid: 7\ndata: alice\n\n".as_slice()
    /// );
    /// # Ok::<(), tower_sse::EventError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`id`](Self::id): [`EventError::LineBreakInId`] or
    /// [`EventError::NulInId`]; nothing is encoded.
    pub fn encode_with_id(&self, id: &str) -> Result<EncodedEvent, EventError> {
        check_id(id)?;
        Ok(self.encode_as(Some(id)))
    }

    /// Writes the event once, with `id` as its id field, into a buffer
    /// allocated once.
    fn encode_as(&self, id: Option<&str>) -> EncodedEvent {
        let mut buf = BytesMut::with_capacity(self.encoded_len_hint(id));
        self.encode_parts(&mut buf, id);
        EncodedEvent::from_encoder(buf.freeze())
    }

    /// Writes the event into `buf`, ending with the blank line.
    pub fn encode_into(&self, buf: &mut BytesMut) {
        self.encode_parts(buf, self.id.as_deref());
    }

    /// Writes the event with `id` as its id field (its own, or the one
    /// [`encode_with_id`](Self::encode_with_id) was given).
    fn encode_parts(&self, buf: &mut BytesMut, id: Option<&str>) {
        if let Some(comment) = &self.comment {
            let comment = comment.as_bytes();
            write_lines(buf, b": ", b"\n: ", comment, find_line_break(comment));
        }
        if let Some(event) = &self.event {
            write_field(buf, b"event: ", event.as_bytes());
        }
        if let Some(id) = id {
            write_field(buf, b"id: ", id.as_bytes());
        }
        if let Some(retry) = self.retry {
            buf.put_slice(b"retry: ");
            write_u128(buf, retry.as_millis());
            buf.put_u8(b'\n');
        }
        if let Some(data) = &self.data {
            write_lines(
                buf,
                b"data: ",
                b"\ndata: ",
                data.as_bytes(),
                self.data_break,
            );
        }
        buf.put_u8(b'\n');
    }

    /// An upper bound of the encoded size for the usual event written with
    /// `id` as its id field, to allocate once.
    fn encoded_len_hint(&self, id: Option<&str>) -> usize {
        fn len(field: Option<&str>, overhead: usize) -> usize {
            field.map_or(0, |v| v.len() + overhead)
        }
        // Data lines each add `data: ` and `\n`: exact for one line; for several,
        // a guess (lines as long as the first) made once, instead of regrowing.
        let more_lines = match (&self.data, self.data_break) {
            (Some(data), Some(first)) => data.len() / (first + 1).max(32) + 1,
            _ => 0,
        };
        len(self.comment.as_deref(), 3)
            + len(self.event.as_deref(), 8)
            + len(id, 5)
            + self.retry.map_or(0, |_| 31)
            + len(self.data.as_deref(), 7)
            + more_lines * 7
            + 1
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Event");
        if let Some(v) = &self.event {
            s.field("event", v);
        }
        if let Some(v) = &self.id {
            s.field("id", v);
        }
        if let Some(v) = &self.retry {
            s.field("retry", v);
        }
        if let Some(v) = &self.data {
            s.field("data", v);
        }
        if let Some(v) = &self.comment {
            s.field("comment", v);
        }
        s.finish()
    }
}

/// An id field's value: no line break (it would end the field), no NUL
/// (clients ignore such ids).
///
/// Ids are short, shorter than the set-up of a vectorised search (a hub
/// numbers every event it publishes): eight bytes at a time are first checked
/// for any byte below 14 (CR is 13), which a usual id has none of; only an id
/// with one is looked at byte by byte.
fn check_id(id: &str) -> Result<(), EventError> {
    if !has_byte_below_14(id.as_bytes()) {
        return Ok(());
    }
    let mut nul = false;
    for &b in id.as_bytes() {
        match b {
            b'\n' | b'\r' => return Err(EventError::LineBreakInId),
            0 => nul = true,
            _ => {}
        }
    }
    if nul {
        Err(EventError::NulInId)
    } else {
        Ok(())
    }
}

/// Whether any byte of `bytes` is below 14: NUL, LF and CR are. Eight bytes
/// at a time (the words overlap at the end), `b < 14` tested on every byte of
/// a word at once: the subtraction borrows into a byte's top bit only from a
/// byte below 14 (or from a lower byte that was), so the word's answer is
/// exact even when it is not the byte it points at.
fn has_byte_below_14(bytes: &[u8]) -> bool {
    const FOURTEENS: u64 = u64::from_ne_bytes([14; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |word: &[u8]| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let x = u64::from_le_bytes(eight);
        x.wrapping_sub(FOURTEENS) & !x & TOPS != 0
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| b < 14);
    }
    bytes.chunks_exact(8).any(below) || below(&bytes[bytes.len() - 8..])
}

fn has_line_break(s: &str) -> bool {
    find_line_break(s.as_bytes()).is_some()
}

fn find_line_break(s: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', s)
}

/// `name: value\n`, or `name:\n` for an empty value, given `name: ` as
/// `prefix` (the name and its separator in one copy): also a line of data
/// (`data: `) or of a comment (`: `). The prefix's size is a constant, so its
/// copy is a few moves, not a call to `memcpy`.
fn write_field<const N: usize>(buf: &mut BytesMut, prefix: &[u8; N], value: &[u8]) {
    buf.reserve(N + value.len() + 1);
    if value.is_empty() {
        buf.put_slice(&prefix[..N - 1]);
    } else {
        buf.put_slice(prefix);
        buf.put_slice(value);
    }
    buf.put_u8(b'\n');
}

/// One line per line of `value`, each starting with `prefix` (`data: `, or `: `
/// for a comment); CRLF, LF and CR each end one line. `first` is the position of
/// the first line break in `value`, already known to the caller. `separator`
/// is LF and `prefix`: what goes between two lines, in one copy of a constant
/// size (a few moves, not a call to `memcpy`).
fn write_lines<const P: usize, const S: usize>(
    buf: &mut BytesMut,
    prefix: &[u8; P],
    separator: &[u8; S],
    value: &[u8],
    first: Option<usize>,
) {
    debug_assert!(separator[0] == b'\n' && separator[1..] == prefix[..]);
    let Some(mut at) = first else {
        // One line: the usual case, and a plain copy.
        write_field(buf, prefix, value);
        return;
    };
    // Several lines (the caller's size hint made room for the usual case). An
    // empty line drops the prefix's trailing space (`data:`).
    buf.put_slice(prefix);
    let mut start = 0;
    loop {
        put_line_text(buf, &value[start..at]);
        buf.put_slice(separator);
        let crlf = value[at] == b'\r' && value.get(at + 1) == Some(&b'\n');
        start = at + 1 + usize::from(crlf);
        match find_line_break(&value[start..]) {
            Some(next) => at = start + next,
            None => break,
        }
    }
    put_line_text(buf, &value[start..]);
    buf.put_u8(b'\n');
}

/// A line's text after its prefix; an empty line drops the prefix's space.
fn put_line_text(buf: &mut BytesMut, line: &[u8]) {
    if line.is_empty() {
        buf.truncate(buf.len() - 1);
    } else {
        buf.put_slice(line);
    }
}

fn write_u128(buf: &mut BytesMut, mut n: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[at..]);
}

/// Why an [`Event`] (or raw encoded bytes) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The event type contained CR or LF, which would end the field early and let
    /// the rest of the value inject other fields.
    LineBreakInEventType,
    /// The id contained CR or LF.
    LineBreakInId,
    /// The id contained NUL; clients ignore such an id, so it is refused.
    NulInId,
    /// Raw bytes given to [`EncodedEvent::from_raw`] were not UTF-8.
    RawNotUtf8,
    /// Raw bytes given to [`EncodedEvent::from_raw`] did not end with a blank line,
    /// so whatever followed them would join the same event.
    RawUnterminated,
    /// The value given to `Event::json_data` could not be serialized (the message).
    Json(String),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineBreakInEventType => f.write_str("event type contains a line break"),
            Self::LineBreakInId => f.write_str("event id contains a line break"),
            Self::NulInId => f.write_str("event id contains a NUL character"),
            Self::RawNotUtf8 => f.write_str("raw event is not valid UTF-8"),
            Self::RawUnterminated => f.write_str("raw event does not end with a blank line"),
            Self::Json(msg) => write!(f, "event data could not be serialized to JSON: {msg}"),
        }
    }
}

impl std::error::Error for EventError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_id_finds_every_refused_byte_anywhere() {
        // The word-at-a-time test against a byte-by-byte one: every byte value
        // at every position of ids of every length up to three words, over a
        // background of id characters and of bytes just above 14.
        fn plain(id: &[u8]) -> Result<(), EventError> {
            if id.iter().any(|&b| b == b'\n' || b == b'\r') {
                Err(EventError::LineBreakInId)
            } else if id.contains(&0) {
                Err(EventError::NulInId)
            } else {
                Ok(())
            }
        }
        for background in [b'7', 14, 0x7f] {
            for len in 0..=24 {
                for at in 0..len {
                    for b in 0..=u8::MAX {
                        let mut id = vec![background; len];
                        id[at] = b;
                        assert_eq!(has_byte_below_14(&id), b < 14, "{id:?}");
                        if let Ok(text) = std::str::from_utf8(&id) {
                            assert_eq!(check_id(text), plain(&id), "{id:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(check_id("a\0b\nc"), Err(EventError::LineBreakInId));
        assert_eq!(check_id("12-abcdefgh\0"), Err(EventError::NulInId));
        assert_eq!(check_id("héllo ✓ 🦀 18446744073709551615-vvvvvvvv"), Ok(()));
    }

    fn enc(e: &Event) -> String {
        String::from_utf8(e.encode().as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn data_line_breaks() {
        let cases: &[(&str, &str)] = &[
            ("", "data:\n\n"),
            ("a", "data: a\n\n"),
            ("a\nb", "data: a\ndata: b\n\n"),
            ("a\rb", "data: a\ndata: b\n\n"),
            ("a\r\nb", "data: a\ndata: b\n\n"),
            ("a\n\rb", "data: a\ndata:\ndata: b\n\n"),
            ("a\r\n\r\nb", "data: a\ndata:\ndata: b\n\n"),
            ("\n", "data:\ndata:\n\n"),
            ("\r\n", "data:\ndata:\n\n"),
            ("\n\n\n", "data:\ndata:\ndata:\ndata:\n\n"),
            ("trailing\n", "data: trailing\ndata:\n\n"),
            ("\nleading", "data:\ndata: leading\n\n"),
            (" space", "data:  space\n\n"),
            ("  two", "data:   two\n\n"),
            ("\ttab", "data: \ttab\n\n"),
            ("a: b", "data: a: b\n\n"),
            (":colon", "data: :colon\n\n"),
            ("héllo ✓ 🦀", "data: héllo ✓ 🦀\n\n"),
            (
                "data: x\n\nevent: y",
                "data: data: x\ndata:\ndata: event: y\n\n",
            ),
        ];
        for (data, wire) in cases {
            assert_eq!(enc(&Event::message(*data)), *wire, "data {data:?}");
        }
    }

    #[test]
    fn all_fields_in_order() {
        let e = Event::default()
            .data("d")
            .comment("c")
            .event("e")
            .unwrap()
            .id("i")
            .unwrap()
            .retry(Duration::from_millis(1500));
        assert_eq!(enc(&e), ": c\nevent: e\nid: i\nretry: 1500\ndata: d\n\n");
    }

    #[test]
    fn fields_keep_leading_space_and_empty_values() {
        let e = Event::default().event(" x").unwrap().id(" 1").unwrap();
        assert_eq!(enc(&e), "event:  x\nid:  1\n\n");
        let e = Event::default().id("").unwrap().data("x");
        assert_eq!(enc(&e), "id:\ndata: x\n\n");
        let e = Event::default().event("").unwrap();
        assert_eq!(enc(&e), "event:\n\n");
    }

    #[test]
    fn invalid_fields_are_refused() {
        for bad in ["a\nb", "a\rb", "\r\n", "\n", "end\r"] {
            assert_eq!(
                Event::default().event(bad).unwrap_err(),
                EventError::LineBreakInEventType
            );
            assert_eq!(
                Event::default().id(bad).unwrap_err(),
                EventError::LineBreakInId
            );
        }
        assert_eq!(
            Event::default().id("a\0b").unwrap_err(),
            EventError::NulInId
        );
        // NUL is fine in the event type and data: clients accept it there.
        assert!(Event::default().event("a\0b").is_ok());
        assert_eq!(enc(&Event::message("a\0b")), "data: a\0b\n\n");
    }

    #[test]
    fn comments_cannot_inject_fields() {
        let e = Event::default().comment("hi\ndata: injected\r\n\r\nevent: x");
        assert_eq!(enc(&e), ": hi\n: data: injected\n:\n: event: x\n\n");
        let e = Event::default().comment("").comment("second");
        assert_eq!(enc(&e), ":\n: second\n\n");
    }

    #[test]
    fn retry_is_whole_milliseconds() {
        let cases = [
            (Duration::ZERO, "retry: 0\n\n"),
            (Duration::from_micros(1999), "retry: 1\n\n"),
            (Duration::from_secs(5), "retry: 5000\n\n"),
            (Duration::MAX, "retry: 18446744073709551615999\n\n"),
        ];
        for (d, wire) in cases {
            assert_eq!(enc(&Event::default().retry(d)), wire);
        }
    }

    #[test]
    fn empty_event_is_a_blank_line() {
        assert_eq!(enc(&Event::default()), "\n");
    }

    #[test]
    fn large_and_long_values() {
        let big = "x".repeat(1 << 20);
        let wire = enc(&Event::message(big.clone()));
        assert_eq!(wire.len(), (1 << 20) + "data: \n\n".len());
        assert!(wire.starts_with("data: xxx") && wire.ends_with("x\n\n"));

        let id = "7".repeat(10_000);
        assert_eq!(
            enc(&Event::default().id(id.clone()).unwrap()),
            format!("id: {id}\n\n")
        );

        let lines = "l\n".repeat(1000);
        let wire = enc(&Event::message(lines));
        assert_eq!(wire.matches("data: l\n").count(), 1000);
        assert!(wire.ends_with("data: l\ndata:\n\n"));
    }

    #[test]
    fn accessors() {
        let e = Event::message("d").id("1").unwrap();
        assert_eq!(e.get_data(), Some("d"));
        assert_eq!(e.get_id(), Some("1"));
        assert_eq!(e.get_event(), None);
        assert_eq!(e.get_retry(), None);
        assert_eq!(e.get_comment(), None);
        assert_eq!(format!("{e:?}"), r#"Event { id: "1", data: "d" }"#);
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_data_is_one_line() {
        let e = Event::default().json_data(&["a\nb", "c"]).unwrap();
        assert_eq!(enc(&e), "data: [\"a\\nb\",\"c\"]\n\n");
    }
}
