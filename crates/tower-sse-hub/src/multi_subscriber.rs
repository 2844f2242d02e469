//! [`MultiSubscriber`]: one stream of several topics, whose every event's
//! `id:` is a [`Cursor`] over all of them.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;
use tower_sse::{EncodedEvent, Event};

use crate::{cursor::Cursor, EventId, Subscriber};

/// A subscription to a set of topics
/// ([`Hub::subscribe_many`](crate::Hub::subscribe_many)): a `Stream` that
/// merges their events, each topic's in its own order, and across topics in
/// the order this process stored them (of the events ready when it looks: one
/// stored while it looks may come a step later). That order is the monotonic
/// clock's as each publish began: publishes made one after the other, by any
/// threads, come in the order they were made; two made at the same time, in
/// either. A replay is in stored order too, and a topic's notices and snapshot
/// come as soon as they are due.
///
/// Every event it yields carries, as its `id:`, a [`Cursor`] over every
/// topic of the stream (instead of the topic's own id): a client that
/// reconnects with it as `Last-Event-ID` and the same topics resumes each topic
/// exactly. The events' other bytes are still the ones shared with every
/// subscriber; only the `id:` line is this stream's own.
///
/// The hub's notices name their topic: a topic whose history no longer holds
/// the client's position gets `event: reset` with `{"topic","after"}`, one
/// that skipped events `event: gap` with `{"topic","skipped"}`, while the
/// other topics resume. Topics refused by
/// [`Hub::subscribe_authorized`](crate::Hub::subscribe_authorized) are named
/// first, in `event: refused` with `{"topics":[...]}` (without an `id:`).
///
/// It ends when one of its topics' streams ends (the hub closed, or the
/// subscriber was cut off for lagging): the client reconnects with the last
/// cursor and resumes them all.
pub struct MultiSubscriber {
    members: Vec<Member>,
    /// Events to yield before the topics' (the `refused` notice).
    first: Option<EncodedEvent>,
    ended: bool,
}

struct Member {
    topic: String,
    /// The topic's tag in the stream's cursor; `None` for a topic whose tag
    /// another topic of the stream has too: left out, it starts afresh on a
    /// reconnect.
    tag: Option<u32>,
    subscriber: Subscriber,
    /// The id of the topic's last event this stream yielded (or where it
    /// started).
    at: EventId,
    /// The topic's next event, taken to compare its place in the commit order
    /// with the other topics', and its stamp.
    head: Option<(u64, EncodedEvent)>,
}

impl MultiSubscriber {
    /// The topics' subscribers (in the request's order, distinct), each with
    /// its tag in the cursor (`None`: not in it, see [`unique_tags`]) and the
    /// id it starts after.
    ///
    /// [`unique_tags`]: crate::cursor::unique_tags
    pub(crate) fn new(members: Vec<(String, Option<u32>, Subscriber, EventId)>) -> Self {
        let members = members
            .into_iter()
            .map(|(topic, tag, subscriber, at)| Member {
                tag,
                topic,
                subscriber,
                at,
                head: None,
            })
            .collect();
        Self {
            members,
            first: None,
            ended: false,
        }
    }

    /// The topics, in the request's order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.topic.as_str())
    }

    /// The [`position`](Subscriber::position) of `topic`'s subscription: its
    /// replay ends with it (the id for a snapshot of that topic's state).
    pub fn position(&self, topic: &str) -> Option<EventId> {
        self.members
            .iter()
            .find(|m| m.topic == topic)
            .map(|m| m.subscriber.position())
    }

    /// The cursor as of what this stream has yielded (or, before anything,
    /// where each topic starts).
    pub fn cursor(&self) -> Cursor {
        let mut cursor = Cursor::new();
        for member in &self.members {
            if let Some(tag) = member.tag {
                cursor.set_tag(tag, member.at);
            }
        }
        cursor
    }

    /// Queues `event` on `topic`'s stream right after its replay, before its
    /// live events ([`Subscriber::then`]): a snapshot of that topic's state.
    /// Its `id:`, if it has one, becomes the stream's cursor. Nothing if
    /// `topic` is not one of the stream's.
    pub fn then(mut self, topic: &str, event: impl Into<EncodedEvent>) -> Self {
        if let Some(member) = self.members.iter_mut().find(|m| m.topic == topic) {
            member.subscriber.greet(event.into());
        }
        self
    }

    /// Starts the stream with `event: refused`, `{"topics": refused}`.
    pub(crate) fn refusing(mut self, refused: &[String]) -> Self {
        if !refused.is_empty() {
            let data = format!("{{\"topics\":{}}}", json_strings(refused));
            self.first = Event::default()
                .event("refused")
                .map(|e| e.data(data).encode())
                .ok();
        }
        self
    }

    /// `event` of member `at`, with the stream's cursor as its `id:`, and the
    /// hub's notices naming their topic.
    fn relabel(&mut self, at: usize, event: EncodedEvent) -> EncodedEvent {
        let Some(line) = id_line(event.as_bytes()) else {
            return event;
        };
        let bytes = event.into_bytes();
        if let Some(id) = std::str::from_utf8(&bytes[line.value.clone()])
            .ok()
            .and_then(|text| text.parse::<EventId>().ok())
        {
            self.members[at].at = id;
        }
        let cursor = self.cursor().to_string();
        let topic = &self.members[at].topic;
        if let Some(notice) = notice(&bytes, topic, &cursor) {
            return notice;
        }
        EncodedEvent::from_parts([
            bytes.slice(..line.start),
            Bytes::from(format!("id: {cursor}\n")),
            bytes.slice(line.end..),
        ])
        // Cut at line ends of valid UTF-8 that ended with a blank line: valid.
        .unwrap_or_else(|_| EncodedEvent::comment("an event could not be relabelled"))
    }
}

/// Where an event's `id:` line is: the whole line, and its value.
struct IdLine {
    start: usize,
    end: usize,
    value: std::ops::Range<usize>,
}

/// The first `id:` line of an encoded event (the hub writes one, with `\n`
/// line ends).
fn id_line(bytes: &[u8]) -> Option<IdLine> {
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| start + i + 1);
        let line = &bytes[start..end];
        if let Some(rest) = line.strip_prefix(b"id:") {
            let skip = usize::from(rest.first() == Some(&b' '));
            let value = start + 3 + skip..end - usize::from(line.ends_with(b"\n"));
            return Some(IdLine { start, end, value });
        }
        start = end;
    }
    None
}

/// The hub's `reset` and `gap` notices, rewritten to name `topic` and carry
/// `cursor`; `None` for any other event.
fn notice(bytes: &[u8], topic: &str, cursor: &str) -> Option<EncodedEvent> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    let kind = lines.next()?.strip_prefix("event: ")?;
    let data = text.lines().find_map(|l| l.strip_prefix("data: "))?;
    let topic = json_strings(std::slice::from_ref(&topic.to_owned()));
    let topic = &topic[1..topic.len() - 1];
    let data = match kind {
        "reset" => {
            let after = data.strip_prefix("{\"after\":")?.strip_suffix('}')?;
            format!("{{\"topic\":{topic},\"after\":{after}}}")
        }
        "gap" => {
            let skipped = data.strip_prefix("{\"skipped\":")?.strip_suffix('}')?;
            format!("{{\"topic\":{topic},\"skipped\":{skipped}}}")
        }
        _ => return None,
    };
    Event::default()
        .event(kind)
        .and_then(|e| e.id(cursor))
        .map(|e| e.data(data).encode())
        .ok()
}

/// `["a","b"]`, with JSON escapes.
fn json_strings(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

impl Stream for MultiSubscriber {
    type Item = EncodedEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EncodedEvent>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(first));
        }
        for member in this.members.iter_mut().filter(|m| m.head.is_none()) {
            match Pin::new(&mut member.subscriber).poll_next(cx) {
                Poll::Ready(Some(event)) => member.head = Some((member.subscriber.stamp(), event)),
                // What the others have taken is still yielded, then the end.
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {}
            }
        }
        // The earliest stored (a notice, stamped 0, first), the first topic
        // on a tie.
        let next = this
            .members
            .iter()
            .enumerate()
            .filter_map(|(at, m)| m.head.as_ref().map(|(stamp, _)| (*stamp, at)))
            .min();
        match next {
            Some((_, at)) => {
                let Some((_, event)) = this.members[at].head.take() else {
                    return Poll::Pending;
                };
                Poll::Ready(Some(this.relabel(at, event)))
            }
            None if this.ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl fmt::Debug for MultiSubscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiSubscriber")
            .field("topics", &self.topics().collect::<Vec<_>>())
            .field("cursor", &self.cursor().to_string())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id_line() {
        let bytes = b"event: x\nid: 4-00000000\ndata: id: no\n\n";
        let line = id_line(bytes).unwrap();
        assert_eq!(&bytes[line.value.clone()], b"4-00000000");
        assert_eq!(&bytes[line.start..line.end], b"id: 4-00000000\n");
        assert!(id_line(b"data: id: 3\n\n").is_none());
    }

    #[test]
    fn notices_name_their_topic() {
        let reset = notice(
            b"event: reset\nid: 3-00000000\ndata: {\"after\":\"3-00000000\"}\n\n",
            "a\"b",
            "m1.X",
        )
        .unwrap();
        assert_eq!(
            reset.as_bytes(),
            b"event: reset\nid: m1.X\ndata: {\"topic\":\"a\\\"b\",\"after\":\"3-00000000\"}\n\n"
        );
        assert!(notice(b"event: message\ndata: {}\n\n", "t", "m1.X").is_none());
    }
}
