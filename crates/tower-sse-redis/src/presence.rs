//! [`RedisPresence`]: presence across the nodes of a cluster.
//!
//! Per topic, on the topic's Redis server (same hash tag as its stream, whose
//! keys are `:s`, `:m` and `:c`):
//!
//! - `PREFIX:{TOPIC}:p`, a hash `NODE|MEMBER -> connections`;
//! - `PREFIX:{TOPIC}:n`, a sorted set of the nodes with members there, scored by
//!   the time (Redis's clock, in ms) until which each is alive (its lease);
//! - `PREFIX:{TOPIC}:ps`, a hash `NODE -> sequence number` of the node's last
//!   write there, so that a write that arrives late (sent before a time-out,
//!   delivered after a later write) is ignored;
//! - `PREFIX:{TOPIC}:pt`, a hash `NODE|MEMBER -> connections` of the entries
//!   taken from a node whose lease lapsed (announced as gone), and `NODE ->
//!   time` of the lapse, kept for `RESTORE_TTLS` (10) TTLs so that the node, if
//!   it was only paused or cut off, finds them when it comes back and announces
//!   them as back. A node that lapsed longer ago is forgotten (there and in
//!   the sequences) by the next look that finds a node lapsed.
//!
//! Each node's own counts, in memory, are the truth for its entries: a node
//! writes a member's count when it changes, and every third of the TTL it
//! re-asserts all of them (which renews its lease), so that a write that
//! failed is repaired at the next round. Its writes to a topic are made one at
//! a time, in the order of its counts' changes, and numbered. A node that stops
//! (crash, partition) lets its lease lapse, and the next node to look takes its
//! entries, in one script, so that each `leave` is published by one node only.
//!
//! The counts, their renewal and the queues are the hub's
//! [`RemotePresence`]; this module is its [`PresenceBackend`] on Redis: the
//! scripts, and running them on the topic's server.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ::redis::Script;

use super::{unavailable, Inner, RedisStore};
use tower_sse_hub::{
    remote::{PresenceBackend, RemotePresence, Taken},
    Epoch, HubError, StoreFuture,
};

/// How many TTLs the entries taken from a lapsed node are remembered, for it to
/// announce them as back if it comes back.
const RESTORE_TTLS: u32 = 10;

/// `KEYS`: hash, nodes, sequences, taken. `ARGV`: node, TTL ms, sequence number,
/// member, count. Sets this node's count of `member` (deletes it at 0) and
/// renews the node's lease. Returns `{1, taken}`, where taken is how many of
/// the member's connections were taken (announced gone), now forgotten as
/// taken, or `{0, 0}` for a write older than the last one applied.
const CHANGE: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, ttl, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if seq <= (tonumber(redis.call('hget', KEYS[3], node)) or 0) then return {0, 0} end
redis.call('hset', KEYS[3], node, ARGV[3])
redis.call('zadd', KEYS[2], now + ttl, node)
local field = node .. '|' .. ARGV[4]
local count = tonumber(ARGV[5]) or 0
if count > 0 then
  redis.call('hset', KEYS[1], field, count)
else
  redis.call('hdel', KEYS[1], field)
end
local taken = tonumber(redis.call('hget', KEYS[4], field)) or 0
if taken > 0 then redis.call('hdel', KEYS[4], field) end
for i = 1, 3 do redis.call('pexpire', KEYS[i], 2 * ttl) end
return {1, taken}
";

/// `KEYS`: hash, nodes, sequences, taken. `ARGV`: node, TTL ms, sequence
/// number, then `member, count` for each of the node's members (count 0: to
/// delete). Re-asserts the node's entries and renews its lease. Returns `{1,
/// restored}` (the members whose connections were taken and are still here,
/// one entry per connection), or `{0, {}}` for a write older than the last one.
const ASSERT: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, ttl, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if seq <= (tonumber(redis.call('hget', KEYS[3], node)) or 0) then return {0, {}} end
redis.call('hset', KEYS[3], node, ARGV[3])
redis.call('zadd', KEYS[2], now + ttl, node)
redis.call('hdel', KEYS[4], node)
local restored = {}
for i = 4, #ARGV - 1, 2 do
  local field = node .. '|' .. ARGV[i]
  local count = tonumber(ARGV[i + 1]) or 0
  if count > 0 then
    redis.call('hset', KEYS[1], field, count)
  else
    redis.call('hdel', KEYS[1], field)
  end
  local taken = tonumber(redis.call('hget', KEYS[4], field)) or 0
  if taken > 0 then
    redis.call('hdel', KEYS[4], field)
    for _ = 1, math.min(taken, count) do table.insert(restored, ARGV[i]) end
  end
end
for i = 1, 3 do redis.call('pexpire', KEYS[i], 2 * ttl) end
return {1, restored}
";

/// `KEYS`: hash, nodes, sequences, taken. `ARGV`: node (whose entries are
/// never taken), how long taken entries are remembered (ms). Takes the entries
/// of lapsed nodes, and records them in `taken` (with the time each node
/// lapsed, under its bare name); forgets the nodes that lapsed longer ago than
/// that. Returns `{alive members, expired members}`, one entry per connection.
const LOOK: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[2])
local dead, lapsed = {}, false
for _, node in ipairs(redis.call('zrangebyscore', KEYS[2], '-inf', now)) do
  if node ~= ARGV[1] then
    dead[node] = true
    lapsed = true
    redis.call('zrem', KEYS[2], node)
    redis.call('hset', KEYS[4], node, now)
  end
end
local alive, expired = {}, {}
local all = redis.call('hgetall', KEYS[1])
for i = 1, #all, 2 do
  local bar = string.find(all[i], '|', 1, true) or 0
  local node, member = string.sub(all[i], 1, bar - 1), string.sub(all[i], bar + 1)
  local n = tonumber(all[i + 1]) or 0
  local into = alive
  if node ~= ARGV[1] and (dead[node] or redis.call('zscore', KEYS[2], node) == false) then
    into = expired
    redis.call('hdel', KEYS[1], all[i])
    if n > 0 then
      redis.call('hincrby', KEYS[4], all[i], n)
      if not dead[node] then redis.call('hset', KEYS[4], node, now) end
      lapsed = true
    end
  end
  for _ = 1, n do table.insert(into, member) end
end
if lapsed then
  local old, fields = {}, redis.call('hgetall', KEYS[4])
  for i = 1, #fields, 2 do
    if not string.find(fields[i], '|', 1, true) and (tonumber(fields[i + 1]) or 0) < now - window then
      old[fields[i]] = true
      redis.call('hdel', KEYS[3], fields[i])
    end
  end
  for i = 1, #fields, 2 do
    local bar = string.find(fields[i], '|', 1, true)
    if old[bar and string.sub(fields[i], 1, bar - 1) or fields[i]] then
      redis.call('hdel', KEYS[4], fields[i])
    end
  end
  redis.call('pexpire', KEYS[4], window)
end
return {alive, expired}
";

/// [`Presence`](tower_sse_hub::Presence) across nodes, on the Redis servers
/// of a [`RedisStore`]: each topic's presence lives on the server of its
/// history. Members of a node that stops refreshing them (it crashed) expire
/// after the TTL, and [`expired`](tower_sse_hub::Presence::expired) hands
/// them to one surviving node.
///
/// # Faults
///
/// Each node's own counts, in memory, are the truth for its members; it
/// re-asserts them, and renews its lease, every third of the TTL. So, with
/// `ttl` the TTL and `timeout` the store's [`RedisConfig::timeout`](super::RedisConfig::timeout):
///
/// - A `join` or `leave` whose write fails (Redis unreachable, or slow past
///   `timeout`) returns the error but is kept: the entry is right in Redis
///   after the next round that reaches it, at most `ttl / 3 + timeout` after
///   Redis is back. A write that arrives late is ignored.
/// - A node that crashes, or that cannot reach Redis (or is paused) for longer
///   than its lease, has its members taken by the next node to look (its
///   [`expired`](tower_sse_hub::Presence::expired), or `members`) at most
///   `ttl` (plus that node's look period) after its last renewal: they are
///   listed until then.
/// - A node that comes back after its members were taken re-adds those still
///   connected at its first round (at most `ttl / 3 + timeout` after it can
///   reach Redis again), and hands them out by
///   [`restored`](tower_sse_hub::Presence::restored) once per connection, to
///   announce their `join`; those that left meanwhile stay gone. It remembers which ones were taken for ten TTLs:
///   a node that comes back later re-adds them without announcing them.
/// - Expired entries taken from Redis are queued until `expired` returns them,
///   whatever fails meanwhile. An answer lost on its way back (the connection
///   cut while the script ran) loses the entries it took: their `leave` is not
///   announced (`members` is still right).
/// - A Redis server that restarts empty is refilled by each node's next round;
///   the members of a node that died meanwhile are forgotten without a `leave`.
///   One paused past the TTL finds every lease lapsed when it resumes: the
///   first look announces everyone else's members gone, and their nodes
///   announce them back at their next round.
///
/// In all, once the last fault is over, `members` is right again within
/// `ttl` plus the period at which the nodes call `expired`, plus `timeout`: no
/// ghost, no lost `leave` (but for the lost answer above).
#[derive(Clone)]
pub struct RedisPresence {
    inner: RemotePresence<Backend>,
}

/// The [`PresenceBackend`] on Redis: the scripts, run on the topic's server.
struct Backend {
    store: Arc<Inner>,
    /// This node's name in Redis.
    node: String,
    ttl: Duration,
    change: Script,
    assert: Script,
    look: Script,
    /// Numbers this node's writes, so that Redis ignores a late one.
    seq: AtomicU64,
}

/// Shows as the presence it is under, the only one there is.
impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { node, ttl, .. } = self;
        f.debug_struct("RedisPresence")
            .field("node", node)
            .field("ttl", ttl)
            .finish()
    }
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.backend().fmt(f)
    }
}

impl RedisPresence {
    /// Presence on `store`'s servers, entries expiring `ttl` (at least 3 ms)
    /// after their node last renewed them; renews (and re-asserts this node's
    /// entries) every third of `ttl` from a task that ends when the presence is
    /// dropped. Needs a tokio runtime (as the store did).
    pub fn new(store: &RedisStore, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(3));
        let backend = Backend {
            store: store.broker().inner.clone(),
            node: Epoch::random().to_string(),
            ttl,
            change: Script::new(CHANGE),
            assert: Script::new(ASSERT),
            look: Script::new(LOOK),
            seq: AtomicU64::new(0),
        };
        Self {
            inner: RemotePresence::new(backend, ttl),
        }
    }
}

/// Runs a script, within the store's time-out.
async fn run<T: ::redis::FromRedisValue>(
    store: &Inner,
    topic: &str,
    invocation: &::redis::ScriptInvocation<'_>,
) -> Result<T, HubError> {
    store.invoke(topic, invocation).await
}

impl Backend {
    /// Hash, nodes, sequences, taken.
    fn keys(&self, topic: &str) -> [String; 4] {
        let prefix = &self.store.config.prefix;
        ["p", "n", "ps", "pt"].map(|key| format!("{prefix}:{{{topic}}}:{key}"))
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX / 4)
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// An invocation of a script that writes this node's entries in `topic`:
    /// the topic's four keys, then this node, the TTL and the write's number.
    fn invocation<'a>(&self, script: &'a Script, topic: &str) -> ::redis::ScriptInvocation<'a> {
        let [hash, nodes, seqs, taken] = self.keys(topic);
        let mut invocation = script.key(hash);
        invocation
            .key(nodes)
            .key(seqs)
            .key(taken)
            .arg(&self.node)
            .arg(self.ttl_ms())
            .arg(self.next_seq());
        invocation
    }
}

impl PresenceBackend for Backend {
    /// Runs the change script; a write older than the last one applied is an
    /// error (retried by the next renewal).
    fn write<'a>(
        &'a self,
        topic: &'a str,
        (member, count): (&'a str, usize),
    ) -> StoreFuture<'a, Result<usize, HubError>> {
        Box::pin(async move {
            let mut invocation = self.invocation(&self.change, topic);
            invocation.arg(member).arg(count);
            let (applied, taken) = run::<(i64, usize)>(&self.store, topic, &invocation).await?;
            if applied == 0 {
                return Err(unavailable("a later write was applied first"));
            }
            Ok(taken)
        })
    }

    /// Runs the assert script: all of them in one write, or none.
    fn reassert<'a>(
        &'a self,
        topic: &'a str,
        entries: &'a [(String, usize)],
    ) -> StoreFuture<'a, Result<Vec<Option<usize>>, HubError>> {
        Box::pin(async move {
            let mut invocation = self.invocation(&self.assert, topic);
            for (member, n) in entries {
                invocation.arg(member).arg(*n);
            }
            let (applied, restored) =
                run::<(i64, Vec<String>)>(&self.store, topic, &invocation).await?;
            if applied != 1 {
                return Err(unavailable("a later write was applied first"));
            }
            // One entry per connection taken and still here: per member.
            let mut back: HashMap<String, usize> = HashMap::new();
            for member in restored {
                *back.entry(member).or_default() += 1;
            }
            Ok(entries
                .iter()
                .map(|(member, _)| Some(back.get(member).copied().unwrap_or(0)))
                .collect())
        })
    }

    /// Runs the look script: `(alive, expired)`; the expired entries are
    /// queued for `expired` before this returns.
    fn look<'a>(
        &'a self,
        topic: &'a str,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move {
            let [hash, nodes, seqs, lapsed] = self.keys(topic);
            let remember = self.ttl_ms().saturating_mul(u64::from(RESTORE_TTLS));
            let mut invocation = self.look.key(hash);
            invocation
                .key(nodes)
                .key(seqs)
                .key(lapsed)
                .arg(&self.node)
                .arg(remember);
            let (alive, expired) =
                run::<(Vec<String>, Vec<String>)>(&self.store, topic, &invocation).await?;
            taken.extend(expired);
            Ok(alive)
        })
    }
}

tower_sse_hub::remote_presence!(RedisPresence, inner);
