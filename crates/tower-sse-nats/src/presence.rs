//! [`NatsPresence`]: presence across the nodes of a cluster, on JetStream
//! key-value buckets (layout in its docs).
//!
//! The counts, their renewal and the queues are the hub's
//! [`RemotePresence`]; this module is its [`PresenceBackend`] on JetStream:
//! the buckets, the compare-and-set writes, the leases and the takes.

use std::{collections::HashMap, fmt, time::Duration};

use async_nats::jetstream::{
    self, kv,
    stream::{self, LastRawMessageErrorKind},
};
use bytes::Bytes;
use futures_util::StreamExt;

use tower_sse_hub::{
    remote::{PresenceBackend, RemotePresence, Taken},
    Epoch, HubError, StoreFuture,
};

use crate::{
    broker::{connect, NatsBroker},
    config::{bounded, topic_token, unavailable, NatsConfig},
};

/// How many TTLs the entries taken from a lapsed node are remembered.
const RESTORE_TTLS: u32 = 10;
/// Compare-and-set attempts of one write before giving up (till next round).
const CAS_TRIES: usize = 5;

/// [`Presence`](tower_sse_hub::Presence) across nodes on NATS JetStream
/// key-value buckets. Members of a node that stops renewing (it crashed)
/// expire after the TTL, and [`expired`](tower_sse_hub::Presence::expired)
/// hands each of their connections to one surviving node; a node that was
/// only paused hands those still connected out by
/// [`restored`](tower_sse_hub::Presence::restored).
///
/// # Layout
///
/// Two buckets per prefix:
///
/// - `PREFIX_presence`, one key per (topic, node, member):
///   `m.TOPIC.NODE.MEMBER` (topic and member as `x`+hex or `h`+SHA-256, like
///   stream names) → `"COUNT TAKEN NAME"`: the node's connections of the
///   member, how many of them a survivor took as gone (announced their
///   `leave`) and not yet handed back, and the member's name. Entries expire
///   ten TTLs after their last write: a live node rewrites its own every
///   third of the TTL, so only those of dead nodes go (what was taken from a
///   node is so remembered for ten TTLs, as in the Redis version).
/// - `PREFIX_leases`, one key per live node, rewritten every third of the TTL,
///   expiring (server side, no clock involved) one TTL after its last write.
///
/// Every write of a member's key is a compare-and-set on its revision. A node
/// writes its own counts (and zeroes `TAKEN`, counting what it finds there as
/// restored); a survivor takes a lapsed node's entry by setting `COUNT` to 0
/// and adding it to `TAKEN`, at the revision it read: of two survivors, and of
/// a survivor and the node coming back, exactly one write wins.
///
/// # Faults
///
/// As with the Redis version: each node's own counts, in memory, are the
/// truth; it re-asserts them and renews its lease every third of the TTL, so a
/// failed `join`/`leave` write (returned as an error, but counted) is repaired
/// at the next round. Writes are compare-and-set, so a late write never
/// overwrites a newer one. A node that cannot reach NATS for longer than the
/// TTL has its members taken by the next node to look; when it is back, its
/// first round re-adds those still connected and hands them out as restored
/// (those taken more than ten TTLs before are re-added silently: their record
/// expired). Expired entries taken are queued until `expired` returns them.
/// An answer lost on its way back after a take succeeded loses that take's
/// `leave` (`members` is still right).
///
/// The lease bucket's TTL is set by the first node that makes it; nodes
/// sharing a prefix must use the same TTL.
#[derive(Clone)]
pub struct NatsPresence {
    inner: RemotePresence<Inner>,
}

struct Buckets {
    members: kv::Store,
    leases: kv::Store,
    /// The members bucket's stream, for listing a topic's keys.
    stream: String,
}

/// The [`PresenceBackend`] on JetStream: the buckets, the lease, the writes
/// and the takes.
struct Inner {
    config: NatsConfig,
    server: String,
    js: jetstream::Context,
    /// This node's name: its lease's key, and part of its members' keys.
    node: String,
    ttl: Duration,
    /// Opened (or made) at the first use.
    buckets: tokio::sync::OnceCell<Buckets>,
}

/// Shows as the presence it is under, the only one there is.
impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsPresence")
            .field("server", &self.server)
            .field("node", &self.node)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl fmt::Debug for NatsPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.inner.backend(), f)
    }
}

/// One member entry as read.
struct Found {
    key: String,
    node: String,
    member: String,
    count: usize,
    taken: usize,
    revision: u64,
}

/// `"COUNT TAKEN NAME"`; anything else reads as nothing.
fn parse(value: &[u8]) -> Option<(usize, usize, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ' ');
    let count = parts.next()?.parse().ok()?;
    let taken = parts.next()?.parse().ok()?;
    Some((count, taken, parts.next()?.to_owned()))
}

impl NatsPresence {
    /// Presence on the servers of `config`, with its own connection; entries
    /// expire `ttl` (at least 100 ms) after their node last renewed them. See
    /// [`with_broker`](Self::with_broker).
    pub async fn connect(config: NatsConfig, ttl: Duration) -> Result<Self, HubError> {
        let (client, _) = connect(&config).await?;
        let mut js = jetstream::new(client);
        js.set_timeout(config.get_timeout());
        Ok(Self::make(config, js, ttl))
    }

    /// Presence on `broker`'s connection and prefix. Renews (and re-asserts
    /// this node's entries) every third of `ttl` from a task that ends when
    /// the presence is dropped. Needs a tokio runtime.
    pub fn with_broker(broker: &NatsBroker, ttl: Duration) -> Self {
        let (config, js) = broker.parts();
        Self::make(config, js, ttl)
    }

    fn make(config: NatsConfig, js: jetstream::Context, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(100));
        let backend = Inner {
            server: config.server(),
            config,
            js,
            node: Epoch::random().to_string(),
            ttl,
            buckets: tokio::sync::OnceCell::new(),
        };
        Self {
            inner: RemotePresence::new(backend, ttl),
        }
    }
}

impl Inner {
    async fn buckets(&self) -> Result<&Buckets, HubError> {
        self.buckets
            .get_or_try_init(|| async {
                let prefix = self.config.get_prefix();
                let members = self
                    .bucket(format!("{prefix}_presence"), self.ttl * RESTORE_TTLS)
                    .await?;
                let leases = self.bucket(format!("{prefix}_leases"), self.ttl).await?;
                Ok(Buckets {
                    members,
                    leases,
                    stream: format!("KV_{prefix}_presence"),
                })
            })
            .await
    }

    async fn bucket(&self, name: String, max_age: Duration) -> Result<kv::Store, HubError> {
        let timeout = self.config.get_timeout();
        if let Ok(Ok(store)) =
            tokio::time::timeout(timeout, self.js.get_key_value(name.clone())).await
        {
            return Ok(store);
        }
        // The bucket's stream, made as a key-value bucket is (the client's
        // `create_key_value` first asks for account details that a 2.9
        // server does not give in the form it expects).
        let config = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: self.config.storage(),
            num_replicas: self.config.get_replicas(),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        let made = tokio::time::timeout(timeout, self.js.create_stream(config)).await;
        let made = match made {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer in time".to_owned()),
        };
        // Made by another node meanwhile (maybe with another TTL) is fine.
        match tokio::time::timeout(timeout, self.js.get_key_value(name.clone())).await {
            Ok(Ok(store)) => Ok(store),
            Ok(Err(e)) => Err(unavailable(
                &self.server,
                format_args!("opening bucket {name}: {e} (making it: {made:?})"),
            )),
            Err(_) => Err(unavailable(
                &self.server,
                format_args!("opening bucket {name}: no answer in time"),
            )),
        }
    }

    fn key(&self, topic: &str, node: &str, member: &str) -> String {
        format!("m.{}.{node}.{}", topic_token(topic), topic_token(member))
    }

    /// Renews this node's lease.
    async fn lease(&self) -> Result<(), HubError> {
        let buckets = self.buckets().await?;
        bounded(
            &self.server,
            self.config.get_timeout(),
            "renewing the lease",
            buckets.leases.put(&self.node, Bytes::new()),
        )
        .await
        .map(drop)
    }

    /// Renews the lease, then writes this node's `count` of `member` by
    /// compare-and-set (with the topic's counts locked); returns how many of
    /// its connections were taken.
    async fn put(&self, topic: &str, member: &str, count: usize) -> Result<usize, HubError> {
        self.lease().await?;
        let buckets = self.buckets().await?;
        let key = self.key(topic, &self.node, member);
        let timeout = self.config.get_timeout();
        let value = Bytes::from(format!("{count} 0 {member}"));
        for _ in 0..CAS_TRIES {
            let entry = bounded(
                &self.server,
                timeout,
                "reading presence",
                buckets.members.entry(key.clone()),
            )
            .await?;
            let (revision, taken) = match entry {
                Some(e) if e.operation == kv::Operation::Put => {
                    (e.revision, parse(&e.value).map_or(0, |(_, taken, _)| taken))
                }
                Some(e) => (e.revision, 0),
                None => (0, 0),
            };
            let written = if revision == 0 {
                tokio::time::timeout(timeout, buckets.members.create(&key, value.clone()))
                    .await
                    .map(|r| {
                        r.map_err(|e| {
                            (
                                e.kind() == kv::CreateErrorKind::AlreadyExists,
                                e.to_string(),
                            )
                        })
                    })
            } else {
                tokio::time::timeout(
                    timeout,
                    buckets.members.update(&key, value.clone(), revision),
                )
                .await
                .map(|r| {
                    r.map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    })
                })
            };
            match written {
                Ok(Ok(_)) => return Ok(taken),
                Ok(Err((true, _))) => continue,
                Ok(Err((false, e))) => {
                    return Err(unavailable(
                        &self.server,
                        format_args!("writing presence: {e}"),
                    ))
                }
                Err(_) => {
                    return Err(unavailable(
                        &self.server,
                        "writing presence: no answer in time",
                    ))
                }
            }
        }
        Err(unavailable(
            &self.server,
            "writing presence: the entry kept changing",
        ))
    }

    /// Every member entry of `topic`, as last written.
    async fn list(&self, topic: &str) -> Result<Vec<Found>, HubError> {
        let buckets = self.buckets().await?;
        let prefix = format!("$KV.{}_presence.", self.config.get_prefix());
        let filter = format!("{prefix}m.{}.>", topic_token(topic));
        // The keys (subjects) first, then the last value of each: a consumer
        // would have to guess when it has seen them all while they change.
        let work = async {
            let stream = self
                .js
                .get_stream_no_info(&buckets.stream)
                .await
                .map_err(|e| e.to_string())?;
            let mut subjects = Vec::new();
            let mut listed = stream
                .info_with_subjects(&filter)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(subject) = listed.next().await {
                subjects.push(subject.map_err(|e| e.to_string())?.0);
            }
            let stream = &stream;
            let messages: Vec<_> = futures_util::stream::iter(subjects)
                .map(
                    |subject| async move { stream.get_last_raw_message_by_subject(&subject).await },
                )
                .buffer_unordered(16)
                .collect()
                .await;
            let mut found = Vec::new();
            for message in messages {
                let message = match message {
                    Ok(message) => message,
                    // Gone since it was listed (expired, or purged): nothing.
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                    Err(e) => return Err(e.to_string()),
                };
                let deleted = message.headers.get("KV-Operation").is_some();
                let key = message.subject.strip_prefix(prefix.as_str()).unwrap_or("");
                let node = key.split('.').nth(2).unwrap_or("").to_owned();
                if let (false, Some((count, taken, member))) = (deleted, parse(&message.payload)) {
                    found.push(Found {
                        key: key.to_owned(),
                        node,
                        member,
                        count,
                        taken,
                        revision: message.sequence,
                    });
                }
            }
            Ok::<_, String>(found)
        };
        bounded(
            &self.server,
            self.config.get_timeout(),
            "listing presence",
            work,
        )
        .await
    }

    /// Lists `topic`, takes the entries of lapsed nodes (queued in `taken`
    /// as each take succeeds), returns the live members, one entry per
    /// connection.
    async fn take(&self, topic: &str, taken: Taken<'_>) -> Result<Vec<String>, HubError> {
        let found = self.list(topic).await?;
        let buckets = self.buckets().await?;
        let timeout = self.config.get_timeout();
        let mut leased: HashMap<String, bool> = HashMap::new();
        let mut alive = Vec::new();
        for entry in found {
            if entry.count == 0 {
                continue;
            }
            let live = if entry.node == self.node {
                true
            } else if let Some(live) = leased.get(&entry.node) {
                *live
            } else {
                let lease = bounded(
                    &self.server,
                    timeout,
                    "reading a lease",
                    buckets.leases.entry(entry.node.clone()),
                )
                .await?;
                let live = lease.is_some_and(|e| e.operation == kv::Operation::Put);
                leased.insert(entry.node.clone(), live);
                live
            };
            if live {
                alive.extend(std::iter::repeat_n(entry.member, entry.count));
                continue;
            }
            let value = Bytes::from(format!(
                "0 {} {}",
                entry.taken.saturating_add(entry.count),
                entry.member
            ));
            let took = tokio::time::timeout(
                timeout,
                buckets.members.update(&entry.key, value, entry.revision),
            )
            .await;
            // Lost the race (another survivor, or the node came back): not ours.
            if let Ok(Ok(_)) = took {
                taken.extend(std::iter::repeat_n(entry.member, entry.count));
            }
        }
        Ok(alive)
    }
}

impl PresenceBackend for Inner {
    fn renew(&self) -> StoreFuture<'_, Result<(), HubError>> {
        Box::pin(self.lease())
    }

    fn write<'a>(
        &'a self,
        topic: &'a str,
        (member, count): (&'a str, usize),
    ) -> StoreFuture<'a, Result<usize, HubError>> {
        Box::pin(self.put(topic, member, count))
    }

    fn look<'a>(
        &'a self,
        topic: &'a str,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(self.take(topic, taken))
    }
}

tower_sse_hub::remote_presence!(NatsPresence, inner);
