//! The bounded history of one topic, for `Last-Event-ID` replay.

use std::collections::VecDeque;

use crate::{EncodedEvent, Event};

/// The most recent events of a topic, bounded by count and by bytes.
///
/// `floor` is the id after which the history is complete: every event of the topic
/// with an id above `floor` is still here. A cursor at or above it can be replayed
/// exactly; one below it has lost events.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<(u64, EncodedEvent)>,
    bytes: usize,
    floor: u64,
    max_len: usize,
    max_bytes: usize,
}

impl History {
    /// An empty history for a topic created when the hub's last id was `floor`.
    pub(crate) fn new(floor: u64, max_len: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            floor,
            max_len,
            max_bytes,
        }
    }

    /// Appends an event (ids increase), evicting the oldest beyond the bounds.
    pub(crate) fn push(&mut self, id: u64, event: EncodedEvent) {
        self.bytes += event.len();
        self.events.push_back((id, event));
        while self.events.len() > self.max_len || self.bytes > self.max_bytes {
            match self.events.pop_front() {
                Some((evicted, event)) => {
                    self.bytes -= event.len();
                    self.floor = evicted;
                }
                None => break,
            }
        }
    }

    /// The events after `cursor`, or `None` when some of them were evicted.
    pub(crate) fn after(&self, cursor: u64) -> Option<impl Iterator<Item = &EncodedEvent>> {
        if cursor < self.floor {
            return None;
        }
        let start = self.events.partition_point(|(id, _)| *id <= cursor);
        Some(self.events.range(start..).map(|(_, event)| event))
    }

    /// Every event kept, oldest first.
    pub(crate) fn all(&self) -> impl Iterator<Item = &EncodedEvent> {
        self.events.iter().map(|(_, event)| event)
    }

    /// The id after which the history is complete.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The replay for a client's `cursor`: the events after it, or a reset event
    /// and everything kept when the history cannot replay them exactly.
    pub(crate) fn replay(&self, cursor: &str, last_id: u64) -> VecDeque<EncodedEvent> {
        let exact = cursor
            .parse::<u64>()
            .ok()
            .filter(|&cursor| cursor <= last_id)
            .and_then(|cursor| self.after(cursor));
        match exact {
            Some(events) => events.cloned().collect(),
            None => {
                let mut replay = VecDeque::with_capacity(self.len() + 1);
                // `event: reset`, with the id after which what follows is complete.
                let floor = self.floor();
                replay.push_back(notice("reset", floor, format!("{{\"after\":{floor}}}")));
                replay.extend(self.all().cloned());
                replay
            }
        }
    }
}

/// A notice the hub writes into a stream: `event: KIND`, `id: ID`, JSON `data`.
/// The type is a fixed word and the id a number, so the event is always valid.
pub(crate) fn notice(kind: &'static str, id: u64, data: String) -> EncodedEvent {
    Event::default()
        .event(kind)
        .and_then(|e| e.id(id.to_string()))
        .map(|e| e.data(data))
        .unwrap_or_default()
        .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> EncodedEvent {
        Event::message(n.to_string()).encode()
    }

    fn ids<'a>(it: impl Iterator<Item = &'a EncodedEvent>) -> Vec<String> {
        it.map(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut h = History::new(10, 3, 1000);
        for id in 11..=15 {
            h.push(id, ev(id));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.floor(), 12);
        assert!(h.after(11).is_none());
        assert_eq!(h.after(12).unwrap().count(), 3);
        assert_eq!(h.after(14).unwrap().count(), 1);
        assert_eq!(h.after(15).unwrap().count(), 0);

        // "data: 16\n\n" is 10 bytes: 25 bytes hold two.
        let mut h = History::new(15, 100, 25);
        for id in 16..=19 {
            h.push(id, ev(id));
        }
        assert_eq!((h.len(), h.floor()), (2, 17));
        let mut h = History::new(0, 100, 5);
        h.push(1, ev(1));
        assert_eq!((h.len(), h.floor()), (0, 1));
    }

    #[test]
    fn after_skips_ids_not_in_topic() {
        let mut h = History::new(0, 10, 1000);
        for id in [2, 5, 9] {
            h.push(id, ev(id));
        }
        assert_eq!(ids(h.after(3).unwrap()), ["data: 5\n\n", "data: 9\n\n"]);
        assert_eq!(ids(h.after(0).unwrap()).len(), 3);
        assert_eq!(ids(h.all()).len(), 3);
    }
}
