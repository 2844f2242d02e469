//! Where events end in a byte stream written by someone else.
//!
//! The layer may only write a heartbeat, a `retry:` hint or a last event between
//! two events, never inside one. [`Boundary`] follows the bytes of a foreign body,
//! frame by frame, and knows at every point whether the stream is between events:
//! a blank line ends an event, lines end with LF, CR or CRLF, and any of these may
//! be split across frames.

use memchr::memchr2;

/// The state of the line being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Nothing of the current line has been seen yet.
    Start,
    /// Inside a comment line (it began with `:`).
    Comment,
    /// Inside a field line (`data: ...`, `id`, anything but a comment).
    Field,
}

/// Tracks event boundaries in an SSE byte stream.
#[derive(Clone, Debug)]
pub(crate) struct Boundary {
    line: Line,
    /// The last byte was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// The current block has at least one line.
    in_block: bool,
    /// The current block has a field line, so a blank line completes an event.
    has_field: bool,
}

impl Boundary {
    pub(crate) const fn new() -> Self {
        Self {
            line: Line::Start,
            after_cr: false,
            in_block: false,
            has_field: false,
        }
    }

    /// Whether the stream is between events: anything written now is parsed on its
    /// own. (After a block-ending CR, an LF may still follow; it would then read as
    /// one more blank line, which dispatches nothing.)
    pub(crate) fn at_boundary(&self) -> bool {
        self.line == Line::Start && !self.in_block
    }

    /// Reads the next bytes of the stream; returns how many events they completed
    /// (blocks with at least one field line; comment-only blocks are not events).
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut events = 0;
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while !bytes.is_empty() {
            let Some(end) = memchr2(b'\n', b'\r', bytes) else {
                self.begin_line(bytes[0]);
                break;
            };
            if end > 0 {
                self.begin_line(bytes[0]);
            }
            events += self.end_line();
            let crlf = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if crlf {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        events
    }

    fn begin_line(&mut self, first: u8) {
        if self.line == Line::Start {
            self.line = if first == b':' {
                Line::Comment
            } else {
                Line::Field
            };
        }
    }

    fn end_line(&mut self) -> u64 {
        let line = std::mem::replace(&mut self.line, Line::Start);
        match line {
            Line::Start => {
                // A blank line: the block ends.
                let event = std::mem::take(&mut self.has_field);
                self.in_block = false;
                u64::from(event)
            }
            Line::Comment => {
                self.in_block = true;
                0
            }
            Line::Field => {
                self.in_block = true;
                self.has_field = true;
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-at-a-time reference: for each prefix length, whether it ends at a
    /// boundary, and the events completed so far. Written independently of
    /// `feed`, as the WHATWG parser reads: lines first, then blocks.
    fn reference(input: &[u8]) -> Vec<(bool, u64)> {
        let mut out = vec![(true, 0)];
        let (mut line_len, mut first, mut block, mut field, mut events) = (0, 0u8, false, false, 0);
        let mut prev_cr = false;
        for &b in input {
            let is_end = b == b'\n' || b == b'\r';
            if b == b'\n' && prev_cr {
                prev_cr = false;
            } else if is_end {
                if line_len == 0 {
                    if field {
                        events += 1;
                    }
                    block = false;
                    field = false;
                } else {
                    block = true;
                    field |= first != b':';
                }
                line_len = 0;
                prev_cr = b == b'\r';
            } else {
                if line_len == 0 {
                    first = b;
                }
                line_len += 1;
                prev_cr = false;
            }
            out.push((line_len == 0 && !block, events));
        }
        out
    }

    const CASES: &[(&[u8], bool, u64)] = &[
        // input, ends at a boundary, events completed
        (b"", true, 0),
        (b"data: a", false, 0),
        (b"data: a\n", false, 0),
        (b"data: a\n\n", true, 1),
        (b"data: a\r\r", true, 1),
        (b"data: a\r\n\r\n", true, 1),
        (b"data: a\r\n\r", true, 1),
        (b"data: a\n\r\n", true, 1),
        (b"data: a\r\n", false, 0),
        (b"data: a\ndata: b\n\nid: 2\n\n", true, 2),
        (b":\n\n", true, 0),
        (b": ping\r\n\r\n", true, 0),
        (b": c\ndata: x\n\n", true, 1),
        (b"retry: 10\n\n", true, 1),
        (b"data\n\n", true, 1),
        (b"\n\n\n", true, 0),
        (b"\r\n\r\n", true, 0),
        (b"data: a\n\ndata: b", false, 1),
        (b"data: a\n\n:", false, 1),
        (b"data: \xff\xfe\n\n", true, 1),
    ];

    #[test]
    fn table() {
        for &(input, boundary, events) in CASES {
            let mut b = Boundary::new();
            let got = b.feed(input);
            let name = String::from_utf8_lossy(input);
            assert_eq!(b.at_boundary(), boundary, "{name:?}");
            assert_eq!(got, events, "{name:?}");
            assert_eq!(
                *reference(input).last().unwrap(),
                (boundary, events),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_trailing_cr_waits_for_the_next_frame() {
        let mut b = Boundary::new();
        assert_eq!(b.feed(b"data: a\r"), 0);
        assert!(!b.at_boundary());
        // The LF belongs to the CR: the line ended once, so this LF alone is not
        // a blank line.
        assert_eq!(b.feed(b"\n"), 0);
        assert!(!b.at_boundary());
        assert_eq!(b.feed(b"\r"), 1);
        assert!(b.at_boundary());
        assert_eq!(b.feed(b"\n"), 0);
        assert!(b.at_boundary());
    }

    fn all_inputs() -> Vec<Vec<u8>> {
        let mut inputs: Vec<Vec<u8>> = CASES.iter().map(|c| c.0.to_vec()).collect();
        inputs
            .push(b"id: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n: hb\r\r\ndata: z\n\n".to_vec());
        inputs.push(b"data: a\r\rdata: b\n\r\n:\n\ndata: c\r\n\n".to_vec());
        inputs
    }

    #[test]
    fn every_prefix_matches_the_reference() {
        for input in all_inputs() {
            let expected = reference(&input);
            let mut b = Boundary::new();
            let mut events = 0;
            for (i, byte) in input.iter().enumerate() {
                events += b.feed(std::slice::from_ref(byte));
                assert_eq!(
                    (b.at_boundary(), events),
                    expected[i + 1],
                    "{input:?} at {i}"
                );
            }
        }
    }

    #[test]
    fn every_split_gives_the_same_result() {
        for input in all_inputs() {
            let expected = reference(&input);
            for cut in 0..=input.len() {
                let mut b = Boundary::new();
                let first = b.feed(&input[..cut]);
                assert_eq!(
                    (b.at_boundary(), first),
                    expected[cut],
                    "{input:?} cut {cut}"
                );
                let second = b.feed(&input[cut..]);
                assert_eq!(
                    (b.at_boundary(), first + second),
                    *expected.last().unwrap(),
                    "{input:?} cut {cut}"
                );
            }
        }
    }

    #[test]
    fn three_way_splits_give_the_same_result() {
        for input in all_inputs() {
            let expected = *reference(&input).last().unwrap();
            for i in 0..=input.len() {
                for j in i..=input.len() {
                    let mut b = Boundary::new();
                    let events = b.feed(&input[..i]) + b.feed(&input[i..j]) + b.feed(&input[j..]);
                    assert_eq!((b.at_boundary(), events), expected, "{input:?} {i} {j}");
                }
            }
        }
    }
}
