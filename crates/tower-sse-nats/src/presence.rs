//! [`NatsPresence`]: presence across the nodes of a cluster, on JetStream
//! key-value buckets (layout in its docs).
//!
//! The counts, their renewal and the queues are the hub's
//! [`RemotePresence`]; this module is its [`PresenceBackend`] on JetStream:
//! the buckets, the compare-and-set writes, the leases and the takes.

use std::{
    collections::HashMap,
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self, kv,
    stream::{self, LastRawMessageErrorKind},
};
use bytes::Bytes;
use futures_util::StreamExt;

use tower_sse_hub::{
    remote::{PresenceBackend, RemotePresence, Taken, Written},
    Epoch, HubError, Roster, StoreFuture,
};

use crate::{
    broker::{connect, NatsBroker},
    config::{bounded, topic_token, unavailable, NatsConfig},
};

/// How many TTLs the entries taken from a lapsed node are remembered.
const RESTORE_TTLS: u32 = 10;
/// Compare-and-set attempts of one write before giving up (till next round).
const CAS_TRIES: usize = 5;
/// How many TTLs a node's entries in a topic go without being rewritten all
/// at once, when nothing was taken: well within the bucket's age limit
/// (`RESTORE_TTLS`), which a write of one entry renews for that entry only.
const REWRITE_TTLS: u32 = 3;

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
///   ten TTLs after their last write: a live node rewrites its own at least
///   every three TTLs, so only those of dead nodes go (what was taken from a
///   node is so remembered for ten TTLs, as in the Redis version).
///   The same bucket holds `c.TOPIC.NODE` → `"TOTAL"`, the node's
///   connections in the topic (the sum of its counts), written by the node
///   before each member's entry, and set to `"-"` by the survivor that took a
///   lapsed node's entries: a topic is counted from these, one per node.
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
/// truth; it renews its lease every third of the TTL, and re-asserts its
/// entries in a topic when they were taken, and every three TTLs; a failed
/// `join`/`leave` write (returned as an error, but counted) is repaired at the
/// next round. Writes are compare-and-set, so a late write never
/// overwrites a newer one. A node that cannot reach NATS for longer than the
/// TTL has its members taken by the next node to look; when it is back, its
/// first round re-adds those still connected and hands them out as restored
/// (those taken more than ten TTLs before are re-added silently: their record
/// expired); it finds itself taken by its total marked so, or by a member's
/// entry taken. (If it wrote its total between a survivor's take of its
/// entries and the mark, it re-adds them at its next full rewrite, within
/// three TTLs.) Expired entries taken are queued until `expired` returns them.
/// An answer lost on its way back after a take succeeded loses that take's
/// `leave` (`members` is still right).
///
/// The lease bucket's TTL is set by the first node that makes it; nodes
/// sharing a prefix must use the same TTL.
///
/// # Cost
///
/// A key-value bucket has no per-key TTL (before NATS 2.11) and no scripts,
/// so this presence does what the model allows:
///
/// - `join`/`leave`: four requests (lease, total, the member's entry read and
///   compare-and-set), whatever the size of the room.
/// - A renewal, every third of the TTL: the lease, and one read per topic
///   (this node's total there, to find it taken); every third TTL, and
///   whenever its total was taken, every entry of this node in the topic is
///   rewritten (O(its members)), since the bucket's age limit would expire
///   them otherwise. The Redis version never rewrites them while Redis has
///   them.
/// - [`roster`](tower_sse_hub::Presence::roster) (and `expired`, which asks
///   for no names): one listing of the topic's totals, a read of each (and
///   of each node's lease): O(nodes). Names: the entries of live nodes, node
///   by node, read until `limit` (the listing of a node's keys is as big as
///   the node's part of the room, done by the server; at most about `limit`
///   values are read). Taking a lapsed node's entries reads its entries once.
/// - `members`: every entry.
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
    /// This node's total key in each topic where it has entries.
    mine: Mutex<HashMap<String, Mine>>,
}

/// This node's total key in a topic, as it last wrote it.
#[derive(Clone, Copy)]
struct Mine {
    /// The key's revision after that write: another one means a survivor
    /// marked it taken.
    revision: u64,
    /// When this node last rewrote all its entries there, if since it wrote
    /// this key.
    rewritten: Option<Instant>,
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
            mine: Mutex::new(HashMap::new()),
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

    /// The key of `node`'s total in `topic`.
    fn total_key(&self, topic: &str, node: &str) -> String {
        format!("c.{}.{node}", topic_token(topic))
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

    /// What this node last wrote of its total in `topic`.
    fn mine(&self, topic: &str) -> Option<Mine> {
        self.mine.lock().ok()?.get(topic).copied()
    }

    /// Notes what this node wrote of its total in `topic` (`None`: it has
    /// none left there).
    fn remember(&self, topic: &str, mine: Option<Mine>) {
        if let Ok(mut map) = self.mine.lock() {
            match mine {
                Some(mine) => {
                    map.insert(topic.to_owned(), mine);
                }
                None => {
                    map.remove(topic);
                }
            }
        }
    }

    /// Writes this node's `total` in `topic`: by compare-and-set at the
    /// revision it last wrote, then (if that failed: a survivor marked it
    /// taken) plainly. Returns whether the key was as this node left it.
    async fn put_total(&self, topic: &str, total: usize) -> Result<bool, HubError> {
        let buckets = self.buckets().await?;
        let timeout = self.config.get_timeout();
        let key = self.total_key(topic, &self.node);
        let value = Bytes::from(total.to_string());
        let mine = self.mine(topic);
        if let Some(mine) = mine {
            let updated = tokio::time::timeout(
                timeout,
                buckets.members.update(&key, value.clone(), mine.revision),
            )
            .await;
            match updated {
                Ok(Ok(revision)) => {
                    self.remember(topic, (total > 0).then_some(Mine { revision, ..mine }));
                    return Ok(true);
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Ok(Err(e)) => {
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
        let revision = bounded(
            &self.server,
            timeout,
            "writing presence",
            buckets.members.put(&key, value),
        )
        .await?;
        let rewritten = None;
        self.remember(
            topic,
            (total > 0).then_some(Mine {
                revision,
                rewritten,
            }),
        );
        // Nothing of this node's was there to lose, or it was taken.
        Ok(mine.is_none())
    }

    /// Writes this node's `count` of `member` by compare-and-set (with the
    /// topic's counts locked); returns how many of its connections were
    /// taken.
    async fn put_member(&self, topic: &str, member: &str, count: usize) -> Result<usize, HubError> {
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

    /// The keys under `filter` (past the bucket's subject prefix, `m.` or
    /// `c.` onwards) with their last values, reading at most `enough` values
    /// that `keep` keeps (all of them for `usize::MAX`); deleted keys are
    /// skipped.
    async fn read(
        &self,
        filter: &str,
        enough: usize,
        keep: impl Fn(&str, &[u8]) -> bool,
    ) -> Result<Vec<(String, Bytes, u64)>, HubError> {
        let buckets = self.buckets().await?;
        let prefix = format!("$KV.{}_presence.", self.config.get_prefix());
        let filter = format!("{prefix}{filter}");
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
            let mut found = Vec::new();
            // In batches, so that no more than about `enough` are read.
            let mut subjects = subjects.into_iter().peekable();
            while found.len() < enough && subjects.peek().is_some() {
                let batch = (enough - found.len()).clamp(1, 64);
                let messages: Vec<_> =
                    futures_util::stream::iter(subjects.by_ref().take(batch))
                        .map(|subject| async move {
                            stream.get_last_raw_message_by_subject(&subject).await
                        })
                        .buffer_unordered(16)
                        .collect()
                        .await;
                for message in messages {
                    let message = match message {
                        Ok(message) => message,
                        // Gone since it was listed (expired, or purged).
                        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                        Err(e) => return Err(e.to_string()),
                    };
                    if message.headers.get("KV-Operation").is_some() {
                        continue;
                    }
                    let key = message.subject.strip_prefix(prefix.as_str()).unwrap_or("");
                    if keep(key, &message.payload) {
                        found.push((key.to_owned(), message.payload, message.sequence));
                    }
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

    /// `node`'s member entries in `topic` with a count, at most about
    /// `enough` of them.
    async fn entries(
        &self,
        topic: &str,
        node: &str,
        enough: usize,
    ) -> Result<Vec<Found>, HubError> {
        let filter = format!("m.{}.{node}.>", topic_token(topic));
        let counted = |_: &str, value: &[u8]| parse(value).is_some_and(|(count, ..)| count > 0);
        let read = self.read(&filter, enough, counted).await?;
        Ok(read
            .into_iter()
            .filter_map(|(key, value, revision)| {
                let (count, taken, member) = parse(&value)?;
                Some(Found {
                    key,
                    member,
                    count,
                    taken,
                    revision,
                })
            })
            .collect())
    }

    /// Takes the entries of `node`, whose lease lapsed, in `topic` (queued
    /// in `taken` as each take succeeds), then marks its total taken at the
    /// `revision` read (unless the node wrote it since: it is back).
    async fn take(
        &self,
        topic: &str,
        node: &str,
        revision: u64,
        taken: &Taken<'_>,
    ) -> Result<(), HubError> {
        let buckets = self.buckets().await?;
        let timeout = self.config.get_timeout();
        for entry in self.entries(topic, node, usize::MAX).await? {
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
        let key = self.total_key(topic, node);
        // Lost the race: another survivor marked it, or the node is back.
        let _ = tokio::time::timeout(
            timeout,
            buckets
                .members
                .update(&key, Bytes::from_static(b"-"), revision),
        )
        .await;
        Ok(())
    }

    /// Counts `topic` from the nodes' totals, taking the entries of lapsed
    /// nodes (queued in `taken` as each take succeeds), and names at most
    /// `limit` of the connections of live nodes.
    async fn look(&self, topic: &str, limit: usize, taken: Taken<'_>) -> Result<Roster, HubError> {
        let buckets = self.buckets().await?;
        let timeout = self.config.get_timeout();
        let filter = format!("c.{}.*", topic_token(topic));
        let totals = self.read(&filter, usize::MAX, |_, _| true).await?;
        let mut roster = Roster::default();
        let mut live = Vec::new();
        for (key, value, revision) in totals {
            let node = key.rsplit('.').next().unwrap_or("").to_owned();
            // Taken already ("-"): nothing to count or take.
            let Some(total) = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            else {
                continue;
            };
            let alive = node == self.node || {
                let lease = bounded(
                    &self.server,
                    timeout,
                    "reading a lease",
                    buckets.leases.entry(node.clone()),
                )
                .await?;
                lease.is_some_and(|e| e.operation == kv::Operation::Put)
            };
            if !alive {
                self.take(topic, &node, revision, &taken).await?;
            } else if total > 0 {
                roster.count = roster.count.saturating_add(total);
                live.push(node);
            }
        }
        let mut want = limit;
        for node in live {
            if want == 0 {
                break;
            }
            for entry in self.entries(topic, &node, want).await? {
                let n = entry.count.min(want);
                roster.names.extend(std::iter::repeat_n(entry.member, n));
                want -= n;
                if want == 0 {
                    break;
                }
            }
        }
        Ok(roster)
    }
}

impl PresenceBackend for Inner {
    fn renew(&self) -> StoreFuture<'_, Result<(), HubError>> {
        Box::pin(self.lease())
    }

    /// Renews the lease, writes this node's total, then the member's entry
    /// (so that a node that dies between the two has a total to be found
    /// by, and its entry is taken).
    fn write<'a>(
        &'a self,
        topic: &'a str,
        (member, count): (&'a str, usize),
        total: usize,
    ) -> StoreFuture<'a, Result<Written, HubError>> {
        Box::pin(async move {
            self.lease().await?;
            let known = self.put_total(topic, total).await?;
            let taken = self.put_member(topic, member, count).await?;
            // A member taken: the node was, its other entries too.
            Ok(Written {
                taken,
                known: known && taken == 0,
            })
        })
    }

    /// Renews the lease, writes the total once, then each entry.
    fn reassert<'a>(
        &'a self,
        topic: &'a str,
        entries: &'a [(String, usize)],
    ) -> StoreFuture<'a, Result<Vec<Option<usize>>, HubError>> {
        Box::pin(async move {
            self.lease().await?;
            let total: usize = entries.iter().map(|(_, n)| n).sum();
            self.put_total(topic, total).await?;
            let mut written = Vec::with_capacity(entries.len());
            for (member, n) in entries {
                written.push(self.put_member(topic, member, *n).await.ok());
            }
            if let (Some(mine), true) = (self.mine(topic), written.iter().all(Option::is_some)) {
                let rewritten = Some(Instant::now());
                self.remember(topic, Some(Mine { rewritten, ..mine }));
            }
            Ok(written)
        })
    }

    /// `true` (nothing rewritten) while this node's total in `topic` is as
    /// it wrote it (not marked taken, not lost) and its entries were all
    /// rewritten less than three TTLs ago: one read. Else `false`, and they
    /// are all rewritten.
    fn refresh<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<bool, HubError>> {
        Box::pin(async move {
            let Some(mine) = self.mine(topic) else {
                return Ok(false);
            };
            let fresh = mine
                .rewritten
                .is_some_and(|at| at.elapsed() < self.ttl * REWRITE_TTLS);
            if !fresh {
                return Ok(false);
            }
            let buckets = self.buckets().await?;
            let total = bounded(
                &self.server,
                self.config.get_timeout(),
                "reading presence",
                buckets.members.entry(self.total_key(topic, &self.node)),
            )
            .await?;
            Ok(total
                .is_some_and(|e| e.operation == kv::Operation::Put && e.revision == mine.revision))
        })
    }

    fn look<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        Box::pin(Inner::look(self, topic, limit, taken))
    }
}

tower_sse_hub::remote_presence!(NatsPresence, inner);
