//! One topic of the hub: its history, one shared log of live events, and a
//! cursor per subscriber into that log.
//!
//! Publishing appends the event to the log once and wakes the subscribers that
//! are waiting; it does not touch each subscriber's state. Each subscriber reads
//! the log from its cursor at its own pace (a burst in one lock). An entry leaves
//! the log once every subscriber has read it. A subscriber that falls
//! `queue_capacity` events behind gets those events copied into its own queue
//! and is detached from the log, and the [`Lag`] policy applies, so one stuck
//! reader never holds the log (or anyone else) back.

use std::{
    collections::VecDeque,
    mem,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll, Waker},
};

use super::{
    config::{HubConfig, Lag},
    history::{notice, History},
};
use crate::{EncodedEvent, Event};

/// A topic, shared by the hub (which publishes to it) and its subscribers (which
/// read from it).
#[derive(Debug)]
pub(crate) struct Topic {
    name: Arc<str>,
    state: Mutex<State>,
    /// Bumped (under the lock) by every change a reader must look at: a publish, the
    /// end. A reader that saw this version and left its waker can answer `Pending`
    /// without the lock: nothing changed, and its waker is still registered.
    version: AtomicU64,
}

#[derive(Debug)]
struct State {
    history: History,
    /// Live events not yet read by every attached reader; `log[0]` has sequence
    /// number `head` (the topic's live events are numbered 0, 1, 2, ...).
    log: VecDeque<Entry>,
    head: u64,
    /// Indexed by a subscriber's slot; `None` is a free slot (listed in `free`).
    readers: Vec<Option<Reader>>,
    free: Vec<usize>,
    /// Subscribers not cut off by [`Lag::Disconnect`].
    subscribed: usize,
    /// Readers with a cursor in the log (every `Entry::unread` counts them).
    attached: usize,
    /// The wakers of readers waiting for the next event, all woken by the next
    /// publish. A reader that leaves takes its own back (`None`); `subscribe`
    /// compacts the list when such holes pile up.
    waiters: Vec<Option<Waker>>,
    /// Bumped whenever `waiters` is emptied, so a reader knows whether its waker is
    /// still in it. Starts at 1: 0 means "no waker left" in a [`Reader`].
    round: u64,
    /// The id of the last live event.
    last_id: u64,
    /// The hub is gone: every stream ends after what it has left to read.
    closed: bool,
}

#[derive(Debug)]
struct Entry {
    event: EncodedEvent,
    /// Attached readers that have not read it yet; removed from the log at 0.
    unread: usize,
}

/// A subscriber's state in the topic: one cache line (a poll touches one line
/// here, a publish none).
#[derive(Debug)]
#[repr(align(64))]
struct Reader {
    /// Events owed before the log: the replay, and what it had not read when it
    /// lagged (then the lag notice).
    own: VecDeque<EncodedEvent>,
    at: Position,
    /// The round in which it left its waker in `waiters` (at `waiter_at`), or 0.
    waiter_round: u64,
    waiter_at: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reads the log; the sequence number of the next event to read.
    Log(u64),
    /// Detached under [`Lag::Skip`]: the sequence number of the first event it
    /// skipped. Every event since is skipped too, until it comes back.
    Skipping(u64),
    /// Cut off by [`Lag::Disconnect`]: the stream ends after `own`.
    Closed,
}

impl Position {
    fn cursor(self) -> Option<u64> {
        match self {
            Self::Log(cursor) => Some(cursor),
            _ => None,
        }
    }
}

/// What a subscriber keeps between polls, outside the lock.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Events taken from the topic, not yet yielded.
    pub(crate) local: VecDeque<EncodedEvent>,
    /// The waker it left in the topic.
    registered: Option<Waker>,
    /// The topic's version when it last looked.
    seen: u64,
    /// Nothing more will come after `local`.
    ended: bool,
}

impl Topic {
    /// A topic named `name`, created when the hub's last id was `last_id`.
    pub(crate) fn new(name: Arc<str>, last_id: u64, config: &HubConfig) -> Self {
        let history = History::new(
            last_id,
            config.get_history_len(),
            config.get_history_bytes(),
        );
        Self {
            name,
            state: Mutex::new(State {
                history,
                log: VecDeque::new(),
                head: 0,
                readers: Vec::new(),
                free: Vec::new(),
                subscribed: 0,
                attached: 0,
                waiters: Vec::new(),
                round: 1,
                last_id,
                closed: false,
            }),
            version: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the critical sections can panic half-way through an update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Appends `event` to the history and the log; returns the wakers to call once
    /// the locks are released.
    pub(crate) fn publish(
        &self,
        id: u64,
        event: EncodedEvent,
        config: &HubConfig,
    ) -> Vec<Option<Waker>> {
        let mut state = self.lock();
        let state = &mut *state;
        state.history.push(id, event.clone());
        state.last_id = id;
        if state.attached == 0 {
            // Nobody reads the log: the event only takes a sequence number.
            state.head += 1;
        } else {
            let unread = state.attached;
            state.log.push_back(Entry { event, unread });
            if state.log.len() > config.get_queue_capacity() {
                state.lag(config.get_queue_capacity(), config.get_lag());
            }
        }
        self.version.fetch_add(1, Ordering::Release);
        state.take_waiters()
    }

    /// Adds a subscriber whose own queue starts with the replay for `cursor` (see
    /// [`Hub::subscribe_after`](crate::Hub::subscribe_after)); returns its slot.
    pub(crate) fn subscribe(&self, cursor: Option<&str>, last_id: u64) -> usize {
        let mut state = self.lock();
        let own = match cursor {
            None => VecDeque::new(),
            Some(cursor) => state.history.replay(cursor, last_id),
        };
        let reader = Reader {
            own,
            at: Position::Log(state.next_seq()),
            waiter_round: 0,
            waiter_at: 0,
        };
        state.subscribed += 1;
        state.attached += 1;
        if state.waiters.len() > 2 * state.readers.len() + 64 {
            // Many readers left since the last publish: drop their holes. The
            // indices change, so a new round starts (a reader that polls again
            // before the next publish leaves its waker once more: woken twice).
            state.waiters.retain(Option::is_some);
            state.round += 1;
        }
        match state.free.pop() {
            Some(slot) => {
                state.readers[slot] = Some(reader);
                slot
            }
            None => {
                state.readers.push(Some(reader));
                state.readers.len() - 1
            }
        }
    }

    /// Removes the subscriber in `slot`; whether the topic is now without
    /// subscribers.
    pub(crate) fn unsubscribe(&self, slot: usize) -> bool {
        let mut state = self.lock();
        if let Some(reader) = state.readers.get_mut(slot).and_then(Option::take) {
            state.free.push(slot);
            if reader.waiter_round == state.round {
                let at = reader.waiter_at as usize;
                if let Some(left) = state.waiters.get_mut(at) {
                    *left = None;
                }
            }
            state.detach(reader.at.cursor());
            if reader.at != Position::Closed {
                state.subscribed -= 1;
            }
        }
        state.subscribed == 0
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.lock().subscribed
    }

    /// Events waiting for the subscriber in `slot` in the topic (not counting what
    /// it already took).
    pub(crate) fn queued(&self, slot: usize) -> usize {
        let state = self.lock();
        let next = state.next_seq();
        match state.readers.get(slot).and_then(Option::as_ref) {
            Some(reader) => {
                reader.own.len() + reader.at.cursor().map_or(0, |c| (next - c) as usize)
            }
            None => 0,
        }
    }

    /// Ends every subscriber's stream after what it has left to read (the hub is
    /// being dropped); returns the wakers to call.
    pub(crate) fn close(&self) -> Vec<Option<Waker>> {
        let mut state = self.lock();
        state.closed = true;
        self.version.fetch_add(1, Ordering::Release);
        state.take_waiters()
    }

    /// The subscriber's side: takes everything it has to read at once (one lock per
    /// burst) and leaves its waker. With nothing new since its last look and the
    /// same waker, it answers `Pending` without the lock.
    #[inline]
    pub(crate) fn poll_next(
        &self,
        slot: usize,
        cursor: &mut Cursor,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EncodedEvent>> {
        if let Some(event) = cursor.local.pop_front() {
            return Poll::Ready(Some(event));
        }
        if cursor.ended {
            return Poll::Ready(None);
        }
        // The version only changes under the lock, after the change it announces:
        // unchanged means no publish came since this reader left its waker, which
        // is therefore still registered and will be woken.
        if self.version.load(Ordering::Acquire) == cursor.seen
            && cursor
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.poll_locked(slot, cursor, cx)
    }

    /// The rest of [`poll_next`](Self::poll_next), under the lock: kept out of
    /// line so that the quick answers above inline into the caller.
    #[inline(never)]
    fn poll_locked(
        &self,
        slot: usize,
        cursor: &mut Cursor,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EncodedEvent>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        cursor.seen = self.version.load(Ordering::Relaxed);
        let next_seq = state.next_seq();
        let Some(reader) = state.readers.get_mut(slot).and_then(Option::as_mut) else {
            cursor.ended = true;
            return Poll::Ready(None);
        };
        // `local` is empty here. The first event is returned without going
        // through it: with one new event (the common case) its buffer stays cold.
        let mut first = reader.own.pop_front();
        let local = &mut cursor.local;
        if !reader.own.is_empty() {
            local.append(&mut reader.own);
        }
        let mut take = |event| match first {
            None => first = Some(event),
            Some(_) => local.push_back(event),
        };
        match reader.at {
            Position::Log(at) => {
                let start = (at - state.head) as usize;
                for entry in state.log.range_mut(start..) {
                    take(entry.event.clone());
                    entry.unread -= 1;
                }
                reader.at = Position::Log(next_seq);
            }
            Position::Skipping(from) => {
                // Back after skipping: say how many, then read the log again.
                take(gap_notice(next_seq - from, state.last_id));
                reader.at = Position::Log(next_seq);
                state.attached += 1;
            }
            Position::Closed => {}
        }
        cursor.ended = reader.at == Position::Closed || state.closed;
        // Registered even when returning an event: the next poll (a body looking
        // for more to put in the same frame) may then answer `Pending` unlocked.
        if !cursor.ended {
            let waker = match cursor.registered.take() {
                Some(waker) if waker.will_wake(cx.waker()) => waker,
                _ => cx.waker().clone(),
            };
            let left = (reader.waiter_round == state.round)
                .then(|| state.waiters.get_mut(reader.waiter_at as usize))
                .flatten();
            match left {
                Some(left) => {
                    if !left.as_ref().is_some_and(|w| w.will_wake(&waker)) {
                        *left = Some(waker.clone());
                    }
                }
                None => {
                    reader.waiter_round = state.round;
                    // Over `u32::MAX` waiters (never), a new waker is pushed each time.
                    reader.waiter_at = u32::try_from(state.waiters.len()).unwrap_or(u32::MAX);
                    state.waiters.push(Some(waker.clone()));
                }
            }
            cursor.registered = Some(waker);
        }
        state.trim();
        match first {
            Some(event) => Poll::Ready(Some(event)),
            None if cursor.ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl State {
    /// The sequence number the next live event will get.
    fn next_seq(&self) -> u64 {
        self.head + self.log.len() as u64
    }

    fn take_waiters(&mut self) -> Vec<Option<Waker>> {
        self.round += 1;
        let capacity = self.waiters.len();
        mem::replace(&mut self.waiters, Vec::with_capacity(capacity))
    }

    /// Drops the log's oldest entries that every reader has read.
    fn trim(&mut self) {
        while self.log.front().is_some_and(|entry| entry.unread == 0) {
            self.log.pop_front();
            self.head += 1;
        }
    }

    /// A reader at `cursor` stops reading the log.
    fn detach(&mut self, cursor: Option<u64>) {
        if let Some(at) = cursor {
            let start = (at - self.head) as usize;
            for entry in self.log.range_mut(start..) {
                entry.unread -= 1;
            }
            self.attached -= 1;
            self.trim();
        }
    }

    /// The log holds `capacity + 1` events: the readers that have not read the
    /// oldest one are that far behind. Each gets the `capacity` oldest in its own
    /// queue (the newest is not delivered to it), leaves the log, and `lag` applies.
    fn lag(&mut self, capacity: usize, lag: Lag) {
        let head = self.head;
        let skipped = head + capacity as u64;
        for reader in self.readers.iter_mut().flatten() {
            if reader.at != Position::Log(head) {
                continue;
            }
            self.attached -= 1;
            for entry in self.log.iter_mut() {
                entry.unread -= 1;
            }
            let behind = self.log.iter().take(capacity).map(|e| e.event.clone());
            reader.own.extend(behind);
            match lag {
                Lag::Disconnect { retry } => {
                    let hint = Event::default().comment("lagged").retry(retry).encode();
                    reader.own.push_back(hint);
                    reader.at = Position::Closed;
                    self.subscribed -= 1;
                }
                Lag::Skip => reader.at = Position::Skipping(skipped),
            }
        }
        self.trim();
    }
}

/// `event: gap`, the last skipped id, and how many were skipped.
fn gap_notice(count: u64, last: u64) -> EncodedEvent {
    notice("gap", last, format!("{{\"skipped\":{count}}}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn topic(capacity: usize, lag: Lag) -> (Topic, HubConfig) {
        let config = HubConfig::new().queue_capacity(capacity).lag(lag);
        (Topic::new(Arc::from("t"), 0, &config), config)
    }

    fn poll(topic: &Topic, slot: usize, cursor: &mut Cursor) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        topic
            .poll_next(slot, cursor, &mut cx)
            .map(|e| e.map(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn publish(topic: &Topic, config: &HubConfig, id: u64) {
        topic.publish(id, Event::message(id.to_string()).encode(), config);
    }

    #[test]
    fn skip_policy_reports_the_gap_once_then_reads_the_log_again() {
        let (t, config) = topic(2, Lag::Skip);
        let slot = t.subscribe(None, 0);
        let mut cursor = Cursor::default();
        for id in 1..=5 {
            publish(&t, &config, id);
        }
        // Detached: the log no longer keeps anything for it.
        assert_eq!(t.lock().log.len(), 0);
        assert_eq!(
            poll(&t, slot, &mut cursor),
            Poll::Ready(Some("data: 1\n\n".into()))
        );
        assert_eq!(
            poll(&t, slot, &mut cursor),
            Poll::Ready(Some("data: 2\n\n".into()))
        );
        assert_eq!(
            poll(&t, slot, &mut cursor),
            Poll::Ready(Some("event: gap\nid: 5\ndata: {\"skipped\":3}\n\n".into()))
        );
        assert_eq!(poll(&t, slot, &mut cursor), Poll::Pending);
        publish(&t, &config, 6);
        assert_eq!(
            poll(&t, slot, &mut cursor),
            Poll::Ready(Some("data: 6\n\n".into()))
        );
        assert_eq!(poll(&t, slot, &mut cursor), Poll::Pending);
        assert_eq!(t.subscriber_count(), 1);
    }

    #[test]
    fn disconnect_policy_closes_after_what_was_waiting() {
        let lag = Lag::Disconnect {
            retry: Duration::from_millis(250),
        };
        let (t, config) = topic(1, lag);
        let stuck = t.subscribe(None, 0);
        let reader = t.subscribe(None, 0);
        let (mut stuck_cursor, mut reader_cursor) = (Cursor::default(), Cursor::default());
        for id in 1..=3 {
            publish(&t, &config, id);
            let got = poll(&t, reader, &mut reader_cursor);
            assert_eq!(got, Poll::Ready(Some(format!("data: {id}\n\n"))));
        }
        assert_eq!(t.subscriber_count(), 1);
        // Everything was read by the only reader left: the log is empty.
        assert_eq!(t.lock().log.len(), 0);
        let mut stuck_poll = || poll(&t, stuck, &mut stuck_cursor);
        assert_eq!(stuck_poll(), Poll::Ready(Some("data: 1\n\n".into())));
        assert_eq!(
            stuck_poll(),
            Poll::Ready(Some(": lagged\nretry: 250\n\n".into()))
        );
        assert_eq!(stuck_poll(), Poll::Ready(None));
        assert_eq!(stuck_poll(), Poll::Ready(None));
    }

    #[test]
    fn readers_that_come_and_go_leave_no_wakers_behind() {
        let (t, config) = topic(8, Lag::Skip);
        let stays = t.subscribe(None, 0);
        let mut stays_cursor = Cursor::default();
        assert_eq!(poll(&t, stays, &mut stays_cursor), Poll::Pending);
        for _ in 0..1000 {
            let slot = t.subscribe(None, 0);
            assert_eq!(poll(&t, slot, &mut Cursor::default()), Poll::Pending);
            t.unsubscribe(slot);
        }
        let waiting = t.lock().waiters.iter().flatten().count();
        assert_eq!(waiting, 1);
        assert!(t.lock().waiters.len() <= 2 * 2 + 64 + 1);
        // The reader that stayed is still woken.
        let woken = t.publish(1, Event::message("x").encode(), &config);
        assert_eq!(woken.iter().flatten().count(), 1);
        assert_eq!(
            poll(&t, stays, &mut stays_cursor),
            Poll::Ready(Some("data: x\n\n".into()))
        );
    }

    #[test]
    fn a_reader_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Option<Reader>>(), 64);
    }

    #[test]
    fn the_log_keeps_an_event_until_every_reader_has_it() {
        let (t, config) = topic(8, Lag::Skip);
        let a = t.subscribe(None, 0);
        let b = t.subscribe(None, 0);
        let (mut ca, mut cb) = (Cursor::default(), Cursor::default());
        publish(&t, &config, 1);
        publish(&t, &config, 2);
        assert_eq!(
            poll(&t, a, &mut ca),
            Poll::Ready(Some("data: 1\n\n".into()))
        );
        assert_eq!(t.lock().log.len(), 2);
        assert_eq!((t.queued(a), ca.local.len(), t.queued(b)), (0, 1, 2));
        assert_eq!(
            poll(&t, b, &mut cb),
            Poll::Ready(Some("data: 1\n\n".into()))
        );
        assert_eq!(t.lock().log.len(), 0);
        publish(&t, &config, 3);
        // A reader that leaves releases what it had not read.
        assert!(!t.unsubscribe(a));
        assert_eq!(t.lock().log.len(), 1);
        assert!(t.unsubscribe(b));
        assert_eq!(t.lock().log.len(), 0);
        // Nobody reads: publishing stores nothing in the log.
        publish(&t, &config, 4);
        assert_eq!(t.lock().log.len(), 0);
    }
}
