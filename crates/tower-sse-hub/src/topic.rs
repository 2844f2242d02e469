//! One topic: its history, a ring of encoded events at contiguous offsets that
//! every subscriber reads from its own cursor, and the wakers of the
//! subscribers waiting for the next event.
//!
//! There is no queue per subscriber: a subscriber is an offset into the history
//! (kept by the [`Subscriber`](super::Subscriber), outside the lock), so a
//! thousand subscribers of one topic cost a thousand cursors, however far behind
//! they are. One that falls behind what the history holds, or more than
//! `queue_capacity` events behind, lags and the [`Lag`] policy applies.
//!
//! Publishing a built event takes one short critical section
//! ([`Topic::append`]: the id written in, the event encoded and stored).
//! Publishing with a closure takes two: one reserves the next offset (so the
//! user's closure can put the id in the event), the other stores the encoded
//! event in its slot; the closure and the encoder run between them, outside
//! any lock. Readers read only the settled prefix of the history, so events
//! are read in offset order even when publishers finish out of order.

use std::{
    cell::Cell,
    collections::{HashMap, VecDeque},
    mem,
    sync::{atomic::AtomicUsize, Arc, OnceLock},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use super::{
    config::{HubConfig, Lag},
    id::{Epoch, EventId, IdText},
    sync::{lock, now, AtomicU64, Mutex, Ordering},
};
use tower_sse::{EncodedEvent, Event};

/// The order in which this process stored events, across all topics: the
/// stamp a publish takes as it begins to store its event, so that a stream of
/// several topics can yield them in that order (and replay them in it).
///
/// It is the monotonic clock's nanoseconds since the first stamp, made
/// strictly increasing per thread. Two publishes to different topics made one
/// after the other, by one thread or by two, are in the order they happened
/// (by two, to within the clock's resolution: a nanosecond on Linux); two
/// that overlap in time have no order but their stamps'. A clock rather than
/// one shared counter: a counter every publish increments is a cache line
/// that every publishing thread writes in turn (a fifth to a third of a
/// publish's time from two threads at 16 topics, and more with every core),
/// where reading the clock shares nothing.
fn order_stamp() -> u64 {
    static FIRST: OnceLock<Instant> = OnceLock::new();
    thread_local! {
        static LAST: Cell<u64> = const { Cell::new(0) };
    }
    let first = *FIRST.get_or_init(Instant::now);
    let nanos = Instant::now().saturating_duration_since(first).as_nanos();
    let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
    LAST.with(|last| {
        // Above every stamp this thread took, and never 0 (the notices').
        let stamp = nanos.max(last.get().saturating_add(1));
        last.set(stamp);
        stamp
    })
}

/// Wakes the readers `wakers` holds, as a topic's commit, close or rebase
/// returns them (a publish that woke nobody, the usual turnover of a history
/// no one waits on, returns an empty list: no iterator).
#[inline]
pub(crate) fn wake(wakers: Vec<Option<Waker>>) {
    if !wakers.is_empty() {
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}

/// A topic counts its history's bytes in the hub-wide total to within this
/// fraction of the count, one over it ([`State::recount`]): the hub enforces
/// its byte bound at `1 - 1 / COUNT_SLACK` of it, so what the histories hold
/// stays within the bound.
pub(crate) const COUNT_SLACK: usize = 16;

/// How many events a subscriber takes from the history per lock.
const BATCH: usize = 16;

/// A topic, shared by the store (which publishes to it) and its subscribers
/// (which read from it).
#[derive(Debug)]
pub(crate) struct Topic {
    name: Arc<str>,
    /// Guards every field of [`State`]: publishers (reserve, commit), readers
    /// (poll, subscribe, unsubscribe) and the store (rebase, close, remove)
    /// take it for short steps, never across an `await`, and wake the wakers
    /// they took only after releasing it.
    state: Mutex<State>,
    /// Bumped (under the lock, `Release`: [`Topic::bump`]) by every change a
    /// reader must look at: a commit, a rebase, the end. A reader that saw
    /// this version (`Acquire`), has read everything settled and left its
    /// waker can answer `Pending` without the lock: any later change bumps it
    /// first, and the waker it left is woken by that change. Model-checked in
    /// `loom_tests.rs` (no lost wake-up, no duplicate, rebases in-band).
    version: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The epoch of the history: fixed for an in-process topic; a mirror of a
    /// broker's history takes the broker's new epoch when that history was lost
    /// ([`Topic::rebase`]), and its readers get a `reset` in-band.
    epoch: Epoch,
    /// Bumped by every [`Topic::rebase`] (a new epoch, or the same epoch with
    /// a hole or a history that went backwards): a reader whose generation
    /// differs gets the `reset` in-band.
    generation: u64,
    /// The events at offsets `floor + 1 ..= floor + slots.len()`.
    slots: VecDeque<Slot>,
    /// The history is complete after this offset.
    floor: u64,
    /// Every offset up to this one is settled: readers read up to here.
    settled: u64,
    /// Bytes of the events in `slots`.
    bytes: usize,
    /// What this topic counts in the hub-wide byte total: `bytes` as of the
    /// last change of more than a sixteenth (see [`State::recount`]).
    counted: usize,
    /// Indexed by a subscriber's slot; `None` is free (listed in `free`).
    readers: Vec<Option<Reader>>,
    free: Vec<usize>,
    /// Subscribers not cut off by [`Lag::Disconnect`].
    subscribed: usize,
    /// The wakers of readers waiting for the next event, all woken by the next
    /// commit. A reader that leaves takes its own back (`None`); `subscribe`
    /// compacts the list when such holes pile up.
    waiters: Vec<Option<Waker>>,
    /// Bumped whenever `waiters` is emptied, so a reader knows whether its waker
    /// is still in it. Starts at 1: 0 means "no waker left".
    round: u64,
    /// The last publish while it had no subscriber, the moment its last
    /// subscriber left, or its creation: retention counts from here. (A topic
    /// with subscribers is never freed, so a publish to one does not set it.)
    touched: Instant,
    /// The hub is gone: every stream ends after what it has left to read.
    closed: bool,
    /// The store freed this topic: it takes no more publishes or subscribers.
    removed: bool,
    /// The idempotency keys of recent publishes (see [`Topic::reserve_once`]).
    recent: Recent,
    /// The text of the id appended last, counted up by the next append.
    id_text: IdText,
}

/// The idempotency keys of a topic's recent publishes, oldest first, each with
/// the offset it got: a publish with a known key is answered with that offset
/// and stores nothing.
#[derive(Debug, Default)]
struct Recent {
    offsets: HashMap<Arc<str>, u64>,
    /// When each key was used and the offset it got: a key used again after
    /// its first publish failed is forgotten with its own entry, not an older one.
    order: VecDeque<(Instant, Arc<str>, u64)>,
}

impl Recent {
    /// Forgets the keys older than `window` before `now`, and the oldest beyond
    /// `max` keys.
    fn prune(&mut self, now: Instant, window: Duration, max: usize) {
        while let Some((at, key, offset)) = self.order.front() {
            let old = now.saturating_duration_since(*at) > window;
            if !old && self.order.len() <= max {
                break;
            }
            if self.offsets.get(key) == Some(offset) {
                self.offsets.remove(key);
            }
            self.order.pop_front();
        }
    }
}

/// What [`Topic::reserve_once`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reservation {
    /// A new offset, to be committed.
    New(EventId),
    /// The key was published before, with this id: nothing to store.
    Known(EventId),
    /// The key's first publish is still building its event: ask again.
    InFlight,
}

#[derive(Debug)]
enum Slot {
    /// Reserved by a publisher whose event is being built.
    Reserved,
    /// An event, and its place in this process's commit order (a
    /// stamp of [`order_stamp`]).
    Event(EncodedEvent, u64),
    /// Its publisher's closure panicked: the offset holds no event.
    Empty,
}

/// Where a subscriber left its waker.
#[derive(Debug, Clone, Copy)]
struct Reader {
    waiter_round: u64,
    waiter_at: u32,
    /// Cut off by [`Lag::Disconnect`]: no longer counted in `subscribed`.
    out: bool,
}

/// A new subscription's place in the topic.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) slot: usize,
    /// The cursor: the offset of the last event the subscriber has.
    pub(crate) start: u64,
    /// The last settled offset: replay ends here, live events follow.
    pub(crate) position: EventId,
    /// A `reset` notice to send first, when the client's cursor was not exact.
    pub(crate) reset: Option<EncodedEvent>,
    /// The topic's history generation (see `State::generation`).
    pub(crate) generation: u64,
}

/// What a subscriber keeps between polls, outside the lock.
#[derive(Debug)]
pub(crate) struct Cursor {
    pub(crate) slot: usize,
    /// The offset of the last event taken from the topic.
    pub(crate) at: u64,
    /// Where the replay ends: events up to here do not count as lag.
    replay_end: u64,
    /// Events taken from the topic, not yet yielded, each with its
    /// [`order_stamp`] (0 for the hub's notices and greetings).
    pub(crate) local: VecDeque<(u64, EncodedEvent)>,
    /// The stamp of the event yielded last.
    pub(crate) stamp: u64,
    /// An event to yield once `at` reaches its offset (after the replay).
    pub(crate) greeting: Option<(u64, EncodedEvent)>,
    /// The generation of the history `at` counts in: when the topic's
    /// differs, that history is gone and the reader gets a `reset` in-band.
    generation: u64,
    /// The waker it left in the topic.
    registered: Option<Waker>,
    /// The topic's version and settled offset when it last looked.
    seen: u64,
    available: u64,
    /// Nothing more will come after `local`.
    pub(crate) ended: bool,
}

impl Cursor {
    pub(crate) fn new(joined: &Joined) -> Self {
        Self {
            slot: joined.slot,
            at: joined.start,
            replay_end: joined.position.offset(),
            local: joined.reset.iter().map(|r| (0, r.clone())).collect(),
            stamp: 0,
            greeting: None,
            generation: joined.generation,
            registered: None,
            seen: u64::MAX,
            available: 0,
            ended: false,
        }
    }
}

impl Topic {
    /// A new topic, with a fresh epoch.
    pub(crate) fn new(name: Arc<str>, now: Instant) -> Self {
        Self {
            name,
            state: Mutex::new(State {
                epoch: Epoch::random(),
                generation: 0,
                slots: VecDeque::new(),
                floor: 0,
                settled: 0,
                bytes: 0,
                counted: 0,
                readers: Vec::new(),
                free: Vec::new(),
                subscribed: 0,
                waiters: Vec::new(),
                round: 1,
                touched: now,
                closed: false,
                removed: false,
                recent: Recent::default(),
                id_text: IdText::default(),
            }),
            version: AtomicU64::new(0),
        }
    }

    /// A topic mirroring a history kept elsewhere (a broker): its epoch is
    /// `epoch` and its history starts after `start`, so the next event it takes
    /// is at offset `start + 1`. Used by stores whose nodes each keep a local
    /// copy of a topic's tail for their own subscribers.
    #[cfg(feature = "remote")]
    pub(crate) fn mirror(name: Arc<str>, epoch: Epoch, start: u64, now: Instant) -> Self {
        let topic = Self::new(name, now);
        {
            let mut state = lock(&topic.state);
            state.epoch = epoch;
            state.floor = start;
            state.settled = start;
        }
        topic
    }

    /// Starts the history over in `epoch` after offset `start`, keeping every
    /// subscriber: the broker this topic mirrors lost the history (restarted
    /// empty, flushed, or the topic expired there). Each reader first gets
    /// what it had already taken, then a `reset` notice (the id after which
    /// what follows is complete), then the new epoch's events: the stream stays
    /// open, so a broker restart costs no reconnection. Also used in the same
    /// epoch when the copy must start over after a hole the broker no longer
    /// holds, or a history that went backwards (restored from an older
    /// snapshot). Returns the wakers to call. A publish reserved before and
    /// committed after is dropped.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn rebase(&self, epoch: Epoch, start: u64) -> Vec<Option<Waker>> {
        let mut state = lock(&self.state);
        state.epoch = epoch;
        state.generation += 1;
        state.slots = VecDeque::new();
        state.bytes = 0;
        state.floor = start;
        state.settled = start;
        state.recent = Recent::default();
        self.bump(&mut state);
        state.take_waiters()
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Reserves the next offset, or `None` when the topic was removed (the
    /// store then looks the topic up again).
    #[cfg_attr(not(any(test, feature = "remote")), allow(dead_code))]
    pub(crate) fn reserve(&self) -> Option<EventId> {
        match self.reserve_once(None, Duration::ZERO, 0, Instant::now())? {
            Reservation::New(id) | Reservation::Known(id) => Some(id),
            // Only with a key.
            Reservation::InFlight => None,
        }
    }

    /// Reserves the next offset for a publish with the idempotency `key`: when
    /// the key was used less than `window` ago (and is among the newest `max`
    /// keys), answers with the id it got instead. `None` when the topic was
    /// removed.
    pub(crate) fn reserve_once(
        &self,
        key: Option<&str>,
        window: Duration,
        max: usize,
        now: Instant,
    ) -> Option<Reservation> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if state.removed {
            return None;
        }
        if let Some(key) = key {
            state.recent.prune(now, window, max);
            if let Some(&offset) = state.recent.offsets.get(key) {
                // Acknowledged means stored: not before the first is settled.
                if offset > state.settled {
                    return Some(Reservation::InFlight);
                }
                return Some(Reservation::Known(state.id(offset)));
            }
        }
        // 2^64 publishes to one topic are out of reach: saturating is enough.
        let offset = state
            .floor
            .saturating_add(state.slots.len() as u64)
            .saturating_add(1);
        state.slots.push_back(Slot::Reserved);
        if let Some(key) = key.filter(|_| max > 0) {
            let key: Arc<str> = Arc::from(key);
            state.recent.offsets.insert(key.clone(), offset);
            state.recent.order.push_back((now, key, offset));
        }
        Some(Reservation::New(state.id(offset)))
    }

    /// Fills the reserved `id` with `event` (`None`: its closure panicked),
    /// evicts beyond the bounds, counts the change in history bytes into
    /// `total` ([`State::recount`], under the lock, so that a concurrent
    /// removal, which subtracts what the topic counted, never subtracts bytes
    /// not yet added: the total cannot wrap), and returns the wakers to call
    /// once the lock is released.
    pub(crate) fn commit(
        &self,
        id: EventId,
        event: Option<EncodedEvent>,
        config: &HubConfig,
        now: Instant,
        total: Option<&AtomicUsize>,
    ) -> Vec<Option<Waker>> {
        let stamp = order_stamp();
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let offset = id.offset();
        let index = offset.checked_sub(state.floor + 1).map(|i| i as usize);
        let slot = match index.and_then(|i| state.slots.get_mut(i)) {
            Some(slot @ Slot::Reserved) if id.epoch() == state.epoch => slot,
            // Reserved before a rebase: that history is gone.
            _ => return Vec::new(),
        };
        *slot = match event {
            Some(event) => {
                state.bytes += event.len();
                Slot::Event(event, stamp)
            }
            None => {
                // Nothing is stored at this offset: its key must not answer with it.
                state.recent.offsets.retain(|_, at| *at != offset);
                Slot::Empty
            }
        };
        if state.subscribed == 0 {
            state.touched = now;
        }
        let advanced = state.advance();
        self.settle(state, advanced, config, total)
    }

    /// Stores `event`, built before the publish, at the next offset with its
    /// id written in: [`reserve`](Self::reserve) and [`commit`](Self::commit)
    /// in one critical section, the event encoded under the lock (no other
    /// work of the publisher runs in it). Returns its id and the wakers to call
    /// once the lock is released; `None`, leaving the event where it is,
    /// when the topic was removed (or `event` is empty). The byte count is
    /// kept as by `commit`.
    pub(crate) fn append(
        &self,
        event: &Event,
        config: &HubConfig,
        total: Option<&AtomicUsize>,
    ) -> Option<(EventId, Vec<Option<Waker>>)> {
        let stamp = order_stamp();
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        if state.removed {
            return None;
        }
        state.make_room(config.get_history_len());
        let offset = state
            .floor
            .saturating_add(state.slots.len() as u64)
            .saturating_add(1);
        let id = state.id(offset);
        let encoded = crate::store::encode_with_id_text(event, state.id_text.of(id));
        state.bytes += encoded.len();
        state.slots.push_back(Slot::Event(encoded, stamp));
        if state.subscribed == 0 {
            state.touched = now();
        }
        // Nothing reserved before it (the usual case): it alone settles.
        let advanced = if state.settled.checked_add(1) == Some(offset) {
            state.settled = offset;
            true
        } else {
            state.advance()
        };
        Some((id, self.settle(state, advanced, config, total)))
    }

    /// Bumps the version, under the lock (`_locked` is the proof): a load and
    /// a store rather than an atomic add, since only the lock's holder writes
    /// it. A locked add was about 4 % of a publish's time (two threads, 16
    /// topics, `perf`), where the store costs what any other store does.
    #[inline]
    fn bump(&self, _locked: &mut State) {
        let version = self.version.load(Ordering::Relaxed);
        self.version
            .store(version.wrapping_add(1), Ordering::Release);
    }

    /// After a slot was filled and the settled prefix `advanced` (or not):
    /// bumps the version and takes the waiters if it did, evicts beyond the
    /// bounds, and counts the history's bytes into `total`.
    fn settle(
        &self,
        state: &mut State,
        advanced: bool,
        config: &HubConfig,
        total: Option<&AtomicUsize>,
    ) -> Vec<Option<Waker>> {
        let mut wakers = Vec::new();
        if advanced {
            self.bump(state);
            // No waker left: nothing to take, and the round need not change
            // (every waker left in a round is pushed, so no reader's index
            // points into an empty list).
            if !state.waiters.is_empty() {
                wakers = state.take_waiters();
            }
        }
        state.evict(config.get_history_len(), config.get_history_bytes());
        if let Some(total) = total {
            state.recount(total, COUNT_SLACK);
        }
        wakers
    }

    /// Drops the oldest settled events until at most `bytes` are kept (the
    /// newest always stays), and counts what is left into `total` exactly.
    pub(crate) fn trim_to(&self, bytes: usize, total: &AtomicUsize) {
        let mut state = lock(&self.state);
        state.evict(usize::MAX, bytes);
        state.recount(total, 0);
    }

    /// Adds a subscriber from `cursor` (a client's `Last-Event-ID`), or `None`
    /// when the topic was removed.
    #[cfg(test)]
    pub(crate) fn subscribe(&self, cursor: Option<&str>) -> Option<Joined> {
        self.subscribe_within(cursor, usize::MAX)
    }

    /// Subscribes after `cursor`, replaying at most `max_replay_bytes`: a
    /// longer replay is cut to the newest events that fit, after a `reset`.
    pub(crate) fn subscribe_within(
        &self,
        cursor: Option<&str>,
        max_replay_bytes: usize,
    ) -> Option<Joined> {
        let mut state = lock(&self.state);
        if state.removed {
            return None;
        }
        let exact = |offset| offset >= state.floor && offset <= state.settled;
        let mut start = match cursor.map(str::parse::<EventId>) {
            None => Ok(state.settled),
            Some(Ok(id)) if id.epoch() == state.epoch && exact(id.offset()) => Ok(id.offset()),
            Some(_) => Err(state.floor),
        };
        let from = match start {
            Ok(at) | Err(at) => at,
        };
        let capped = state.replay_start(from, max_replay_bytes);
        if capped != from {
            start = Err(capped);
        }
        let (start, reset) = match start {
            Ok(at) => {
                if cursor.is_some() {
                    crate::metrics::replay();
                }
                (at, None)
            }
            Err(at) => (at, Some(reset_notice(state.id(at)))),
        };
        let reader = Reader {
            waiter_round: 0,
            waiter_at: 0,
            out: false,
        };
        state.subscribed += 1;
        if state.waiters.len() > 2 * state.readers.len() + 64 {
            // Many readers left since the last commit: drop their holes. The
            // indices change, so a new round starts (a reader that polls again
            // before the next commit leaves its waker once more: woken twice).
            state.waiters.retain(Option::is_some);
            state.round += 1;
        }
        let slot = match state.free.pop() {
            Some(slot) => {
                state.readers[slot] = Some(reader);
                slot
            }
            None => {
                state.readers.push(Some(reader));
                state.readers.len() - 1
            }
        };
        Some(Joined {
            slot,
            start,
            position: state.id(state.settled),
            reset,
            generation: state.generation,
        })
    }

    /// Removes the subscriber in `slot`.
    pub(crate) fn unsubscribe(&self, slot: usize) {
        let mut state = lock(&self.state);
        if let Some(reader) = state.readers.get_mut(slot).and_then(Option::take) {
            state.free.push(slot);
            state.forget_waker(reader);
            if !reader.out {
                state.leave();
            }
        }
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        lock(&self.state).subscribed
    }

    /// The id of the last settled event (offset `0` before the first).
    pub(crate) fn position(&self) -> EventId {
        let state = lock(&self.state);
        state.id(state.settled)
    }

    /// Bytes of history held.
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.state).bytes
    }

    /// Since when the topic is idle (its last publish or its last subscriber
    /// leaving), if it has no subscribers (and so may be freed).
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let state = lock(&self.state);
        (state.subscribed == 0 && !state.removed).then_some(state.touched)
    }

    /// Marks the topic removed when it has no subscribers, no publish in flight,
    /// and (unless `expired_before` is `None`) was last touched before
    /// `expired_before`; returns the history bytes it counted in the hub-wide
    /// total, for the caller to subtract.
    pub(crate) fn try_remove(&self, expired_before: Option<Instant>) -> Option<usize> {
        let mut state = lock(&self.state);
        let in_flight = state.settled != state.floor + state.slots.len() as u64;
        let old = expired_before.is_none_or(|limit| state.touched <= limit);
        if state.subscribed > 0 || in_flight || state.removed || !old {
            return None;
        }
        state.removed = true;
        state.slots = VecDeque::new();
        state.bytes = 0;
        Some(mem::take(&mut state.counted))
    }

    /// Ends every subscriber's stream after what it has left to read (the hub is
    /// being dropped); returns the wakers to call.
    pub(crate) fn close(&self) -> Vec<Option<Waker>> {
        let mut state = lock(&self.state);
        state.closed = true;
        self.bump(&mut state);
        state.take_waiters()
    }

    /// The subscriber's side: takes a batch of what it has to read in one lock,
    /// and leaves its waker. With nothing new since its last look and the same
    /// waker, it answers `Pending` without the lock.
    #[inline]
    pub(crate) fn poll_next(
        &self,
        cursor: &mut Cursor,
        config: &HubConfig,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EncodedEvent>> {
        if let Some((stamp, event)) = cursor.local.pop_front() {
            cursor.stamp = stamp;
            return Poll::Ready(Some(event));
        }
        if cursor.ended {
            return Poll::Ready(None);
        }
        // The version changes only under the lock, after the change it announces:
        // unchanged means nothing was settled since this reader looked, its waker
        // is still registered and will be woken.
        if cursor.at == cursor.available
            && self.version.load(Ordering::Acquire) == cursor.seen
            && cursor
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.poll_locked(cursor, config, cx)
    }

    /// The rest of [`poll_next`](Self::poll_next), under the lock: kept out of
    /// line so that the quick answers above inline into the caller.
    #[inline(never)]
    fn poll_locked(
        &self,
        cursor: &mut Cursor,
        config: &HubConfig,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EncodedEvent>> {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        cursor.seen = self.version.load(Ordering::Relaxed);
        let Some(reader) = state.readers.get(cursor.slot).copied().flatten() else {
            cursor.ended = true;
            return Poll::Ready(None);
        };
        if cursor.generation != state.generation {
            // The history this reader was in is gone (see `rebase`): what it
            // was promised for the old one first, then the reset, then the new
            // epoch from its start, none of which counts as lag.
            if let Some((_, greeting)) = cursor.greeting.take() {
                cursor.local.push_back((0, greeting));
            }
            cursor
                .local
                .push_back((0, reset_notice(state.id(state.floor))));
            cursor.generation = state.generation;
            cursor.at = state.floor;
            cursor.replay_end = state.settled;
        }
        let behind = state.settled.saturating_sub(cursor.at);
        let live_behind = state
            .settled
            .saturating_sub(cursor.at.max(cursor.replay_end));
        if !reader.out
            && (cursor.at < state.floor || live_behind > config.get_queue_capacity() as u64)
        {
            crate::metrics::lag_cutoff();
            match config.get_lag() {
                Lag::Disconnect { retry } => {
                    let hint = Event::default().comment("lagged").retry(retry).encode();
                    cursor.local.push_back((0, hint));
                    cursor.ended = true;
                    state.cut_off(cursor.slot);
                    return Poll::Ready(cursor.local.pop_front().map(|(_, e)| e));
                }
                Lag::Skip => {
                    let last = state.id(state.settled).to_string();
                    let data = format!("{{\"skipped\":{behind}}}");
                    cursor.local.push_back((0, notice("gap", &last, data)));
                    cursor.at = state.settled;
                }
            }
        }
        // Up to the greeting's offset while it waits, then the rest.
        let end = match &cursor.greeting {
            Some((at, _)) => state.settled.min(*at),
            None => state.settled,
        };
        let from = (cursor.at - state.floor) as usize;
        let take = (end.saturating_sub(cursor.at) as usize).min(BATCH);
        for slot in state.slots.range(from..from + take) {
            if let Slot::Event(event, stamp) = slot {
                cursor.local.push_back((*stamp, event.clone()));
            }
        }
        cursor.at += take as u64;
        if cursor
            .greeting
            .as_ref()
            .is_some_and(|(at, _)| cursor.at >= *at)
        {
            if let Some((_, greeting)) = cursor.greeting.take() {
                cursor.local.push_back((0, greeting));
            }
        }
        cursor.available = state.settled;
        let done = state.closed && cursor.at == state.settled;
        cursor.ended = done;
        if !done {
            state.register(cursor, cx.waker());
        }
        drop(guard);
        match cursor.local.pop_front() {
            Some((stamp, event)) => {
                cursor.stamp = stamp;
                Poll::Ready(Some(event))
            }
            None if cursor.ended => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl State {
    fn id(&self, offset: u64) -> EventId {
        EventId::new(offset, self.epoch)
    }

    /// Brings what this topic counts in the hub-wide `total` up to its
    /// history's bytes when they differ by more than `1 / slack` of the count
    /// (any difference when `slack` is 0).
    ///
    /// Every publish changes a full history's bytes by the size difference of
    /// the event it stores and the one it drops; counted exactly, the total's
    /// cache line would be written by every publish of every topic, a line
    /// that every publishing thread then takes in turn (two threads, 16
    /// topics, events of seven sizes: 148-298 ns a publish, against 116-147
    /// counted this way; BENCHMARKS.md). Counted to within a sixteenth, a
    /// history that only turns over writes it no more, and a growing one
    /// about 80 times on its way to 1 000 events (the count grows by more than
    /// a sixteenth each time).
    fn recount(&mut self, total: &AtomicUsize, slack: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let drift = self.bytes.abs_diff(self.counted);
        if drift == 0 || (slack > 0 && drift <= self.counted / slack) {
            return;
        }
        if self.bytes > self.counted {
            total.fetch_add(drift, Relaxed);
        } else {
            total.fetch_sub(drift, Relaxed);
        }
        self.counted = self.bytes;
    }

    /// Settles what is now contiguous after the settled prefix; whether
    /// anything was.
    fn advance(&mut self) -> bool {
        let settled = self.settled;
        while let Some(slot) = self.slots.get((self.settled - self.floor) as usize) {
            if matches!(slot, Slot::Reserved) {
                break;
            }
            self.settled += 1;
        }
        self.settled != settled
    }

    /// Where a replay after `from` starts so that it holds at most `max`
    /// bytes: `from` itself, or the offset before the oldest event that fits.
    fn replay_start(&self, from: u64, max: usize) -> u64 {
        let mut bytes = 0usize;
        let mut at = self.settled;
        while at > from {
            let index = (at - self.floor - 1) as usize;
            let len = match self.slots.get(index) {
                Some(Slot::Event(event, _)) => event.len(),
                _ => 0,
            };
            bytes = bytes.saturating_add(len);
            if bytes > max {
                return at;
            }
            at -= 1;
        }
        from
    }

    fn take_waiters(&mut self) -> Vec<Option<Waker>> {
        self.round += 1;
        let capacity = self.waiters.len();
        mem::replace(&mut self.waiters, Vec::with_capacity(capacity))
    }

    #[inline]
    fn evict(&mut self, max_len: usize, max_bytes: usize) {
        if self.over(max_len, max_bytes) {
            self.evict_over(max_len, max_bytes);
        }
    }

    /// The history holds more than one event and more than `max_len` events
    /// or `max_bytes` bytes.
    #[inline]
    fn over(&self, max_len: usize, max_bytes: usize) -> bool {
        self.slots.len() > 1 && (self.slots.len() > max_len || self.bytes > max_bytes)
    }

    /// Before an event is appended to a history at its length bound `max_len`:
    /// the oldest event leaves first (when it is settled), the one that
    /// [`evict`](Self::evict) would drop once the new one is in, so the new
    /// one takes its place in the ring, as `broadcast` overwrites its oldest
    /// slot. Storing then touches one slot, already in the cache, rather than
    /// a second one half the ring away: at 1,024 topics the slot the eviction
    /// read was the publish's costliest cache miss (`perf`). Below the bound,
    /// the ring grows as `VecDeque` would, by doubling, but not past
    /// `max_len`, so that a full history fills its ring exactly. At the bound
    /// with the oldest slot still reserved (a publish building its event),
    /// the push grows the ring as `VecDeque` does, by doubling: never by one
    /// slot at a time.
    #[inline]
    fn make_room(&mut self, max_len: usize) {
        let len = self.slots.len();
        if len >= max_len && self.floor < self.settled {
            self.drop_oldest();
        } else if len == self.slots.capacity() && len < max_len {
            let grown = len.saturating_mul(2).max(4).min(max_len);
            self.slots.reserve_exact(grown - len);
        }
    }

    /// [`evict`](Self::evict) once the history is over its bounds.
    fn evict_over(&mut self, max_len: usize, max_bytes: usize) {
        // Only settled events leave: a reserved slot is still being built.
        while self.floor < self.settled {
            self.drop_oldest();
            if !self.over(max_len, max_bytes) {
                break;
            }
        }
    }

    /// Drops the oldest slot of the history, which the caller checked is
    /// settled, and its bytes.
    #[inline]
    fn drop_oldest(&mut self) {
        if let Some(Slot::Event(event, _)) = self.slots.pop_front() {
            self.bytes -= event.len();
        }
        self.floor += 1;
    }

    /// Leaves (or refreshes) the reader's waker in `waiters`. Registered even
    /// when the poll returns an event: the next poll (a body looking for more to
    /// put in the same frame) may then answer `Pending` unlocked.
    fn register(&mut self, cursor: &mut Cursor, waker: &Waker) {
        let waker = match cursor.registered.take() {
            Some(left) if left.will_wake(waker) => left,
            _ => waker.clone(),
        };
        let round = self.round;
        let Some(Some(reader)) = self.readers.get_mut(cursor.slot) else {
            return;
        };
        let left = (reader.waiter_round == round)
            .then(|| self.waiters.get_mut(reader.waiter_at as usize))
            .flatten();
        match left {
            Some(left) => {
                if !left.as_ref().is_some_and(|w| w.will_wake(&waker)) {
                    *left = Some(waker.clone());
                }
            }
            None => {
                reader.waiter_round = round;
                // Over `u32::MAX` waiters (never), the index saturates and the
                // reader pushes a new waker each time: woken, never lost.
                reader.waiter_at = u32::try_from(self.waiters.len()).unwrap_or(u32::MAX);
                self.waiters.push(Some(waker.clone()));
            }
        }
        cursor.registered = Some(waker);
    }

    fn forget_waker(&mut self, reader: Reader) {
        if reader.waiter_round == self.round {
            if let Some(left) = self.waiters.get_mut(reader.waiter_at as usize) {
                *left = None;
            }
        }
    }

    /// A lagging reader under [`Lag::Disconnect`] no longer counts as a
    /// subscriber; its slot stays taken until its `Subscriber` is dropped.
    fn cut_off(&mut self, slot: usize) {
        if let Some(Some(reader)) = self.readers.get_mut(slot) {
            let left = *reader;
            reader.out = true;
            self.forget_waker(left);
            self.leave();
        }
    }

    /// A subscriber no longer counts: when it was the last, retention counts
    /// from now.
    fn leave(&mut self) {
        self.subscribed -= 1;
        if self.subscribed == 0 {
            self.touched = now();
        }
    }
}

/// `event: reset`, with the id after which what follows is complete.
fn reset_notice(after: EventId) -> EncodedEvent {
    crate::metrics::reset();
    let after = after.to_string();
    let data = format!("{{\"after\":\"{after}\"}}");
    notice("reset", &after, data)
}

/// A notice the hub writes into a stream: `event: KIND`, `id: ID`, JSON `data`.
/// The kind is a fixed word and the id an [`EventId`], so it is always valid.
fn notice(kind: &'static str, id: &str, data: String) -> EncodedEvent {
    Event::default()
        .event(kind)
        .and_then(|e| e.id(id))
        .map(|e| e.data(data))
        .unwrap_or_default()
        .encode()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn order_stamps_rise_within_a_thread_and_from_one_thread_to_the_next() {
        // Faster than the clock moves: still strictly increasing, never 0.
        let stamps: Vec<u64> = (0..10_000).map(|_| order_stamp()).collect();
        assert!(stamps[0] > 0);
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
        // A thread started after the last stamp (with no stamps of its own)
        // stamps later (once the clock passed the stamps that outran it).
        std::thread::sleep(Duration::from_millis(1));
        let later = std::thread::spawn(order_stamp).join().unwrap();
        assert!(later > stamps[stamps.len() - 1]);
    }

    fn config(capacity: usize, lag: Lag) -> HubConfig {
        HubConfig::new().queue_capacity(capacity).lag(lag)
    }

    fn poll(topic: &Topic, cursor: &mut Cursor, config: &HubConfig) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        topic
            .poll_next(cursor, config, &mut cx)
            .map(|e| e.map(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    fn publish(topic: &Topic, config: &HubConfig, data: &str) -> EventId {
        let id = topic.reserve().unwrap();
        let event = Event::message(data).id(id.to_string()).unwrap().encode();
        let _ = topic.commit(id, Some(event), config, Instant::now(), None);
        id
    }

    #[test]
    fn out_of_order_commits_are_read_in_offset_order() {
        let config = config(8, Lag::Skip);
        let t = Topic::new(Arc::from("t"), Instant::now());
        let joined = t.subscribe(None).unwrap();
        let mut cursor = Cursor::new(&joined);
        let first = t.reserve().unwrap();
        let second = t.reserve().unwrap();
        let woken = t.commit(
            second,
            Some(Event::message("2").encode()),
            &config,
            Instant::now(),
            None,
        );
        assert!(
            woken.is_empty(),
            "nothing is readable while offset 1 is reserved"
        );
        assert_eq!(poll(&t, &mut cursor, &config), Poll::Pending);
        // A removal must wait for the publish in flight.
        assert_eq!(t.try_remove(None), None);
        let _ = t.commit(
            first,
            Some(Event::message("1").encode()),
            &config,
            Instant::now(),
            None,
        );
        assert_eq!(
            poll(&t, &mut cursor, &config),
            Poll::Ready(Some("data: 1\n\n".into()))
        );
        assert_eq!(
            poll(&t, &mut cursor, &config),
            Poll::Ready(Some("data: 2\n\n".into()))
        );
        // A publisher that panicked leaves an empty offset, skipped by readers.
        let third = t.reserve().unwrap();
        let _ = t.commit(third, None, &config, Instant::now(), None);
        publish(&t, &config, "4");
        let got = poll(&t, &mut cursor, &config);
        assert_eq!(
            got,
            Poll::Ready(Some(format!(
                "id: {}\ndata: 4\n\n",
                EventId::new(4, t.position().epoch())
            )))
        );
    }

    #[test]
    fn skip_reports_the_gap_then_reads_on() {
        let config = config(2, Lag::Skip);
        let t = Topic::new(Arc::from("t"), Instant::now());
        let mut cursor = Cursor::new(&t.subscribe(None).unwrap());
        for n in 1..=5 {
            publish(&t, &config, &n.to_string());
        }
        let gap = format!(
            "event: gap\nid: {}\ndata: {{\"skipped\":5}}\n\n",
            EventId::new(5, t.position().epoch())
        );
        assert_eq!(poll(&t, &mut cursor, &config), Poll::Ready(Some(gap)));
        assert_eq!(poll(&t, &mut cursor, &config), Poll::Pending);
        let six = publish(&t, &config, "6");
        let got = poll(&t, &mut cursor, &config);
        assert_eq!(got, Poll::Ready(Some(format!("id: {six}\ndata: 6\n\n"))));
        assert_eq!(t.subscriber_count(), 1);
    }

    #[test]
    fn disconnect_cuts_off_at_once_and_holds_nothing() {
        let lag = Lag::Disconnect {
            retry: Duration::from_millis(250),
        };
        let config = config(1, lag);
        let t = Topic::new(Arc::from("t"), Instant::now());
        let mut stuck = Cursor::new(&t.subscribe(None).unwrap());
        let mut reader = Cursor::new(&t.subscribe(None).unwrap());
        for n in 1..=3 {
            let id = publish(&t, &config, &n.to_string());
            let got = poll(&t, &mut reader, &config);
            assert_eq!(got, Poll::Ready(Some(format!("id: {id}\ndata: {n}\n\n"))));
        }
        let lagged = ": lagged\nretry: 250\n\n".to_owned();
        assert_eq!(poll(&t, &mut stuck, &config), Poll::Ready(Some(lagged)));
        assert_eq!(poll(&t, &mut stuck, &config), Poll::Ready(None));
        assert_eq!(t.subscriber_count(), 1);
        // Its slot stays taken until its subscriber is dropped, then is reused.
        t.unsubscribe(stuck.slot);
        assert_eq!(t.subscriber_count(), 1);
        assert_eq!(t.subscribe(None).unwrap().slot, stuck.slot);
    }

    #[test]
    fn readers_that_come_and_go_leave_no_wakers_behind() {
        let config = config(8, Lag::Skip);
        let t = Topic::new(Arc::from("t"), Instant::now());
        let mut stays = Cursor::new(&t.subscribe(None).unwrap());
        assert_eq!(poll(&t, &mut stays, &config), Poll::Pending);
        for _ in 0..1000 {
            let mut cursor = Cursor::new(&t.subscribe(None).unwrap());
            assert_eq!(poll(&t, &mut cursor, &config), Poll::Pending);
            t.unsubscribe(cursor.slot);
        }
        assert_eq!(lock(&t.state).waiters.iter().flatten().count(), 1);
        assert!(lock(&t.state).waiters.len() <= 2 * 2 + 64 + 1);
        let id = t.reserve().unwrap();
        let woken = t.commit(
            id,
            Some(Event::message("x").encode()),
            &config,
            Instant::now(),
            None,
        );
        assert_eq!(woken.iter().flatten().count(), 1);
        assert_eq!(
            poll(&t, &mut stays, &config),
            Poll::Ready(Some("data: x\n\n".into()))
        );
    }

    #[test]
    fn history_is_bounded_by_count_and_bytes_but_keeps_the_newest() {
        let config = HubConfig::new().history_len(3).history_bytes(1000);
        let t = Topic::new(Arc::from("t"), Instant::now());
        for n in 1..=5 {
            publish(&t, &config, &n.to_string());
        }
        let (floor, len) = {
            let state = lock(&t.state);
            (state.floor, state.slots.len())
        };
        assert_eq!((floor, len), (2, 3));
        let config = HubConfig::new().history_bytes(10);
        let big = "x".repeat(100);
        publish(&t, &config, &big);
        assert_eq!(lock(&t.state).slots.len(), 1, "the newest event stays");
        let held = t.bytes();
        assert!(held > 100);
        let total = AtomicUsize::new(0);
        t.trim_to(0, &total);
        assert_eq!(t.bytes(), held, "the newest event stays");
        assert_eq!(total.into_inner(), held, "and is counted exactly");
    }

    #[test]
    fn an_appended_event_takes_the_oldest_ones_place_in_a_ring_that_never_outgrows_the_bound() {
        // 5: not a power of two, so doubling alone would overshoot.
        let config = HubConfig::new().history_len(5);
        let t = Topic::new(Arc::from("t"), Instant::now());
        for n in 1..=100 {
            let (id, _) = t
                .append(&Event::message(n.to_string()), &config, None)
                .unwrap();
            assert_eq!(id.offset(), n);
            let state = lock(&t.state);
            assert!(state.slots.capacity() <= 5, "the ring stays at the bound");
            assert_eq!(state.slots.len(), n.min(5) as usize);
        }
        let state = lock(&t.state);
        assert_eq!(state.floor, 95);
        let kept: Vec<String> = state
            .slots
            .iter()
            .map(|slot| match slot {
                Slot::Event(event, _) => String::from_utf8_lossy(event.as_ref()).into_owned(),
                _ => panic!("every slot holds its event"),
            })
            .collect();
        for (n, frame) in (96..=100).zip(&kept) {
            assert!(frame.contains(&format!("data: {n}\n")), "{frame}");
        }
    }

    #[test]
    fn appends_behind_a_reserved_slot_grow_the_ring_and_settle_back_to_the_bound() {
        let config = HubConfig::new().history_len(5);
        let t = Topic::new(Arc::from("t"), Instant::now());
        for n in 1..=5 {
            t.append(&Event::message(n.to_string()), &config, None);
        }
        // A publish building its event holds offset 6: nothing after it settles.
        let held = t.reserve().unwrap();
        for n in 7..=200u64 {
            let (id, _) = t
                .append(&Event::message(n.to_string()), &config, None)
                .unwrap();
            assert_eq!(id.offset(), n);
        }
        {
            let state = lock(&t.state);
            // Offsets 6 to 200 wait for 6 (1 to 5 left, one per append, as
            // evicting after the store would have dropped them).
            assert_eq!((state.floor, state.slots.len()), (5, 195));
            assert!(state.slots.capacity() < 2 * 195, "grown by doubling");
        }
        let _ = t.commit(
            held,
            Some(Event::message("6").encode()),
            &config,
            Instant::now(),
            None,
        );
        let state = lock(&t.state);
        assert_eq!(
            (state.floor, state.settled, state.slots.len()),
            (195, 200, 5)
        );
    }

    #[test]
    fn a_rebase_in_the_same_epoch_still_resets_in_band() {
        // A hole the broker no longer holds: the copy starts over in the same
        // epoch, and its readers are told, not cut off as laggards.
        let config = config(8, Lag::default());
        let t = Topic::new(Arc::from("t"), Instant::now());
        let mut cursor = Cursor::new(&t.subscribe(None).unwrap());
        publish(&t, &config, "1");
        assert!(matches!(
            poll(&t, &mut cursor, &config),
            Poll::Ready(Some(_))
        ));
        let epoch = t.position().epoch();
        let _ = t.rebase(epoch, 40);
        let next = publish(&t, &config, "41");
        assert_eq!(next.offset(), 41);
        let after = EventId::new(40, epoch);
        let reset = format!("event: reset\nid: {after}\ndata: {{\"after\":\"{after}\"}}\n\n");
        assert_eq!(poll(&t, &mut cursor, &config), Poll::Ready(Some(reset)));
        let got = poll(&t, &mut cursor, &config);
        assert_eq!(got, Poll::Ready(Some(format!("id: {next}\ndata: 41\n\n"))));
        assert_eq!(t.subscriber_count(), 1, "not cut off");
    }

    #[test]
    fn a_key_is_answered_only_once_its_event_is_stored_and_forgotten_by_its_own_entry() {
        let config = HubConfig::new();
        let t = Topic::new(Arc::from("t"), Instant::now());
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        let Some(Reservation::New(first)) = t.reserve_once(Some("k"), window, 16, t0) else {
            panic!("a new key reserves");
        };
        assert_eq!(
            t.reserve_once(Some("k"), window, 16, t0),
            Some(Reservation::InFlight)
        );
        // Its closure panicked: nothing stored, the key is free again.
        let _ = t.commit(first, None, &config, t0, None);
        let t1 = t0 + Duration::from_secs(5);
        let Some(Reservation::New(second)) = t.reserve_once(Some("k"), window, 16, t1) else {
            panic!("the key was given back");
        };
        let event = Event::message("x").id(second.to_string()).unwrap().encode();
        let _ = t.commit(second, Some(event), &config, t1, None);
        // Past the first use's window, within the second's: still known.
        let t2 = t0 + Duration::from_secs(12);
        assert_eq!(
            t.reserve_once(Some("k"), window, 16, t2),
            Some(Reservation::Known(second))
        );
    }
}
