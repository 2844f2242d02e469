use std::{borrow::Cow, mem, time::Duration};

use memchr::{memchr, memchr2};

use super::{DecodeError, Frame, MessageEvent};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A push-based (sans-IO) `text/event-stream` parser that follows the WHATWG HTML
/// "Server-sent events" parsing rules exactly.
///
/// Feed it bytes with [`push`](Self::push) in chunks of any size, then take frames with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. [`EventStream`](crate::EventStream)
/// does that for a body or a stream of chunks.
///
/// # The rules
///
/// - The stream is UTF-8: invalid sequences become U+FFFD (never an error or a panic), and
///   exactly one leading BOM is skipped, even when split across chunks.
/// - Lines end at CRLF, LF or CR, also when a CR ends one chunk and its LF starts the next.
///   A line ended by CR is processed at once, not held back waiting for a possible LF.
/// - A line starting with `:` is a comment, skipped unless [`comments`](Self::comments) is on.
///   A line without a colon is a field with an empty value. One space after the colon is
///   removed (not a tab, not a second space). Unknown fields are ignored; field names are
///   case-sensitive.
/// - `data` lines are joined with LF. A block without `data` is not dispatched. An empty or
///   missing `event` means `message`.
/// - An `id` containing NUL is ignored. The last event id persists from block to block until
///   changed, `id` with an empty value resets it, and every event carries the last event id at
///   its dispatch. A block with an `id` and no `data` still sets it.
/// - `retry` is taken only when it is one or more ASCII digits; it applies at once
///   ([`retry`](Self::retry)) and is also reported on the event of its block.
/// - A final block without its blank line is never dispatched ([`finish`](Self::finish)).
///
/// Where the spec is silent: an empty `retry:` is ignored (as browsers do), a `retry` past
/// `u64::MAX` milliseconds is ignored, and an `id` seen in an incomplete final block is
/// forgotten with the block.
///
/// # Memory and time
///
/// Memory is bounded: the pending line plus the block's data and event type may hold at most
/// [`max_event_size`](Self::max_event_size) bytes (8 MiB by default). Each byte is scanned
/// once, however the input is chunked: feeding 1 MiB one byte at a time costs time linear in
/// its size.
///
/// # Compared with `eventsource-stream`
///
/// That crate buffers without bound, rescans its whole buffer on every chunk, panics on a
/// stream that starts with a BOM, ends the stream on invalid UTF-8, accepts `retry: +5`, and
/// loses the last event of a stream that ends in a lone CR. The conformance cases that show
/// each difference are in `tests/data/conformance.json`.
///
/// # Examples
///
/// ```
/// use tower_sse::{decode::Frame, Decoder};
///
/// let mut decoder = Decoder::new();
/// let mut events = Vec::new();
/// for chunk in ["\u{feff}data: he", "llo\r", "\ndata: world\n", "\nid: 1\n\n"] {
///     decoder.push(chunk.as_bytes());
///     while let Some(frame) = decoder.next_frame()? {
///         if let Frame::Event(event) = frame {
///             events.push(event.data);
///         }
///     }
/// }
/// assert_eq!(events, ["hello\nworld"]);
/// // The `id` block has no data: nothing is dispatched, but the last event id is updated.
/// assert_eq!(decoder.last_event_id(), "1");
/// # Ok::<(), tower_sse::DecodeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    /// Bytes received and not yet consumed; `buf[..pos]` is consumed.
    buf: Vec<u8>,
    /// Start of the current, incomplete line.
    pos: usize,
    /// `buf[pos..scan]` is known to hold no line ending, so it is never scanned twice.
    scan: usize,
    bom_checked: bool,
    /// The last line ended with a CR at the very end of the input: a LF next belongs to it.
    after_cr: bool,
    /// Skipping the rest of a block after [`DecodeError::TooLarge`].
    discarding: bool,
    /// While discarding, the start of the current line was dropped: it is not a blank line.
    line_dropped: bool,
    block: Block,
}

/// The spec's buffers, fed one complete line at a time.
#[derive(Debug, Clone)]
struct Block {
    data: String,
    event: String,
    id_buffer: String,
    /// An `id` field was read since the last blank line.
    id_set: bool,
    last_event_id: String,
    block_retry: Option<Duration>,
    retry: Option<Duration>,
    comments: bool,
    max_event_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// The default for [`max_event_size`](Self::max_event_size): 8 MiB, room for the largest
    /// events common APIs send (base64 images in LLM streams) while bounding a stuck or hostile
    /// stream.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 8 * 1024 * 1024;

    /// A decoder at the start of a stream, with no last event id.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut decoder = tower_sse::Decoder::new();
    /// assert_eq!(decoder.next_frame()?, None);
    /// assert_eq!(decoder.last_event_id(), "");
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            bom_checked: false,
            after_cr: false,
            discarding: false,
            line_dropped: false,
            block: Block {
                data: String::new(),
                event: String::new(),
                id_buffer: String::new(),
                id_set: false,
                last_event_id: String::new(),
                block_retry: None,
                retry: None,
                comments: false,
                max_event_size: Self::DEFAULT_MAX_EVENT_SIZE,
            },
        }
    }

    /// Sets the most bytes the event being assembled may hold: its pending (incomplete) line
    /// plus the data and event type gathered so far. Past it, [`next_frame`](Self::next_frame)
    /// returns [`DecodeError::TooLarge`] once and the rest of that block is skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_sse::{decode::Frame, DecodeError, Decoder};
    ///
    /// let mut decoder = Decoder::new().max_event_size(16);
    /// decoder.push(b"data: 0123456789\ndata: 0123456789\n\ndata: small\n\n");
    /// assert!(matches!(decoder.next_frame(), Err(DecodeError::TooLarge { limit: 16 })));
    /// // The oversized block is dropped whole; decoding resumes with the next one.
    /// let Some(Frame::Event(event)) = decoder.next_frame()? else { panic!() };
    /// assert_eq!(event.data, "small");
    /// # Ok::<(), DecodeError>(())
    /// ```
    pub fn max_event_size(mut self, limit: usize) -> Self {
        self.block.max_event_size = limit;
        self
    }

    /// Surfaces comment lines as [`Frame::Comment`] (they are skipped by default, as browsers
    /// do).
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_sse::{decode::Frame, Decoder};
    ///
    /// let mut decoder = Decoder::new().comments(true);
    /// decoder.push(b":ping\n\n");
    /// assert_eq!(decoder.next_frame()?, Some(Frame::Comment("ping".into())));
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn comments(mut self, enabled: bool) -> Self {
        self.block.comments = enabled;
        self
    }

    /// Starts from a known last event id, for instance the one sent as `Last-Event-ID` when
    /// reconnecting: events carry it until the stream sets another.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_sse::{decode::Frame, Decoder};
    ///
    /// let mut decoder = Decoder::new().with_last_event_id("41");
    /// decoder.push(b"data: x\n\n");
    /// let Some(Frame::Event(event)) = decoder.next_frame()? else { panic!() };
    /// assert_eq!(event.id, "41");
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn with_last_event_id(mut self, id: impl Into<String>) -> Self {
        self.block.last_event_id = id.into();
        self.block.id_buffer.clone_from(&self.block.last_event_id);
        self
    }

    /// The last event id string: the id of the latest completed block that set one. This is
    /// the value to send as `Last-Event-ID` on reconnection.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut decoder = tower_sse::Decoder::new();
    /// decoder.push(b"id: 1\ndata: a\n\nid: 2\n");
    /// while decoder.next_frame()?.is_some() {}
    /// // The block with id 2 is not complete yet.
    /// assert_eq!(decoder.last_event_id(), "1");
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn last_event_id(&self) -> &str {
        &self.block.last_event_id
    }

    /// The reconnection time most recently set by a `retry` field, if any; it applies as soon as
    /// the line is read, even in a block that is never dispatched.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let mut decoder = tower_sse::Decoder::new();
    /// decoder.push(b"retry: 2500\n\n");
    /// assert_eq!(decoder.next_frame()?, None);
    /// assert_eq!(decoder.retry(), Some(Duration::from_millis(2500)));
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn retry(&self) -> Option<Duration> {
        self.block.retry
    }

    /// Appends bytes of the stream. They are parsed lazily by [`next_frame`](Self::next_frame).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut decoder = tower_sse::Decoder::new();
    /// decoder.push(b"data: ");
    /// decoder.push(b"x\n\n");
    /// assert!(decoder.next_frame()?.is_some());
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn push(&mut self, bytes: &[u8]) {
        // Drop consumed bytes when moving the rest costs no more than what was consumed:
        // linear overall, and the buffer stays within twice the pending input.
        if self.pos > 0 && self.pos >= self.buf.len() - self.pos {
            self.buf.drain(..self.pos);
            self.scan -= self.pos;
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Parses the input pushed so far and returns the next frame, or `Ok(None)` when more input
    /// is needed.
    ///
    /// # Errors
    ///
    /// [`DecodeError::TooLarge`] when the current event outgrows
    /// [`max_event_size`](Self::max_event_size). The decoder stays usable: it skips the rest of
    /// that block.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_sse::{decode::Frame, Decoder};
    ///
    /// let mut decoder = Decoder::new();
    /// decoder.push(b"data: 1\n\ndata: 2\n\ndata: 3");
    /// let mut seen = Vec::new();
    /// while let Some(Frame::Event(event)) = decoder.next_frame()? {
    ///     seen.push(event.data);
    /// }
    /// assert_eq!(seen, ["1", "2"]);
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        loop {
            if self.after_cr && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                    self.scan = self.scan.max(self.pos);
                }
                self.after_cr = false;
            }
            if !self.bom_checked {
                let rest = &self.buf[self.pos..];
                if rest.len() < BOM.len() && BOM.starts_with(rest) {
                    return Ok(None);
                }
                if rest.starts_with(BOM) {
                    self.pos += BOM.len();
                    self.scan = self.scan.max(self.pos);
                }
                self.bom_checked = true;
            }
            let Some(offset) = memchr2(b'\n', b'\r', &self.buf[self.scan..]) else {
                self.scan = self.buf.len();
                let pending = self.buf.len() - self.pos;
                if self.discarding {
                    self.line_dropped |= pending > 0;
                    self.pos = self.buf.len();
                } else if pending > 0
                    && pending.saturating_add(self.block.held()) > self.block.max_event_size
                {
                    self.start_discarding();
                    self.line_dropped = true;
                    self.pos = self.buf.len();
                    return Err(self.too_large());
                }
                return Ok(None);
            };
            let end = self.scan + offset;
            let mut next = end + 1;
            if self.buf[end] == b'\r' {
                match self.buf.get(next) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let start = self.pos;
            let dropped = mem::take(&mut self.line_dropped);
            self.pos = next;
            self.scan = next;
            let line = &self.buf[start..end];
            if self.discarding {
                if line.is_empty() && !dropped {
                    self.discarding = false;
                    self.block.dispatch();
                }
                continue;
            }
            match self.block.line(line) {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(()) => {
                    self.start_discarding();
                    return Err(self.too_large());
                }
            }
        }
    }

    /// Ends the current stream as the spec requires at end of input: an incomplete line and an
    /// undispatched block are discarded. The last event id and reconnection time are kept, so
    /// the decoder is ready for the stream of a reconnection (which may start with its own BOM).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut decoder = tower_sse::Decoder::new();
    /// decoder.push(b"id: 1\ndata: a\n\ndata: never finished\n");
    /// while decoder.next_frame()?.is_some() {}
    /// decoder.finish();
    /// decoder.push(b"data: b\n\n");
    /// let Some(tower_sse::decode::Frame::Event(event)) = decoder.next_frame()? else { panic!() };
    /// assert_eq!((event.data.as_str(), event.id.as_str()), ("b", "1"));
    /// # Ok::<(), tower_sse::DecodeError>(())
    /// ```
    pub fn finish(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.scan = 0;
        self.bom_checked = false;
        self.after_cr = false;
        self.discarding = false;
        self.line_dropped = false;
        let block = &mut self.block;
        block.data.clear();
        block.event.clear();
        block.block_retry = None;
        block.id_buffer.clone_from(&block.last_event_id);
        block.id_set = false;
    }

    fn start_discarding(&mut self) {
        self.discarding = true;
        self.block.data.clear();
        self.block.event.clear();
        self.block.block_retry = None;
    }

    fn too_large(&self) -> DecodeError {
        DecodeError::TooLarge {
            limit: self.block.max_event_size,
        }
    }
}

impl Block {
    /// Bytes held for the block being assembled.
    fn held(&self) -> usize {
        self.data.len() + self.event.len()
    }

    /// Processes one complete line; `Err` when the block outgrows the limit.
    fn line(&mut self, line: &[u8]) -> Result<Option<Frame>, ()> {
        if line.is_empty() {
            return Ok(self.dispatch().map(Frame::Event));
        }
        if line.len().saturating_add(self.held()) > self.max_event_size {
            return Err(());
        }
        let (name, value) = match memchr(b':', line) {
            Some(0) => {
                return Ok(self
                    .comments
                    .then(|| Frame::Comment(text(strip_space(&line[1..])).into_owned())));
            }
            Some(colon) => (&line[..colon], strip_space(&line[colon + 1..])),
            None => (line, &[][..]),
        };
        // Slice patterns compile to inline compares, not a `memcmp` call per line.
        match name {
            [b'd', b'a', b't', b'a'] => {
                let value = text(value);
                // Room for the LF too: one allocation for a one-line event, not two.
                self.data.reserve(value.len() + 1);
                self.data.push_str(&value);
                self.data.push('\n');
            }
            [b'e', b'v', b'e', b'n', b't'] => {
                self.event.clear();
                self.event.push_str(&text(value));
            }
            // An id containing NUL is ignored.
            [b'i', b'd'] if memchr(0, value).is_none() => {
                self.id_buffer.clear();
                self.id_buffer.push_str(&text(value));
                self.id_set = true;
            }
            [b'r', b'e', b't', b'r', b'y'] => {
                if let Some(millis) = parse_digits(value) {
                    let retry = Duration::from_millis(millis);
                    self.retry = Some(retry);
                    self.block_retry = Some(retry);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// The spec's "dispatch the event" steps, run at each blank line.
    fn dispatch(&mut self) -> Option<MessageEvent> {
        if mem::take(&mut self.id_set) {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        let retry = self.block_retry.take();
        if self.data.is_empty() {
            self.event.clear();
            return None;
        }
        // Every data line ends with the LF the spec strips here. The buffer itself becomes the
        // event's data: no copy, and no huge buffer kept after a huge event.
        let mut data = mem::take(&mut self.data);
        data.pop();
        let event = if self.event.is_empty() {
            "message".to_owned()
        } else {
            mem::take(&mut self.event)
        };
        Some(MessageEvent {
            event,
            data,
            id: self.last_event_id.clone(),
            retry,
        })
    }
}

/// Removes the one U+0020 SPACE the spec allows after the colon.
fn strip_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

/// Decodes UTF-8 with replacement characters. Line endings and `:` are ASCII and never part of
/// a multi-byte sequence, so decoding each piece gives the same text as decoding the whole
/// stream first, as the spec does.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` validates valid text much faster than the lossy decoder's chunk iterator.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// A `retry` value: one or more ASCII digits. Values past `u64::MAX` milliseconds are ignored.
fn parse_digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}
