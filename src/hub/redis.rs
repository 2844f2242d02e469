//! [`RedisStore`]: a hub shared by several server nodes through Redis: streams
//! for history, Pub/Sub for live events.

mod config;
mod mirror;
mod presence;
mod scripts;
mod shard;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::{mpsc, watch};

pub use self::{config::RedisConfig, presence::RedisPresence};
use self::{
    scripts::{Keys, Publish, Published, Scripts},
    shard::{Feed, Shard},
};
use super::{
    store::{HubError, MakeEvent, Store, StoreFuture},
    topic::Topic,
    Epoch, EventId, HubConfig, Subscriber,
};

/// A [`Store`] on Redis: any number of server nodes, each with its own
/// [`Hub`](super::Hub) on a `RedisStore` with the same [`RedisConfig`], share
/// every topic, and an id handed out by any node is a valid `Last-Event-ID` on
/// every node. Put them behind any load balancer, without sticky sessions.
///
/// # How
///
/// Each topic is a Redis stream whose entry ids are the event offsets, and a
/// hash with the topic's epoch and top offset. A publish is **one round trip**:
/// one Lua script creates the epoch if the topic has none, takes the next
/// offset, appends the event (`XADD` with `MAXLEN`), renews the expiry of both
/// keys and publishes the event on the topic's channel. It resolves only once
/// the event is stored.
///
/// A node subscribes (Pub/Sub) only to the topics its clients use, and keeps
/// for each the same ring of encoded events as the in-process store, fed from
/// the channel: each event is encoded once per node and shared by the node's
/// subscribers, and resuming from a cursor is served from that copy, which
/// starts with the whole stream. Contiguous offsets make a lost Pub/Sub
/// message visible: the node then reads the stream from the next offset.
///
/// # The id given to `publish_with`
///
/// The event is built before Redis gives it its offset, so the closure of
/// [`Hub::publish_with`](super::Hub::publish_with) gets a stand-in id (offset
/// `u64::MAX`, a random epoch) and every occurrence of its text in the encoded
/// event is replaced by the real id where the event is delivered. Use the id
/// through its text (`to_string`, `format!`), as the chat example does, not
/// through [`EventId::offset`].
///
/// # Faults
///
/// What each fault costs a client (`docs/guide.md` has the whole table):
///
/// - **Redis unreachable, paused or slow**: publishes and first subscriptions
///   to a topic fail with [`HubError::Unavailable`] after
///   [`RedisConfig::timeout`]; open streams stay open and miss nothing. A
///   publish that timed out is not stored later: the script refuses to run
///   past half the timeout on Redis's clock (a paused Redis that gets to it
///   after the pause stores nothing). Only when the connection drops the
///   answer of a script that ran is the outcome unknown; a retry with the same
///   key ([`Hub::publish_once`](super::Hub::publish_once)) is then exact. The
///   node reconnects by itself with backoff, subscribes again and reads from
///   the streams what it missed.
/// - **Redis lost its data** (restarted without persistence, flushed): the
///   topic gets a new epoch. Open streams **stay open**: each gets the `reset`
///   notice in-band, then the new epoch's events, so a Redis restart makes no
///   client reconnect, and nothing accepted after the restart is missed. A
///   client that reconnects with an id of the lost epoch gets `reset` and the
///   new epoch's history from its start. What was accepted before the restart
///   and not yet delivered to a node is lost with Redis's data (the `reset`
///   says so).
/// - **A quiet topic** does not expire while any node has subscribers to it:
///   each node renews its topics' retention every quarter of the TTL.
///
/// # Several Redis servers, and Redis Cluster
///
/// With several URLs, each topic lives on one server chosen by rendezvous
/// hashing of its name, the same on every node whatever the order of the URLs.
/// Adding a server moves only the topics that hash to it (their cursors then get
/// a `reset`). Every key of a topic carries the topic as its hash tag
/// (`PREFIX:{TOPIC}:s`), so the script is valid on Redis Cluster, but this
/// store speaks to standalone servers: point it at several standalone servers
/// (or primaries with replicas behind a failover proxy), not at a cluster.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    hub: Arc<HubConfig>,
    shards: Vec<Arc<Shard>>,
    scripts: Scripts,
    mirrors: Mutex<HashMap<Arc<str>, Mirror>>,
    serial: AtomicU64,
    /// Set by `close`; read under the mirrors' lock before a copy is started,
    /// and by a feeder before it makes its topic, which it then closes.
    closed: AtomicBool,
}

/// This node's copy of one topic, as the store's map holds it.
struct Mirror {
    /// Tells this copy's feeder from a later one's.
    serial: u64,
    handle: Handle,
}

/// What a subscribe needs of a copy.
#[derive(Clone)]
struct Handle {
    topic: watch::Receiver<Option<Arc<Topic>>>,
    /// The feeder's queue: a subscribe with a cursor of another epoch asks it
    /// to read the topic again.
    feed: mpsc::UnboundedSender<Feed>,
    /// Counts the feeder's completed reads of the topic.
    syncs: Arc<AtomicU64>,
    /// A read was asked for and not started yet: subscribes with cursors of
    /// other epochs (which clients choose) ask for one read, not one each.
    asked: Arc<AtomicBool>,
}

fn unavailable(message: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HubError {
    HubError::Unavailable(message.into())
}

impl RedisStore {
    /// A store on the Redis servers of `config`. Connects lazily: a store made
    /// while Redis is down works once Redis is up.
    ///
    /// # Errors
    ///
    /// [`HubError::Unavailable`] when `config` has no URL or an invalid one, a
    /// prefix with `{` or `}`, or when called outside a tokio runtime (the
    /// store spawns its connection tasks on it).
    pub fn new(config: RedisConfig) -> Result<Self, HubError> {
        if config.urls.is_empty() {
            return Err(unavailable("no Redis URL given"));
        }
        if config.prefix.contains(['{', '}']) {
            return Err(unavailable("the key prefix must not contain `{` or `}`"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(unavailable(
                "a RedisStore must be made inside a tokio runtime",
            ));
        }
        let shards = config
            .urls
            .iter()
            .map(|url| Shard::open(url, config.timeout).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        Ok(Self {
            inner: Arc::new(Inner {
                hub: Arc::new(config.hub.clone()),
                config,
                shards,
                scripts: Scripts::new(),
                mirrors: Mutex::new(HashMap::new()),
                serial: AtomicU64::new(0),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The Redis server (`host:port/db`) that holds `topic`.
    pub fn server_of(&self, topic: &str) -> &str {
        &self.inner.shard(topic).name
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self.inner.shards.iter().map(|s| s.name.as_str()).collect();
        f.debug_struct("RedisStore")
            .field("servers", &servers)
            .field("prefix", &self.inner.config.prefix)
            .field("topics", &self.topic_count())
            .finish()
    }
}

/// FNV-1a, 64 bits, finalised: the same on every node and every build, unlike
/// `std`'s hasher.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for part in parts {
        for &byte in *part {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        hash = (hash ^ 0xff).wrapping_mul(0x100_0000_01b3);
    }
    // MurmurHash3's finaliser: FNV alone keeps the order of two hashes whose
    // inputs differ only early (two servers' names), so one server would win
    // every topic.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl Inner {
    /// Rendezvous hashing: the server with the highest hash of (server, topic).
    fn shard(&self, topic: &str) -> &Arc<Shard> {
        let weight = |shard: &&Arc<Shard>| fnv(&[shard.name.as_bytes(), topic.as_bytes()]);
        // `new` refuses an empty list.
        self.shards
            .iter()
            .max_by_key(weight)
            .unwrap_or(&self.shards[0])
    }

    fn ttl_ms(&self) -> u64 {
        const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
        self.hub.get_history_ttl().as_millis().clamp(1, CENTURY_MS) as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Mirror>> {
        self.mirrors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node's copy of `name`, started if missing: its topic (once read),
    /// its feeder's queue and its count of reads.
    fn mirror(self: &Arc<Self>, name: &str) -> Result<Handle, HubError> {
        let mut map = self.lock();
        if let Some(m) = map.get(name) {
            return Ok(m.handle.clone());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(HubError::Closed);
        }
        let name: Arc<str> = Arc::from(name);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let keys = Keys::new(&self.config.prefix, &name);
        let shard = self.shard(&name).clone();
        let syncs = Arc::new(AtomicU64::new(0));
        let asked = Arc::new(AtomicBool::new(false));
        let (topic, feed) = mirror::spawn(
            Arc::downgrade(self),
            shard,
            name.clone(),
            keys,
            serial,
            (syncs.clone(), asked.clone()),
        );
        let handle = Handle {
            topic,
            feed,
            syncs,
            asked,
        };
        map.insert(
            name,
            Mirror {
                serial,
                handle: handle.clone(),
            },
        );
        Ok(handle)
    }

    /// Lets go of the copy of `name` made by feeder `serial` if it has no
    /// subscribers; returns whether it did (the feeder then ends).
    fn release(&self, name: &str, serial: u64, topic: Option<&Topic>) -> bool {
        let mut map = self.lock();
        if map.get(name).is_none_or(|m| m.serial != serial) {
            return true; // replaced: this feeder is no longer used
        }
        if topic.is_some_and(|t| t.try_remove(None).is_none()) {
            return false;
        }
        map.remove(name);
        // Under the map's lock, so that a new copy of the topic subscribes after.
        let keys = Keys::new(&self.config.prefix, name);
        self.shard(name).unsubscribe(&keys.channel);
        true
    }

    fn existing(&self, name: &str) -> Option<Arc<Topic>> {
        self.lock()
            .get(name)
            .and_then(|m| m.handle.topic.borrow().clone())
    }

    async fn publish(
        &self,
        name: &str,
        key: Option<&str>,
        make: MakeEvent<'_>,
    ) -> Result<EventId, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        super::store::check_key(key)?;
        let stand_in = EventId::new(u64::MAX, Epoch::random());
        let text = stand_in.to_string();
        let event = super::store::encode_with_id(make(&stand_in), &stand_in);
        let keys = Keys::new(&self.config.prefix, name);
        let shard = self.shard(name);
        let mut conn = shard.commands.clone();
        const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
        let window = self
            .hub
            .get_idempotency_window()
            .as_millis()
            .clamp(1, CENTURY_MS) as u64;
        let started = tokio::time::Instant::now();
        let skew = match shard.clock.skew_ms() {
            Some(skew) => skew,
            // The first publish to this server learns its clock first.
            None => {
                let mut conn = shard.commands.clone();
                let cmd = ::redis::cmd("TIME");
                let time = cmd.query_async::<(u64, u64)>(&mut conn);
                match tokio::time::timeout(self.config.timeout, time).await {
                    Ok(Ok((secs, micros))) => {
                        shard.clock.sample(secs * 1000 + micros / 1000, unix_ms());
                        shard.clock.skew_ms().unwrap_or(0)
                    }
                    Ok(Err(err)) => return Err(unavailable(err)),
                    Err(_) => {
                        return Err(unavailable(format!(
                            "Redis at {} did not answer in time (nothing stored)",
                            shard.name
                        )))
                    }
                }
            }
        };
        // Redis must not store it after this node has given up on it: the
        // script refuses to run past half the timeout (on Redis's clock, from
        // the best known skew, which is never too high), and this node waits
        // the whole timeout for the answer, so an answer that does not come
        // means nothing was stored unless the connection itself lost it (then
        // a retry with the same key is exact). A round trip longer than half
        // the timeout makes publishes fail rather than risk that.
        let deadline = unix_ms()
            .saturating_add_signed(skew)
            .saturating_add((self.config.timeout / 2).as_millis() as u64);
        let publish = Publish {
            event: event.as_bytes(),
            stand_in: &text,
            max_len: self.hub.get_history_len(),
            ttl_ms: self.ttl_ms(),
            key: key.map(|key| (key, window)),
            deadline_ms: deadline,
        };
        let stored = scripts::publish(&self.scripts, &mut conn, &keys, &publish);
        let until = started + self.config.timeout;
        match tokio::time::timeout_at(until, stored).await {
            Ok(Ok((published, redis_now))) => {
                shard.clock.sample(redis_now, unix_ms());
                match published {
                    Published::Stored(id) => Ok(id),
                    Published::Late => Err(unavailable(format!(
                        "Redis at {} ran the publish after its deadline: not stored",
                        shard.name
                    ))),
                }
            }
            Ok(Err(err)) => Err(unavailable(err)),
            Err(_) => Err(unavailable(format!(
                "Redis at {} did not answer in time (not stored, unless the \
                 connection lost the answer: retry with the same idempotency key)",
                shard.name
            ))),
        }
    }

    async fn subscribe(
        self: &Arc<Self>,
        name: &str,
        cursor: Option<&str>,
    ) -> Result<Subscriber, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        let mut deadline = tokio::time::Instant::now() + 2 * self.config.timeout;
        let mut resynced = false;
        loop {
            let Handle {
                topic: mut rx,
                feed,
                syncs,
                asked,
            } = self.mirror(name)?;
            let topic = match tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await
            {
                Err(_) => {
                    let server = &self.shard(name).name;
                    return Err(unavailable(format!(
                        "could not read the topic from Redis at {server}"
                    )));
                }
                Ok(Err(_)) => continue, // its feeder ended: look again
                Ok(Ok(topic)) => topic.clone(),
            };
            let Some(topic) = topic else { continue };
            let parsed = cursor.and_then(|c| c.parse::<EventId>().ok());
            // A cursor of another epoch: the copy may be the stale one (Redis
            // lost the topic and another node already serves the new epoch).
            // Have the copy read the topic again (once) and judge the cursor
            // against what it finds.
            if let Some(id) = parsed.filter(|id| id.epoch() != topic.position().epoch()) {
                if !resynced {
                    resynced = true;
                    let before = syncs.load(Ordering::Acquire);
                    let sent =
                        asked.swap(true, Ordering::AcqRel) || feed.send(Feed::Resync).is_ok();
                    if sent {
                        let until = tokio::time::Instant::now() + CATCH_UP;
                        while syncs.load(Ordering::Acquire) == before
                            && topic.position().epoch() != id.epoch()
                            && tokio::time::Instant::now() < until
                        {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            }
            // An id just acknowledged (by this node or another) may reach this
            // node's copy a moment after Redis stored it: wait for the copy to
            // catch up rather than treat the cursor as one from the future.
            let ahead = parsed.filter(|id| id.epoch() == topic.position().epoch());
            let mut waited = false;
            if let Some(id) = ahead {
                let catch_up = tokio::time::Instant::now() + CATCH_UP;
                while topic.position().offset() < id.offset()
                    && tokio::time::Instant::now() < catch_up
                {
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let max_replay = self.hub.get_max_replay_bytes();
            if let Some(joined) = topic.subscribe_within(cursor, max_replay) {
                return Ok(Subscriber::new(topic, joined, self.hub.clone()));
            }
            if waited {
                // The copy was released while this waited: look it up afresh.
                deadline = tokio::time::Instant::now() + 2 * self.config.timeout;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// How long a subscribe waits for this node's copy of a topic to reach a
/// cursor of the topic's epoch that it has not seen yet (an id acknowledged a
/// moment ago); a cursor still ahead after that gets the `reset` notice.
const CATCH_UP: Duration = Duration::from_millis(250);

/// This node's clock, in ms since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Store for RedisStore {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: MakeEvent<'a>,
    ) -> StoreFuture<'a, Result<EventId, HubError>> {
        Box::pin(self.inner.publish(topic, key, make))
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Subscriber, HubError>> {
        Box::pin(self.inner.subscribe(topic, last_event_id))
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.inner
            .existing(topic)
            .map_or(0, |topic| topic.subscriber_count())
    }

    fn topic_count(&self) -> usize {
        self.inner.lock().len()
    }

    fn position(&self, topic: &str) -> Option<EventId> {
        self.inner.existing(topic).map(|topic| topic.position())
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let topics: Vec<Arc<Topic>> = self
            .inner
            .lock()
            .values()
            .filter_map(|m| m.handle.topic.borrow().clone())
            .collect();
        for topic in topics {
            topic
                .close()
                .into_iter()
                .flatten()
                .for_each(std::task::Waker::wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        // Nodes built apart must agree on where a topic lives.
        assert_eq!(fnv(&[b"a"]), fnv(&[b"a"]));
        assert_ne!(fnv(&[b"ab", b"c"]), fnv(&[b"a", b"bc"]));
        assert_eq!(fnv(&[b"127.0.0.1:6379/0", b"room"]), PINNED);
    }

    /// Changing it would move every topic of a running cluster.
    const PINNED: u64 = 9_761_810_612_769_013_620;

    #[test]
    fn rendezvous_spreads_servers_whose_names_differ_little() {
        let servers = ["127.0.0.1:6379/0", "127.0.0.1:6380/0", "127.0.0.1:6381/0"];
        let mut counts = [0; 3];
        for i in 0..3000 {
            let topic = format!("room-{i}");
            let best = (0..3)
                .max_by_key(|&s| fnv(&[servers[s].as_bytes(), topic.as_bytes()]))
                .unwrap();
            counts[best] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
    }
}
