//! [`MemoryStore`]: the hub's default store, in this process.
//!
//! Topics live in shards (a map each, behind its own lock) found by the topic
//! name's hash: the shard lock is held only to look a topic up or create it,
//! never while publishing, so publishes to different topics do not wait for
//! each other, and those to one topic wait only for that topic's short critical
//! sections. Expired topics are freed by a sweep, run by a background task when
//! the hub was created inside a tokio runtime, and otherwise (or also) at most
//! once per sweep interval by a later subscribe, or a topic's first publish or
//! every 64th. A publish reads the clock once, for its event's order stamp
//! (see `topic.rs`), and otherwise only for those.

use std::{
    borrow::Borrow,
    collections::{hash_map::RandomState, HashMap},
    fmt,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::sync::{lock, now, Mutex};

use super::{
    store::{self, HubError, MakeEvent, Store, StoreFuture},
    topic::{wake, Reservation, Topic, COUNT_SLACK},
    EventId, HubConfig, Subscriber,
};
use tower_sse::Event;

/// After a scan at the topic bound found no topic to evict, new topics are
/// refused for this long without scanning again: a flood of new topics while
/// every topic is in use costs a scan per interval, not one per request.
const FULL_BACKOFF: Duration = Duration::from_millis(100);

const SHARDS: usize = 32;

/// One shard: the topics whose name hashes to it, keyed by the name and its
/// hash, so that a name is hashed once per operation (for the shard and the
/// map both).
type Shard = Mutex<HashMap<Key, Arc<Topic>, BuildHasherDefault<Prehashed>>>;

/// A topic's name in a shard's map, with the hash the store computed for it
/// (the store's `RandomState`: a topic name may come from a client).
struct Key {
    hash: u64,
    name: Arc<str>,
}

/// A name with its hash, as the map's key or as a look-up for one: the map is
/// asked with `&dyn Named` so that a look-up by `&str` needs no `Arc`.
trait Named {
    fn hash(&self) -> u64;
    fn name(&self) -> &str;
}

impl Named for Key {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A look-up: a borrowed name and its hash.
struct Probe<'a> {
    hash: u64,
    name: &'a str,
}

impl Named for Probe<'_> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn name(&self) -> &str {
        self.name
    }
}

impl<'a> Borrow<dyn Named + 'a> for Key {
    fn borrow(&self) -> &(dyn Named + 'a) {
        self
    }
}

impl Hash for dyn Named + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(Named::hash(self));
    }
}

impl PartialEq for dyn Named + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.hash() == other.hash() && self.name() == other.name()
    }
}

impl Eq for dyn Named + '_ {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.name == other.name
    }
}

impl Eq for Key {}

/// The hasher of a shard's map: its keys bring their hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Key` and `Probe`); anything else still
        // hashes, just slowly.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// The in-process [`Store`]: each topic's history in memory, bounded per topic
/// by [`HubConfig`]'s count, bytes and TTL, and hub-wide by its topic and byte
/// bounds. The default store of [`Hub::new`](super::Hub::new).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<HubConfig>,
    shards: Box<[Shard]>,
    hasher: RandomState,
    topics: AtomicUsize,
    /// The history bytes of every topic, as the topics count them: each to
    /// within a sixteenth, so that a publish of one topic rarely writes this
    /// line, which every topic's publishers share.
    bytes: AtomicUsize,
    /// When the store was made: `next_sweep` counts from here.
    started: Instant,
    /// When the next sweep is due, in nanoseconds since `started`: only read by
    /// publishes, so it costs them no shared write.
    next_sweep: AtomicU64,
    /// Held by the one sweeper running, with `try_lock`.
    sweeping: Mutex<()>,
    /// The sweeper task is alive: publishes leave the sweeps to it, and do
    /// not read the clock against `next_sweep`. Cleared when the task ends
    /// for any reason (its runtime shut down, say); publishes sweep again.
    swept_by_task: AtomicBool,
    /// Until when new topics are refused (nanoseconds since `started`): a
    /// scan at the bound found nothing to evict.
    full_until: AtomicU64,
    /// Set by `close`, read under a shard's lock before a topic is created
    /// there: a topic is either created before `close` visits its shard (and
    /// closed by it) or refused.
    closed: AtomicBool,
    /// The publish counter, looked up once.
    published: crate::metrics::Published,
}

impl MemoryStore {
    /// A store bounded by `config`. Inside a tokio runtime (with the `tokio`
    /// feature), it spawns the task that frees expired topics; the task ends
    /// with the store.
    pub fn new(config: HubConfig) -> Self {
        let inner = Arc::new(Inner {
            config: Arc::new(config),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: RandomState::new(),
            topics: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            started: now(),
            next_sweep: AtomicU64::new(0),
            sweeping: Mutex::new(()),
            swept_by_task: AtomicBool::new(false),
            full_until: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            published: crate::metrics::Published::new(),
        });
        #[cfg(feature = "tokio")]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Made here, not in the task: a task dropped before its first
            // poll clears the flag too.
            let alive = SweeperAlive::new(&inner);
            runtime.spawn(async move {
                let alive = alive;
                sweeper(alive.inner.clone()).await;
            });
        }
        Self { inner }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Bytes of history held across every topic, as counted for
    /// [`HubConfig::max_total_history_bytes`]: each topic's history to within
    /// a sixteenth (its count follows its bytes when they move by more), so
    /// that a publish of one topic need not write a count every topic's
    /// publishers share.
    pub fn history_bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// [`Store::publish`] without its boxes, for a [`Hub`](super::Hub) on this
    /// store: it completes at once.
    pub(crate) fn publish_now(
        &self,
        topic: &str,
        key: Option<&str>,
        make: impl FnOnce(&EventId) -> Event,
    ) -> Result<EventId, HubError> {
        self.inner.publish(topic, key, make)
    }

    /// [`Hub::publish`](super::Hub::publish) on this store: an event built
    /// before the publish is stored in one critical section of its topic.
    #[inline]
    pub(crate) fn publish_event(&self, topic: &str, event: &Event) -> Result<EventId, HubError> {
        self.inner.publish_event(&mut None, topic, event)
    }

    /// [`publish_event`](Self::publish_event) through `found`, the topic
    /// found by an earlier publish (a [`Publisher`](crate::Publisher)'s):
    /// no look-up while it is live; looked up again (and kept in `found`) when
    /// it is `None` or was freed since.
    #[inline]
    pub(crate) fn publish_event_to(
        &self,
        found: &mut Option<Arc<Topic>>,
        topic: &str,
        event: &Event,
    ) -> Result<EventId, HubError> {
        self.inner.publish_event(found, topic, event)
    }

    /// Frees now the topics without subscribers whose retention has expired
    /// (the background task or the next publish does it too; see the module).
    pub fn sweep(&self) {
        self.inner.sweep(now());
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(HubConfig::new())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("topics", &self.inner.topics.load(Ordering::Relaxed))
            .field("history_bytes", &self.history_bytes())
            .field("config", &self.inner.config)
            .finish()
    }
}

/// How often expired topics are looked for: an eighth of the TTL, between one
/// second and one minute.
fn sweep_interval(config: &HubConfig) -> Duration {
    (config.get_history_ttl() / 8).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Marks the sweeper task alive while it is held (by the task's future).
#[cfg(feature = "tokio")]
struct SweeperAlive {
    inner: std::sync::Weak<Inner>,
}

#[cfg(feature = "tokio")]
impl SweeperAlive {
    fn new(inner: &Arc<Inner>) -> Self {
        inner.swept_by_task.store(true, Ordering::Relaxed);
        Self {
            inner: Arc::downgrade(inner),
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for SweeperAlive {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.upgrade() {
            inner.swept_by_task.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(feature = "tokio")]
async fn sweeper(inner: std::sync::Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|inner| sweep_interval(&inner.config)) else {
        return;
    };
    loop {
        tokio::time::sleep(interval).await;
        match inner.upgrade() {
            Some(inner) if !inner.closed.load(Ordering::Relaxed) => inner.sweep(now()),
            _ => return,
        }
    }
}

impl Inner {
    /// `name` with its hash, computed once for the shard and its map: the
    /// name's bytes in one write (no `str` terminator: the hasher hashes
    /// nothing else, so it needs no separator).
    fn probe<'a>(&self, name: &'a str) -> Probe<'a> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(name.as_bytes());
        Probe {
            hash: hasher.finish(),
            name,
        }
    }

    /// The shard of a hash: chosen by bits 32 to 36, which the map of a shard
    /// uses neither for the bucket (the low bits) nor for the tag (the top 7),
    /// so the topics of one shard still spread over its whole table.
    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// Nanoseconds from `started` to `now`.
    fn since_start(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The topic named `name`, created if missing. At the topic bound, room is
    /// made first by evicting idle topics (never the one being created);
    /// [`HubError::Full`] when there is none to evict.
    fn topic(&self, name: &str) -> Result<Arc<Topic>, HubError> {
        let probe = self.probe(name);
        if let Some(topic) = self.find(&probe) {
            return Ok(topic);
        }
        let max = self.config.get_max_topics();
        let count = self.topics.load(Ordering::Relaxed);
        if count >= max {
            let at = self.since_start(now());
            if at < self.full_until.load(Ordering::Relaxed) {
                return Err(HubError::Full);
            }
            // Down to 95% of the bound at once, so the scan is amortised.
            // Full only when no topic at all was idle: one that a concurrent
            // eviction took first still means room was being made.
            let (_, idle) = self.evict_idle(count + 1 - max + max / 20, 0);
            if idle == 0 {
                let until = at.saturating_add(FULL_BACKOFF.as_nanos() as u64);
                self.full_until.store(until, Ordering::Relaxed);
                return Err(HubError::Full);
            }
        }
        let mut map = lock(self.shard(probe.hash));
        if let Some(topic) = map.get(&probe as &dyn Named) {
            return Ok(topic.clone());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(HubError::Closed);
        }
        let topic = Arc::new(Topic::new(Arc::from(name), now()));
        let key = Key {
            hash: probe.hash,
            name: topic.name().clone(),
        };
        map.insert(key, topic.clone());
        self.topics.fetch_add(1, Ordering::Relaxed);
        Ok(topic)
    }

    fn existing(&self, name: &str) -> Option<Arc<Topic>> {
        self.find(&self.probe(name))
    }

    fn find(&self, probe: &Probe<'_>) -> Option<Arc<Topic>> {
        lock(self.shard(probe.hash))
            .get(probe as &dyn Named)
            .cloned()
    }

    /// Runs a sweep when the last one is older than the sweep interval, and
    /// the sweeper task is not there to do it. The time is asked of `now`
    /// only then: with a sweeper task, this reads no clock.
    #[inline]
    fn maybe_sweep(&self, now: impl FnOnce() -> Instant) {
        if !self.swept_by_task.load(Ordering::Relaxed) {
            self.sweep_if_due(now());
        }
    }

    fn sweep_if_due(&self, now: Instant) {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let at = nanos(now.saturating_duration_since(self.started));
        if at < self.next_sweep.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(_sweeping) = self.sweeping.try_lock() {
            let next = at.saturating_add(nanos(sweep_interval(&self.config)));
            self.next_sweep.store(next, Ordering::Relaxed);
            self.sweep(now);
        }
    }

    /// Frees the topics without subscribers last touched a TTL ago or more.
    fn sweep(&self, now: Instant) {
        let Some(limit) = now.checked_sub(self.config.get_history_ttl()) else {
            return; // the TTL reaches before the clock's origin: nothing expired
        };
        for shard in self.shards.iter() {
            let mut freed = 0;
            let mut removed = 0;
            let mut map = lock(shard);
            map.retain(|_, topic| match topic.try_remove(Some(limit)) {
                Some(bytes) => {
                    freed += bytes;
                    removed += 1;
                    false
                }
                None => true,
            });
            // Give a burst's table back once the burst is gone.
            if map.capacity() > 64 && map.len() < map.capacity() / 4 {
                map.shrink_to_fit();
            }
            drop(map);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            self.topics.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Frees topics without subscribers, idle longest first, until
    /// `topics` of them are freed and at least `bytes` of history; returns how
    /// many topics it freed and how many were idle when it looked.
    fn evict_idle(&self, topics: usize, bytes: usize) -> (usize, usize) {
        let mut idle: Vec<(Instant, Arc<Topic>)> = Vec::new();
        for shard in self.shards.iter() {
            let map = lock(shard);
            idle.extend(
                map.values()
                    .filter_map(|topic| Some((topic.idle_since()?, topic.clone()))),
            );
        }
        idle.sort_unstable_by_key(|(since, _)| *since);
        let candidates = idle.len();
        let (mut freed_topics, mut freed_bytes) = (0, 0);
        for (_, topic) in idle {
            if freed_topics >= topics && freed_bytes >= bytes {
                break;
            }
            let probe = self.probe(topic.name());
            let mut map = lock(self.shard(probe.hash));
            let ours = map
                .get(&probe as &dyn Named)
                .is_some_and(|t| Arc::ptr_eq(t, &topic));
            if !ours {
                continue;
            }
            if let Some(held) = topic.try_remove(None) {
                map.remove(&probe as &dyn Named);
                freed_topics += 1;
                freed_bytes += held;
                self.bytes.fetch_sub(held, Ordering::Relaxed);
                self.topics.fetch_sub(1, Ordering::Relaxed);
            }
        }
        (freed_topics, candidates)
    }

    /// Keeps the history bytes across topics within the bound after `topic`
    /// grew: idle topics go first, then `topic`'s own oldest events.
    fn enforce_bytes(&self, topic: &Topic) {
        // Each topic counts its bytes to within a sixteenth of its count
        // (`State::recount`): at 15/16 of the bound, what the histories hold
        // (at most 17/16 of what they count) stays within it.
        let bound = self.config.get_max_total_history_bytes();
        let max = bound - bound / COUNT_SLACK;
        let total = self.bytes.load(Ordering::Relaxed);
        if total <= max {
            return;
        }
        let _ = self.evict_idle(0, total - max + max / 20);
        let total = self.bytes.load(Ordering::Relaxed);
        if total > max {
            let keep = topic.bytes().saturating_sub(total - max);
            topic.trim_to(keep, &self.bytes);
        }
    }

    fn publish(
        &self,
        name: &str,
        key: Option<&str>,
        make: impl FnOnce(&EventId) -> Event,
    ) -> Result<EventId, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        store::check_key(key)?;
        let now = now();
        let window = self.config.get_idempotency_window();
        let max_keys = self.config.get_history_len().max(1024);
        let (topic, id) = loop {
            let topic = self.topic(name)?;
            // `None`: freed between the look-up and now; look it up again.
            match topic.reserve_once(key, window, max_keys, now) {
                Some(Reservation::New(id)) => break (topic, id),
                Some(Reservation::Known(id)) => return Ok(id),
                // Another publish with this key is building its event (or
                // its closure is slow): wait for it to settle, or to fail and
                // give the key back.
                Some(Reservation::InFlight) => std::thread::yield_now(),
                None => {}
            }
        };
        // Outside every lock: the user's closure and the encoder. If the closure
        // panics, the guard settles the offset as empty so readers move on.
        let mut guard = CommitOnDrop {
            topic: &topic,
            id,
            config: &self.config,
            bytes: &self.bytes,
            event: None,
            now,
        };
        let event = store::encode_with_id(&make(&id), &id);
        guard.event = Some(event);
        drop(guard);
        self.published.count();
        self.enforce_bytes(&topic);
        self.maybe_sweep(|| now);
        Ok(id)
    }

    /// Publishes `event`, built before the publish (no key, no closure), to
    /// the topic `name` in one critical section of it ([`Topic::append`]);
    /// the topic is `found` when that is `Some` (looked up, and left there,
    /// otherwise).
    fn publish_event(
        &self,
        found: &mut Option<Arc<Topic>>,
        name: &str,
        event: &Event,
    ) -> Result<EventId, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        let (id, wakers) = loop {
            let topic = match found {
                Some(topic) => topic,
                None => found.insert(self.topic(name)?),
            };
            if let Some(appended) = topic.append(event, &self.config, Some(&self.bytes)) {
                break appended;
            }
            // Freed since it was found (idle, or the topic bound): look it
            // up again, which makes it anew.
            *found = None;
        };
        wake(wakers);
        self.published.count();
        if let Some(topic) = found {
            self.enforce_bytes(topic);
        }
        // Without a sweeper task, a topic's first publish and every 64th
        // after look (a clock read each): sweeps are due a second apart at
        // the soonest.
        if id.offset() % 64 == 1 {
            self.maybe_sweep(now);
        }
        Ok(id)
    }

    fn subscribe(&self, name: &str, cursor: Option<&str>) -> Result<Subscriber, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        self.maybe_sweep(now);
        loop {
            let topic = self.topic(name)?;
            if let Some(joined) = topic.subscribe_within(cursor, self.config.get_max_replay_bytes())
            {
                return Ok(Subscriber::new(topic, joined, self.config.clone()));
            }
        }
    }
}

/// Commits a reserved offset when dropped: with the event, or empty when the
/// closure building it panicked.
struct CommitOnDrop<'a> {
    topic: &'a Topic,
    id: EventId,
    config: &'a HubConfig,
    bytes: &'a AtomicUsize,
    event: Option<tower_sse::EncodedEvent>,
    now: Instant,
}

impl Drop for CommitOnDrop<'_> {
    fn drop(&mut self) {
        let event = self.event.take();
        let wakers = self
            .topic
            .commit(self.id, event, self.config, self.now, Some(self.bytes));
        wake(wakers);
    }
}

impl Store for MemoryStore {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: MakeEvent<'a>,
    ) -> StoreFuture<'a, Result<EventId, HubError>> {
        Box::pin(async move { self.inner.publish(topic, key, make) })
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Subscriber, HubError>> {
        Box::pin(async move { self.inner.subscribe(topic, last_event_id) })
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.inner
            .existing(topic)
            .map_or(0, |topic| topic.subscriber_count())
    }

    fn topic_count(&self) -> usize {
        self.inner.topics.load(Ordering::Relaxed)
    }

    fn position(&self, topic: &str) -> Option<EventId> {
        self.inner.existing(topic).map(|topic| topic.position())
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut wakers = Vec::new();
        for shard in self.inner.shards.iter() {
            for topic in lock(shard).values() {
                wakers.extend(topic.close());
            }
        }
        wake(wakers);
    }
}

#[cfg(all(test, feature = "tokio", not(tower_sse_loom)))]
mod tests {
    use super::*;

    fn topics(store: &MemoryStore) -> usize {
        store.inner.topics.load(Ordering::Relaxed)
    }

    const TTL: Duration = Duration::from_secs(60);

    /// What the histories of every topic hold, byte for byte.
    fn held(store: &MemoryStore) -> usize {
        store
            .inner
            .shards
            .iter()
            .map(|shard| lock(shard).values().map(|t| t.bytes()).sum::<usize>())
            .sum()
    }

    /// A chat message of 100 to 140 bytes of data, the size varying with `n`.
    fn message(n: usize) -> Event {
        Event::message("x".repeat(100 + n * 7 % 41))
    }

    #[test]
    fn a_history_turning_over_events_of_several_sizes_writes_no_hub_wide_count() {
        let store = MemoryStore::new(HubConfig::new().history_len(64));
        let _sub = store.inner.subscribe("t", None).unwrap();
        for n in 0..64 {
            store.publish_event("t", &message(n)).unwrap();
        }
        let (mut last, mut writes) = (store.history_bytes(), 0);
        for n in 64..10_064 {
            store.publish_event("t", &message(n)).unwrap();
            let (counted, held) = (store.history_bytes(), held(&store));
            assert!(
                counted.abs_diff(held) <= counted / COUNT_SLACK,
                "{n}: {counted} {held}"
            );
            writes += usize::from(counted != last);
            last = counted;
        }
        // Counted exactly, nearly every one of these publishes would write
        // the count: each stores an event of another size than it drops.
        assert!(
            writes <= 10,
            "{writes} writes of the count in 10 000 publishes"
        );
    }

    #[test]
    fn histories_stay_within_the_hub_wide_bound_counted_to_a_sixteenth() {
        let bound = 64 * 1024;
        let store = MemoryStore::new(
            HubConfig::new()
                .history_len(200)
                .max_total_history_bytes(bound),
        );
        // Subscribed topics cannot be freed: the bound trims their histories.
        let subs: Vec<_> = (0..8)
            .map(|t| store.inner.subscribe(&format!("t{t}"), None).unwrap())
            .collect();
        for n in 0..20_000 {
            store
                .publish_event(&format!("t{}", n % 8), &message(n))
                .unwrap();
            let held = held(&store);
            assert!(held <= bound, "{n}: {held} bytes held, bound {bound}");
        }
        // Freed topics take what they counted with them: back to zero.
        drop(subs);
        store.inner.sweep(now() + TTL * 20);
        assert_eq!((topics(&store), store.history_bytes()), (0, 0));
    }

    #[test]
    fn retention_counts_from_the_last_publish_or_the_last_subscriber_leaving() {
        let store = MemoryStore::new(HubConfig::new().history_ttl(TTL));
        let sub = store.inner.subscribe("t", None).unwrap();
        store.publish_event("t", &Event::message("x")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let leaving = now();
        drop(sub);
        let left = now();
        // A TTL after the publish, but not after the subscriber left: kept.
        store.inner.sweep(leaving + TTL - Duration::from_millis(1));
        assert_eq!(topics(&store), 1, "kept a TTL after its subscriber left");
        store.inner.sweep(left + TTL);
        assert_eq!(topics(&store), 0, "freed a TTL after");
        // Without subscribers, a publish counts.
        store.publish_event("u", &Event::message("x")).unwrap();
        let published = now();
        store
            .inner
            .sweep(published + TTL - Duration::from_millis(1));
        assert_eq!(topics(&store), 1);
        store.inner.sweep(published + TTL);
        assert_eq!(topics(&store), 0);
    }

    #[test]
    fn publishes_sweep_when_no_task_does() {
        // Outside a runtime: no sweeper task.
        let store = MemoryStore::new(HubConfig::new().history_ttl(TTL));
        assert!(!store.inner.swept_by_task.load(Ordering::Relaxed));
        store.publish_event("t", &Event::message("x")).unwrap();
        assert_eq!(topics(&store), 1);
        store.inner.maybe_sweep(|| now() + TTL * 2);
        assert_eq!(topics(&store), 0, "swept by the publish");
    }

    #[test]
    fn publishes_leave_the_sweeps_to_the_task_while_it_lives() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = runtime.block_on(async { MemoryStore::new(HubConfig::new().history_ttl(TTL)) });
        assert!(store.inner.swept_by_task.load(Ordering::Relaxed));
        store.publish_event("t", &Event::message("x")).unwrap();
        store.inner.maybe_sweep(|| now() + TTL * 2);
        assert_eq!(topics(&store), 1, "left to the task");
        // The task goes with its runtime (here before it ever ran): the
        // publishes sweep again.
        drop(runtime);
        assert!(!store.inner.swept_by_task.load(Ordering::Relaxed));
        store.inner.maybe_sweep(|| now() + TTL * 2);
        assert_eq!(topics(&store), 0, "swept by the publish");
    }
}
