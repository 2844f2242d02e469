//! [`Cursor`]: the `id:` of an event on a stream of several topics, the
//! position of every topic of the stream in one short string.

use std::{fmt, str::FromStr};

use crate::id::{Epoch, EventId};

/// The most topics one stream (and so one cursor) covers.
pub const MAX_TOPICS: usize = 64;

/// What every cursor's text starts with: the format's version.
const PREFIX: &str = "m1.";

/// The position of each topic of a multi-topic stream
/// ([`Hub::subscribe_many`](crate::Hub::subscribe_many)), sent as the `id:` of
/// each of its events and read back from the client's `Last-Event-ID`.
///
/// # Format, version 1
///
/// `m1.` followed by the unpadded base64url (RFC 4648 §5) encoding of a
/// sequence of entries, one per topic, sorted by tag with no tag twice:
///
/// | bytes | what |
/// |---|---|
/// | 4 | the topic's tag: FNV-1a (32 bits) of its name's UTF-8 bytes, big-endian |
/// | 5 | the epoch of the topic's history (40 bits), big-endian |
/// | 1 to 10 | the offset of the last event the client has, LEB128 (7 bits a byte, low first; the shortest form) |
///
/// At most [`MAX_TOPICS`] entries. An entry is 10 to 19 bytes, usually 11 or
/// 12: a cursor over 64 topics whose offsets are below two million is 1 027
/// characters. Every character is URL- and header-safe.
///
/// The cursor only positions: it names no topic, only tags, and the topics of
/// a stream always come from the request. A tag that matches no topic of the
/// request is ignored, so a crafted cursor can never open a topic.
///
/// ```
/// use tower_sse_hub::{Cursor, EventId};
///
/// let mut cursor = Cursor::new();
/// let news: EventId = "42-0fk3m9vq".parse().unwrap();
/// cursor.set("news", news);
/// cursor.set("sport", "7-00000001".parse().unwrap());
/// let text = cursor.to_string();
/// assert!(text.starts_with("m1."));
/// let back: Cursor = text.parse().unwrap();
/// assert_eq!(back.get("news"), Some(news));
/// assert_eq!(back.get("weather"), None);
/// assert!("m1.!!".parse::<Cursor>().is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// `(tag, id)`, sorted by tag, tags unique.
    entries: Vec<(u32, EventId)>,
}

/// Why a string is not a [`Cursor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCursorError(&'static str);

impl fmt::Display for ParseCursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a multi-topic cursor: {}", self.0)
    }
}

impl std::error::Error for ParseCursorError {}

/// The tag of a topic in a cursor: FNV-1a, 32 bits.
pub(crate) fn tag(topic: &str) -> u32 {
    topic.bytes().fold(0x811c_9dc5, |hash: u32, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Each topic's tag, or `None` for a topic whose tag another of `topics` has
/// too: a cursor cannot tell those apart, so it positions neither (they start
/// afresh on a reconnect).
pub(crate) fn unique_tags(topics: &[String]) -> Vec<Option<u32>> {
    let tags: Vec<u32> = topics.iter().map(|topic| tag(topic)).collect();
    tags.iter()
        .map(|t| (tags.iter().filter(|other| *other == t).count() == 1).then_some(*t))
        .collect()
}

impl Cursor {
    /// No topic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the position of `topic`. A cursor holds at most [`MAX_TOPICS`]:
    /// returns `false` (and changes nothing) for one more.
    pub fn set(&mut self, topic: &str, id: EventId) -> bool {
        self.set_tag(tag(topic), id)
    }

    pub(crate) fn set_tag(&mut self, tag: u32, id: EventId) -> bool {
        match self.entries.binary_search_by_key(&tag, |(t, _)| *t) {
            Ok(at) => self.entries[at].1 = id,
            Err(_) if self.entries.len() >= MAX_TOPICS => return false,
            Err(at) => self.entries.insert(at, (tag, id)),
        }
        true
    }

    /// The position of `topic`, if the cursor has one.
    pub fn get(&self, topic: &str) -> Option<EventId> {
        self.get_tag(tag(topic))
    }

    pub(crate) fn get_tag(&self, tag: u32) -> Option<EventId> {
        self.entries
            .binary_search_by_key(&tag, |(t, _)| *t)
            .ok()
            .map(|at| self.entries[at].1)
    }

    /// How many topics it positions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it positions no topic.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The binary body (before base64url).
    fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.entries.len() * 12);
        for (tag, id) in &self.entries {
            body.extend_from_slice(&tag.to_be_bytes());
            body.extend_from_slice(&id.epoch().bits().to_be_bytes()[3..]);
            let mut offset = id.offset();
            loop {
                let low = (offset & 0x7f) as u8;
                offset >>= 7;
                if offset == 0 {
                    body.push(low);
                    break;
                }
                body.push(low | 0x80);
            }
        }
        body
    }

    fn from_body(mut body: &[u8]) -> Result<Self, ParseCursorError> {
        let mut entries: Vec<(u32, EventId)> = Vec::new();
        while !body.is_empty() {
            if entries.len() == MAX_TOPICS {
                return Err(ParseCursorError("more than 64 topics"));
            }
            let (head, rest) = body
                .split_at_checked(9)
                .ok_or(ParseCursorError("an entry is cut short"))?;
            let tag = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let mut epoch = [0u8; 8];
            epoch[3..].copy_from_slice(&head[4..9]);
            let epoch = Epoch::from_bits(u64::from_be_bytes(epoch));
            let (offset, rest) = leb128(rest)?;
            if entries.last().is_some_and(|(last, _)| *last >= tag) {
                return Err(ParseCursorError("tags not in order"));
            }
            entries.push((tag, EventId::new(offset, epoch)));
            body = rest;
        }
        Ok(Self { entries })
    }
}

/// A LEB128 `u64` in its shortest form, and what follows it.
fn leb128(bytes: &[u8]) -> Result<(u64, &[u8]), ParseCursorError> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        if i == 9 && low > 1 {
            return Err(ParseCursorError("an offset over u64"));
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && *byte == 0 {
                return Err(ParseCursorError("an offset not in its shortest form"));
            }
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(ParseCursorError("an offset is cut short"))
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode64(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(BASE64URL[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
}

fn decode64(text: &str) -> Result<Vec<u8>, ParseCursorError> {
    let bad = ParseCursorError("not base64url");
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Ok(c - b'A'),
        b'a'..=b'z' => Ok(c - b'a' + 26),
        b'0'..=b'9' => Ok(c - b'0' + 52),
        b'-' => Ok(62),
        b'_' => Ok(63),
        _ => Err(bad.clone()),
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return Err(bad);
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(sextet(*c)?) << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // The bits past the last byte must be zero: one text per body.
        if n & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return Err(bad);
        }
        out.extend((0..bytes).map(|i| (n >> (16 - 8 * i)) as u8));
    }
    Ok(out)
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::from(PREFIX);
        encode64(&self.body(), &mut text);
        f.write_str(&text)
    }
}

impl FromStr for Cursor {
    type Err = ParseCursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let body = text
            .strip_prefix(PREFIX)
            .ok_or(ParseCursorError("no `m1.` prefix"))?;
        Self::from_body(&decode64(body)?)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(offset: u64, epoch: u64) -> EventId {
        EventId::new(offset, Epoch::from_bits(epoch))
    }

    #[test]
    fn sixty_four_topics_fit_in_about_a_kibibyte() {
        let mut cursor = Cursor::new();
        for i in 0..64 {
            assert!(cursor.set(&format!("topic-{i}"), id(1_999_999, 0xff_ffff_ffff)));
        }
        assert!(!cursor.set("one more", id(1, 1)));
        let text = cursor.to_string();
        assert_eq!(text.len(), 1027);
        assert!(text.len() <= tower_sse::MAX_LAST_EVENT_ID_LEN);
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
    }

    #[test]
    fn the_format_byte_for_byte() {
        let mut cursor = Cursor::new();
        cursor.set("a", id(300, 0x01_0203_0405));
        // FNV-1a of "a" is 0xe40c292c; 300 is LEB128 0xac 0x02.
        let body = [
            0xe4, 0x0c, 0x29, 0x2c, 0x01, 0x02, 0x03, 0x04, 0x05, 0xac, 0x02,
        ];
        let mut text = String::from("m1.");
        encode64(&body, &mut text);
        assert_eq!(cursor.to_string(), text);
        assert_eq!(text, "m1.5AwpLAECAwQFrAI");
    }

    #[test]
    fn hostile_texts_are_refused() {
        for text in [
            "",
            "m1",
            "m2.AAAA",
            "42-0fk3m9vq",
            "m1.A",
            "m1.AAAAAAAAAAAA",      // 9 bytes: an entry without its offset
            "m1.5AwpLAECAwQFrAJ",   // stray bits after the last byte
            "m1.5AwpLAECAwQFgAA",   // an offset not in its shortest form
            "m1.5AwpLAECAwQF/////", // not base64url
            "m1.5AwpLAECAwQF_________________w", // an offset over u64
        ] {
            assert!(text.parse::<Cursor>().is_err(), "{text:?}");
        }
        // Tags twice, or out of order.
        let mut body = Vec::new();
        for _ in 0..2 {
            body.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1, 5]);
        }
        let mut text = String::from("m1.");
        encode64(&body, &mut text);
        assert!(text.parse::<Cursor>().is_err());
        // 65 entries.
        let body: Vec<u8> = (0u32..65)
            .flat_map(|t| t.to_be_bytes().into_iter().chain([0, 0, 0, 0, 1, 5]))
            .collect();
        let mut text = String::from("m1.");
        encode64(&body, &mut text);
        assert!(text.parse::<Cursor>().is_err());
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec((any::<String>(), any::<u64>(), any::<u64>()), 0..64)) {
            let mut cursor = Cursor::new();
            for (topic, offset, epoch) in &entries {
                cursor.set(topic, id(*offset, *epoch));
            }
            let text = cursor.to_string();
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(text.parse::<Cursor>().unwrap(), cursor.clone());
            for (topic, _, _) in &entries {
                prop_assert!(cursor.get(topic).is_some());
            }
        }

        /// Every change of a valid cursor's text is refused or parses into a
        /// cursor that encodes back to exactly that text: never a panic, and
        /// never two texts for one cursor.
        #[test]
        fn mutations_are_refused_or_canonical(
            entries in proptest::collection::vec((any::<u32>(), any::<u64>(), any::<u64>()), 1..8),
            at in any::<prop::sample::Index>(),
            with in any::<u8>(),
        ) {
            let mut cursor = Cursor::new();
            for (tag, offset, epoch) in &entries {
                cursor.set_tag(*tag, id(*offset, *epoch));
            }
            let mut text = cursor.to_string().into_bytes();
            let at = at.index(text.len());
            text[at] = with;
            if let Ok(text) = String::from_utf8(text) {
                if let Ok(parsed) = text.parse::<Cursor>() {
                    prop_assert_eq!(parsed.to_string(), text);
                }
            }
        }
    }
}
