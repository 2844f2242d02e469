//! [`EventId`]: a topic's contiguous offset plus the epoch of the topic's
//! incarnation, written as one short opaque string.

use std::{
    collections::hash_map::RandomState,
    fmt,
    hash::{BuildHasher, Hasher},
    str::FromStr,
    sync::atomic::{AtomicU64, Ordering},
};

/// Characters of an epoch: 5 bits each, lowercase and digits, so an id never
/// needs escaping in a URL, a header or JSON.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
/// An epoch is 40 random bits, written as 8 characters.
const EPOCH_CHARS: usize = 8;
const EPOCH_BITS: u32 = 40;

/// The id of an event published through a [`Hub`](crate::Hub), sent to clients as
/// the SSE `id:` and read back from their `Last-Event-ID`.
///
/// It has two parts:
///
/// - the **offset**: `1` for a topic's first event, then `2`, `3`, ... with no
///   hole, so a missing event is visible to the hub, to a store and to a client;
/// - the **epoch**: 40 random bits drawn when the topic's history starts (the
///   topic is created, or created again after it expired or was evicted, or the
///   process restarted, or a broker lost its data). A cursor from another epoch
///   is never replayed from, since its offsets count other events.
///
/// Written `OFFSET-EPOCH`, for example `42-0fk3m9vq`: at most 29 characters,
/// usually about 11. Clients should treat it as opaque; only the hub reads it.
///
/// ```
/// use tower_sse_hub::EventId;
///
/// let id: EventId = "42-0fk3m9vq".parse().unwrap();
/// assert_eq!(id.offset(), 42);
/// assert_eq!(id.to_string(), "42-0fk3m9vq");
/// assert!("42".parse::<EventId>().is_err()); // no epoch
/// assert!("18446744073709551616-0fk3m9vq".parse::<EventId>().is_err()); // over u64
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    offset: u64,
    epoch: Epoch,
}

/// The incarnation of a topic's history; see [`EventId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl EventId {
    /// The id of the event at `offset` in the history of `epoch`.
    pub const fn new(offset: u64, epoch: Epoch) -> Self {
        Self { offset, epoch }
    }

    /// The position in the topic: `1` for its first event, `0` before it.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// The topic incarnation this id belongs to.
    pub const fn epoch(&self) -> Epoch {
        self.epoch
    }
}

impl Epoch {
    /// A fresh random epoch (40 bits from the standard library's randomly seeded
    /// hasher and a process-wide counter: two calls never return the same value in
    /// one process, and a restart draws new ones).
    pub fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        Self(hasher.finish() & ((1 << EPOCH_BITS) - 1))
    }

    /// The epoch whose 40 low bits are those of `bits` (for stores that keep the
    /// epoch elsewhere, e.g. in a broker).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits & ((1 << EPOCH_BITS) - 1))
    }

    /// The epoch's 40 bits.
    pub const fn bits(&self) -> u64 {
        self.0
    }
}

impl Epoch {
    /// The epoch's characters, most significant first.
    fn chars(self) -> [u8; EPOCH_CHARS] {
        let mut out = [0u8; EPOCH_CHARS];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (EPOCH_CHARS - 1 - i);
            *c = ALPHABET[((self.0 >> shift) & 31) as usize];
        }
        out
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always ASCII.
        f.write_str(std::str::from_utf8(&self.chars()).map_err(|_| fmt::Error)?)
    }
}

impl EventId {
    /// Runs `f` with the id's text, as `Display` writes it, but on the stack
    /// and without the formatting machinery: every publish writes one.
    pub(crate) fn with_text<T>(self, f: impl FnOnce(&str) -> T) -> T {
        let (out, at) = self.ascii();
        // Always ASCII, so never the empty fallback.
        f(std::str::from_utf8(&out[at..]).unwrap_or_default())
    }

    /// The id's characters, in `out[at..]`: at most 20 digits, `-` and the
    /// epoch's 8 characters.
    fn ascii(self) -> ([u8; 29], usize) {
        let mut out = [0u8; 29];
        let mut at = 20;
        let mut offset = self.offset;
        loop {
            at -= 1;
            out[at] = b'0' + (offset % 10) as u8;
            offset /= 10;
            if offset == 0 {
                break;
            }
        }
        out[20] = b'-';
        out[21..].copy_from_slice(&self.epoch.chars());
        (out, at)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|id| f.write_str(id))
    }
}

/// The text of a topic's latest id, kept so that the next one is written by
/// counting up its last digits (as an odometer) rather than from scratch: a
/// topic publishes offsets one after another, and the text is what every
/// published frame carries.
///
/// The text is a `String` changed only by `String`'s own methods, with ASCII
/// characters: it is valid by construction, so handing it out costs no UTF-8
/// check.
#[derive(Debug, Default)]
pub(crate) struct IdText {
    /// The id's characters, as `Display` writes them.
    text: String,
    /// What follows the offset's digits in `text`: `-` and the epoch.
    tail: String,
    /// The id `text` spells, `None` before the first.
    of: Option<EventId>,
}

/// Enough zeros for every trailing nine of a `u64` that counts up.
const ZEROS: &str = "00000000000000000000";

impl IdText {
    /// The text of `id`.
    pub(crate) fn of(&mut self, id: EventId) -> &str {
        let next = self.of.is_some_and(|last| {
            last.epoch == id.epoch && last.offset.checked_add(1) == Some(id.offset)
        });
        if next {
            self.count_up();
        } else if self.of != Some(id) {
            self.write(id);
        }
        self.of = Some(id);
        &self.text
    }

    /// Writes `id` from scratch.
    fn write(&mut self, id: EventId) {
        let (ascii, at) = id.ascii();
        self.text.clear();
        self.tail.clear();
        for &b in &ascii[at..20] {
            self.text.push(char::from(b));
        }
        for &b in &ascii[20..] {
            self.tail.push(char::from(b));
        }
        self.text.push_str(&self.tail);
    }

    /// Adds one to the offset: the trailing nines become zeros and the digit
    /// before them goes up (a `1` in front when every digit was a nine).
    fn count_up(&mut self) {
        let digits = self.text.len() - self.tail.len();
        let bytes = self.text.as_bytes();
        let mut at = digits;
        while at > 0 && bytes[at - 1] == b'9' {
            at -= 1;
        }
        let nines = digits - at;
        if at == 0 {
            self.text.clear();
            self.text.push('1');
        } else {
            let up = char::from(bytes[at - 1] + 1);
            self.text.truncate(at - 1);
            self.text.push(up);
        }
        if nines > 0 {
            self.text.push_str(&ZEROS[..nines]);
        }
        self.text.push_str(&self.tail);
    }
}

/// A string that is not an [`EventId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseEventIdError;

impl fmt::Display for ParseEventIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an event id of the form OFFSET-EPOCH")
    }
}

impl std::error::Error for ParseEventIdError {}

impl FromStr for EventId {
    type Err = ParseEventIdError;

    /// Strict: decimal digits (no sign, no leading zero except `0` itself), `-`,
    /// and 8 epoch characters. Anything else, including an offset beyond `u64`,
    /// is an error and never wraps.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (offset, epoch) = s.split_once('-').ok_or(ParseEventIdError)?;
        let canonical = !offset.is_empty()
            && offset.len() <= 20
            && offset.bytes().all(|b| b.is_ascii_digit())
            && (offset == "0" || !offset.starts_with('0'));
        if !canonical || epoch.len() != EPOCH_CHARS {
            return Err(ParseEventIdError);
        }
        let offset = offset.parse::<u64>().map_err(|_| ParseEventIdError)?;
        let mut bits = 0u64;
        for b in epoch.bytes() {
            let digit = ALPHABET
                .iter()
                .position(|&c| c == b)
                .ok_or(ParseEventIdError)?;
            bits = (bits << 5) | digit as u64;
        }
        Ok(Self::new(offset, Epoch(bits)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_text_counts_up_as_display_writes() {
        let epoch = Epoch::random();
        let mut text = IdText::default();
        for offset in (0..=100_500).chain([999, 1_000, 99_999_999, 100_000_000]) {
            let id = EventId::new(offset, epoch);
            assert_eq!(text.of(id), id.to_string());
        }
        // Across epochs, going back, and at the end of the range.
        let other = Epoch::random();
        for id in [
            EventId::new(7, other),
            EventId::new(8, epoch),
            EventId::new(3, epoch),
            EventId::new(u64::MAX - 1, epoch),
            EventId::new(u64::MAX, epoch),
            EventId::new(0, epoch),
        ] {
            assert_eq!(text.of(id), id.to_string());
        }
    }

    #[test]
    fn round_trips_and_rejects_the_rest() {
        for _ in 0..100 {
            let id = EventId::new(123, Epoch::random());
            assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        }
        let max = EventId::new(u64::MAX, Epoch::from_bits(u64::MAX));
        assert_eq!(max.to_string(), "18446744073709551615-vvvvvvvv");
        assert_eq!(max.to_string().parse::<EventId>(), Ok(max));
        assert_eq!(EventId::new(0, Epoch(0)).to_string(), "0-00000000");
        for bad in [
            "",
            "-",
            "1-",
            "-00000000",
            "01-00000000",
            "+1-00000000",
            "1-0000000",
            "1-000000000",
            "1-0000000w",
            "1-0000000A",
            "1 -00000000",
            "18446744073709551616-00000000",
            "99999999999999999999-00000000",
            "1-00000000-00000000",
        ] {
            assert_eq!(bad.parse::<EventId>(), Err(ParseEventIdError), "{bad:?}");
        }
    }

    #[test]
    fn epochs_differ() {
        let a = Epoch::random();
        let b = Epoch::random();
        assert_ne!(a, b);
        assert!(a.bits() < 1 << 40);
    }
}
