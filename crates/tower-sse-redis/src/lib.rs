//! A Redis store and presence for [`tower-sse-hub`](tower_sse_hub): several
//! server nodes share every topic through Redis (streams for history, Pub/Sub
//! for live events), with exact `Last-Event-ID` resume on any node, and
//! presence across nodes.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), tower_sse_hub::HubError> {
//! use tower_sse_hub::Hub;
//! use tower_sse_redis::{RedisConfig, RedisStore};
//!
//! let store = RedisStore::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! let hub = Hub::with_store(store);
//! # drop(hub); Ok(()) }
//! ```
//!
//! [`RedisStore`] is [`RemoteStore`] (the
//! hub's store over any remote log) on [`RedisBroker`], this crate's
//! [`Broker`]: one Lua script per publish (the publishes queued for one server
//! share one call), a stream and a hash per topic, one Pub/Sub connection per
//! Redis server; or, with [`RedisConfig::cluster`], the same on a Redis
//! Cluster, each topic in one hash slot, with sharded Pub/Sub.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod batch;
mod channels;
mod cluster;
mod config;
mod connection;
mod presence;
mod renewals;
mod scripts;
mod server;

use std::{
    fmt,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tower_sse_hub::{
    remote::{Append, Broker, BrokerFuture, FeedSender, Range, RemoteBacked, RemoteStore},
    EventId, HubConfig, HubError, Store,
};

use self::{
    cluster::Cluster,
    connection::Conn,
    scripts::{Keys, Publish, Published, Scripts},
    server::Server,
};
pub use self::{config::RedisConfig, presence::RedisPresence};

/// A [`Store`] on Redis: any number of server nodes, each with its own
/// [`Hub`](tower_sse_hub::Hub) on a `RedisStore` with the same [`RedisConfig`], share
/// every topic, and an id handed out by any node is a valid `Last-Event-ID` on
/// every node. Put them behind any load balancer, without sticky sessions.
///
/// # How
///
/// Each topic is a Redis stream whose entry ids are the event offsets, and a
/// hash with the topic's epoch and top offset. A publish is **one round trip**:
/// one Lua script creates the epoch if the topic has none, takes the next
/// offset, appends the event (`XADD`, the stream then trimmed to the history
/// bound), renews the expiry of both keys and publishes the event on the
/// topic's channel. It resolves only once the event is stored. A busy topic's
/// keys are renewed at most once per window (a sixteenth of the TTL, at most
/// a second) per node, to the TTL plus that window, so they live at least a
/// TTL after the last publish and at most a window more; keys Redis lost are
/// renewed at once, and after a failed call or a lost Pub/Sub connection (a
/// restart, a failover) the next call renews every topic.
///
/// Concurrent publishes to one server, to any of its topics, are
/// **batched**: while up to four calls are in flight (pipelined on the connection:
/// Redis runs one while the node answers another and builds the next), the
/// publishes that arrive queue up, and the next call runs the script once for
/// all of them (up to 64, or 512 KiB), each with its own offset, idempotency
/// key, deadline and error (an event Redis refuses fails alone), and each
/// acknowledged only once that call answered. A lone publisher is sent at
/// once, without waiting for company. An error of the call itself (the connection lost, no answer)
/// fails every publish of the batch, with the error each would have got
/// alone. On Redis Cluster, a call's keys must be in one slot: the publishes
/// are batched per topic (a topic is one slot).
///
/// A node subscribes (Pub/Sub) only to the topics its clients use, and keeps
/// for each the same ring of encoded events as the in-process store, fed from
/// the channel: each event is encoded once per node and shared by the node's
/// subscribers, and resuming from a cursor is served from that copy, which
/// starts with the whole stream. A call publishes **one message per topic**
/// with all the events it stored to that topic (a lone event keeps the
/// message format of one). Contiguous offsets make a lost Pub/Sub message
/// visible: the node then reads the stream from the next offset.
///
/// # Upgrading from a version that published one message per event
///
/// This version reads both formats, so a node of this version follows the
/// topics whatever version published. A node of the previous version ignores
/// a message of several events (it is not in the format it knows): its copy
/// misses them until its next message of one event (a batch that had one
/// event for the topic), or until its Pub/Sub connection is made again, when
/// it sees the gap and reads the stream from the next offset. So during a
/// rolling upgrade, the old nodes' clients get the events published by new
/// nodes **late, never twice, never out of order**; if the stream's history
/// bound was passed meanwhile, they get the `reset` notice. Under steady
/// concurrent publishing on the new nodes, the old nodes can lag for as long
/// as the upgrade lasts: upgrade all nodes together if that matters.
///
/// # The id given to `publish_with`
///
/// The event is built before Redis gives it its offset, so the closure of
/// [`Hub::publish_with`](tower_sse_hub::Hub::publish_with) gets a stand-in id (offset
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
///   key ([`Hub::publish_once`](tower_sse_hub::Hub::publish_once)) is then exact. The
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
/// a `reset`).
///
/// With [`RedisConfig::cluster`], the URLs are seed nodes of one Redis
/// Cluster (Redis 7 or later): every key of a topic carries the topic as its
/// hash tag (`PREFIX:{TOPIC}:s`), so a topic is one hash slot, its scripts run
/// on that slot's master, and its live events go through sharded Pub/Sub
/// (`SPUBLISH`/`SSUBSCRIBE`) on that master only. Slot moves, restarts and
/// failovers are followed as that constructor's documentation says.
#[derive(Clone)]
pub struct RedisStore {
    store: RemoteStore<RedisBroker>,
}

/// The [`Broker`] on Redis that [`RedisStore`] runs on: a stream and a hash
/// per topic, published to by one Lua script, and one Pub/Sub connection per
/// server for the live feeds. Cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    backend: Backend,
    scripts: Scripts,
}

/// Where one topic lives.
enum Holder<'a> {
    Server(&'a Arc<Server>),
    Cluster(&'a Arc<Cluster>),
}

/// Where the topics live.
enum Backend {
    /// Standalone servers, each topic on one chosen by rendezvous hashing.
    Servers(Vec<Arc<Server>>),
    /// A Redis Cluster, each topic in the slot of its hash tag.
    Cluster(Arc<Cluster>),
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
        let hub = config.hub.clone();
        let timeout = config.timeout;
        let broker = RedisBroker::new(config)?;
        Ok(Self {
            store: RemoteStore::new(broker, hub, timeout),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.store.broker().inner.config
    }

    /// The Redis server (`host:port/db`) that holds `topic`; on Redis Cluster,
    /// the cluster (`cluster host:port,...`, its seed nodes): which master
    /// holds the topic's slot can change.
    pub fn server_of(&self, topic: &str) -> &str {
        self.store.broker().inner.name_of(topic)
    }

    /// The broker under the store.
    pub fn broker(&self) -> &RedisBroker {
        self.store.broker()
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("broker", self.broker())
            .field("topics", &self.topic_count())
            .finish()
    }
}

impl RedisBroker {
    /// A broker on the Redis servers of `config` (see [`RedisStore::new`]).
    ///
    /// # Errors
    ///
    /// As [`RedisStore::new`].
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
        let scripts = Scripts::new();
        let publish = Arc::new(scripts.publish.clone());
        let backend = if config.cluster {
            Backend::Cluster(Arc::new(
                Cluster::open(&config.urls, config.timeout, publish).map_err(unavailable)?,
            ))
        } else {
            let servers = config
                .urls
                .iter()
                .map(|url| Server::open(url, config.timeout, publish.clone()).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            Backend::Servers(servers)
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                backend,
                scripts,
            }),
        })
    }
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RedisBroker");
        match &self.inner.backend {
            Backend::Servers(servers) => {
                let servers: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
                f.field("servers", &servers)
            }
            Backend::Cluster(cluster) => f.field("cluster", &cluster.name),
        }
        .field("prefix", &self.inner.config.prefix)
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

/// Rendezvous hashing: the server with the highest hash of (server, topic).
fn rendezvous<'a>(servers: &'a [Arc<Server>], topic: &str) -> &'a Arc<Server> {
    let weight = |server: &&Arc<Server>| fnv(&[server.name.as_bytes(), topic.as_bytes()]);
    // `new` refuses an empty list.
    servers.iter().max_by_key(weight).unwrap_or(&servers[0])
}

impl Inner {
    /// The server (`host:port/db`), or the cluster (`cluster host:port,...`,
    /// its seeds), that holds `topic`.
    fn name_of(&self, topic: &str) -> &str {
        match &self.backend {
            Backend::Servers(servers) => &rendezvous(servers, topic).name,
            Backend::Cluster(cluster) => &cluster.name,
        }
    }

    /// A commands connection to the Redis that holds `topic`.
    async fn conn(&self, topic: &str) -> Result<Conn, HubError> {
        match &self.backend {
            Backend::Servers(servers) => {
                Ok(Conn::Server(rendezvous(servers, topic).commands.clone()))
            }
            Backend::Cluster(cluster) => cluster
                .commands()
                .await
                .map(Conn::Cluster)
                .map_err(unavailable),
        }
    }

    /// Runs a script on `topic`'s keys, on the Redis that holds them, within
    /// the timeout.
    async fn invoke<T: ::redis::FromRedisValue>(
        &self,
        topic: &str,
        invocation: &::redis::ScriptInvocation<'_>,
    ) -> Result<T, HubError> {
        let run = async {
            let mut conn = self.conn(topic).await?;
            invocation
                .invoke_async::<T>(&mut conn)
                .await
                .map_err(unavailable)
        };
        match tokio::time::timeout(self.config.timeout, run).await {
            Ok(done) => done,
            Err(_) => Err(unavailable(format!(
                "Redis at {} did not answer in time",
                self.name_of(topic)
            ))),
        }
    }

    async fn append(&self, name: &str, append: Append<'_>) -> Result<EventId, HubError> {
        let keys = Keys::new(&self.config.prefix, name);
        // The server that holds the topic, hashed once (standalone servers).
        let (server, clock, holder) = match &self.backend {
            Backend::Servers(servers) => {
                let holder = rendezvous(servers, name);
                (holder.name.as_str(), &holder.clock, Holder::Server(holder))
            }
            Backend::Cluster(cluster) => (
                cluster.name.as_str(),
                &cluster.clock,
                Holder::Cluster(cluster),
            ),
        };
        let started = tokio::time::Instant::now();
        let until = started + self.config.timeout;
        let Ok(conn) = tokio::time::timeout_at(until, self.conn(name)).await else {
            return Err(unavailable(format!(
                "Redis at {server} did not answer in time (nothing stored)"
            )));
        };
        let conn = conn?;
        const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
        let window = append
            .config
            .get_idempotency_window()
            .as_millis()
            .clamp(1, CENTURY_MS) as u64;
        let skew = match clock.skew_ms() {
            Some(skew) => skew,
            // The first publish to this server learns its clock first.
            None => {
                let mut conn = conn.clone();
                let cmd = ::redis::cmd("TIME");
                let time = cmd.query_async::<(u64, u64)>(&mut conn);
                match tokio::time::timeout_at(until, time).await {
                    Ok(Ok((secs, micros))) => {
                        clock.sample(secs * 1000 + micros / 1000, unix_ms());
                        clock.skew_ms().unwrap_or(0)
                    }
                    Ok(Err(err)) => return Err(unavailable(err)),
                    Err(_) => {
                        return Err(unavailable(format!(
                            "Redis at {server} did not answer in time (nothing stored)"
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
            event: append.event.to_vec(),
            stand_in: append.stand_in.to_owned(),
            max_len: append.config.get_history_len(),
            ttl_ms: ttl_ms(append.config),
            key: append.key.map(|key| (keys.idempotency(key), window)),
            deadline_ms: deadline,
            keys,
        };
        let stored = async {
            match holder {
                Holder::Server(server) => server.publish(publish).await,
                // A call's keys must be in one slot: batched per topic.
                Holder::Cluster(cluster) => cluster.publish(name, publish).await,
            }
        };
        match tokio::time::timeout_at(until, stored).await {
            Ok(Ok((published, redis_now))) => {
                clock.sample(redis_now, unix_ms());
                match published {
                    Published::Stored(id) => Ok(id),
                    Published::Late => Err(unavailable(format!(
                        "Redis at {server} ran the publish after its deadline: not stored"
                    ))),
                }
            }
            Ok(Err(err)) => Err(unavailable(err)),
            Err(_) => Err(unavailable(format!(
                "Redis at {server} did not answer in time (not stored, unless the \
                 connection lost the answer: retry with the same idempotency key)"
            ))),
        }
    }
}

/// A topic's retention in Redis, in ms (at least 1, at most a century).
fn ttl_ms(config: &HubConfig) -> u64 {
    const CENTURY_MS: u128 = 100 * 365 * 24 * 3600 * 1000;
    config.get_history_ttl().as_millis().clamp(1, CENTURY_MS) as u64
}

/// This node's clock, in ms since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Broker for RedisBroker {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        append: Append<'a>,
    ) -> BrokerFuture<'a, Result<EventId, HubError>> {
        Box::pin(self.inner.append(topic, append))
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: u64,
        config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<Range, HubError>> {
        Box::pin(async move {
            let keys = Keys::new(&self.inner.config.prefix, topic);
            let mut conn = self.inner.conn(topic).await?;
            let read = scripts::sync(
                &self.inner.scripts,
                &mut conn,
                &keys,
                ttl_ms(config),
                config.get_history_len(),
                from,
            );
            read.await.map_err(unavailable)
        })
    }

    fn watch(&self, topic: &str, feed: FeedSender) -> BrokerFuture<'static, Result<(), HubError>> {
        let keys = Keys::new(&self.inner.config.prefix, topic);
        let confirmed = match &self.inner.backend {
            Backend::Servers(servers) => rendezvous(servers, topic)
                .channels
                .subscribe(&keys.channel, feed),
            Backend::Cluster(cluster) => cluster.channels.subscribe(&keys.channel, feed),
        };
        Box::pin(async move {
            confirmed
                .await
                .map_err(|_| unavailable("the store was dropped"))
        })
    }

    fn unwatch(&self, topic: &str) {
        let keys = Keys::new(&self.inner.config.prefix, topic);
        match &self.inner.backend {
            Backend::Servers(servers) => rendezvous(servers, topic)
                .channels
                .unsubscribe(&keys.channel),
            Backend::Cluster(cluster) => cluster.channels.unsubscribe(&keys.channel),
        }
    }

    fn renew<'a>(
        &'a self,
        topic: &'a str,
        config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let keys = Keys::new(&self.inner.config.prefix, topic);
            let mut conn = self.inner.conn(topic).await?;
            scripts::renew(&self.inner.scripts, &mut conn, &keys, ttl_ms(config))
                .await
                .map_err(unavailable)
        })
    }

    fn server_of(&self, topic: &str) -> String {
        format!("Redis at {}", self.inner.name_of(topic))
    }
}

impl RemoteBacked for RedisStore {
    type Broker = RedisBroker;

    fn remote(&self) -> &RemoteStore<RedisBroker> {
        &self.store
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

/// The README's Rust snippets, compiled (and run, where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
