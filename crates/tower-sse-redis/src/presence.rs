//! [`RedisPresence`]: presence across the nodes of a cluster.
//!
//! Per topic, on the topic's Redis server (same hash tag as its stream, whose
//! keys are `:s`, `:m` and `:c`, so that a script may touch them all):
//!
//! - `PREFIX:{TOPIC}:p:NODE`, a hash `MEMBER -> connections` per node: that
//!   node's entries, written only by it (and deleted whole by the node that
//!   takes them when it lapsed);
//! - `PREFIX:{TOPIC}:pc`, a hash `NODE -> connections`: each node's total,
//!   kept by its writes (`HINCRBY` of each change), so that a topic is counted
//!   without reading its members;
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
//! Each key expires ten TTLs after the last write of a node there, so that a
//! lapsed node's lease, total and entries wait that long for a survivor to
//! look and take them, and an abandoned topic goes.
//!
//! # Cost
//!
//! Each script declares the keys it names in `KEYS`, but for the hashes of
//! other nodes, which a look reads or takes: they share the topic's hash tag,
//! hence its slot.
//!
//! - A `join` or `leave` (the change script): O(1) (a `ZADD` to renew the
//!   lease: O(log nodes)), whatever the size of the room.
//! - A renewal, every third of the TTL, per topic: O(1) (the renew script)
//!   while Redis still has this node's entries there; a re-assertion of them
//!   all (the assert script, O(this node's members)) only when they were
//!   taken, or Redis forgot them (restarted empty); a write that failed is
//!   retried alone.
//! - A look (`roster`, `expired`): O(nodes + `limit`): the totals of the
//!   live nodes, and names from their hashes until `limit`; taking a lapsed
//!   node's entries reads its hash once. `members` reads every entry.
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
    remote::{PresenceBackend, RemotePresence, Taken, Written},
    Epoch, HubError, Roster, StoreFuture,
};

/// How many TTLs the entries taken from a lapsed node are remembered, for it to
/// announce them as back if it comes back.
const RESTORE_TTLS: u32 = 10;

/// `KEYS`: this node's hash, totals, nodes, sequences, taken. `ARGV`: node,
/// TTL ms, sequence number, how long the topic's keys outlive this node's
/// last write (ms: ten TTLs, so that a lapsed node's lease and entries wait
/// that long for a survivor to take them), then what the script does. The prologue of the scripts that write
/// this node's entries: ignores a write older than the last one applied
/// (returns `{0}`), and notes whether this node is known in the topic (has a
/// lease there, hence its entries) in `known`.
const PROLOGUE: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local node, ttl, seq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if seq <= (tonumber(redis.call('hget', KEYS[4], node)) or 0) then return {0} end
redis.call('hset', KEYS[4], node, ARGV[3])
local known = redis.call('zscore', KEYS[3], node) and 1 or 0
local function keep()
  for i = 1, 4 do redis.call('pexpire', KEYS[i], ARGV[4]) end
end
";

/// After [`PROLOGUE`]; `ARGV[5..]`: member, count. Sets this node's count of
/// `member` (deletes it at 0), its total by the difference, and renews the
/// node's lease. Returns `{1, taken, known}`, where taken is how many of the
/// member's connections were taken (announced gone), now forgotten as taken.
/// O(1).
const CHANGE: &str = r"
redis.call('zadd', KEYS[3], now + ttl, node)
local member, count = ARGV[5], tonumber(ARGV[6]) or 0
local before = tonumber(redis.call('hget', KEYS[1], member)) or 0
if count > 0 then
  redis.call('hset', KEYS[1], member, count)
else
  redis.call('hdel', KEYS[1], member)
end
if count ~= before and redis.call('hincrby', KEYS[2], node, count - before) <= 0 then
  redis.call('hdel', KEYS[2], node)
end
local field = node .. '|' .. member
local taken = tonumber(redis.call('hget', KEYS[5], field)) or 0
if taken > 0 then redis.call('hdel', KEYS[5], field) end
keep()
return {1, taken, known}
";

/// After [`PROLOGUE`]. Renews this node's lease if Redis still has its
/// entries (it is known: not taken, not forgotten). Returns `{1, known}`; at
/// 0 the lease is not renewed, for the entries are to be re-asserted. O(1).
const RENEW: &str = r"
if known == 1 then
  redis.call('zadd', KEYS[3], now + ttl, node)
  keep()
end
return {1, known}
";

/// After [`PROLOGUE`]; `ARGV[5..]`: `member, count` for each of the node's
/// members (count 0: to delete). Replaces the node's entries and total with
/// these, and renews its lease. Returns `{1, restored}` (the members whose
/// connections were taken and are still here, one entry per connection).
/// O(members).
const ASSERT: &str = r"
redis.call('zadd', KEYS[3], now + ttl, node)
redis.call('hdel', KEYS[5], node)
redis.call('del', KEYS[1])
local total, restored = 0, {}
for i = 5, #ARGV - 1, 2 do
  local count = tonumber(ARGV[i + 1]) or 0
  if count > 0 then
    redis.call('hset', KEYS[1], ARGV[i], count)
    total = total + count
  end
  local field = node .. '|' .. ARGV[i]
  local taken = tonumber(redis.call('hget', KEYS[5], field)) or 0
  if taken > 0 then
    redis.call('hdel', KEYS[5], field)
    for _ = 1, math.min(taken, count) do table.insert(restored, ARGV[i]) end
  end
end
if total > 0 then
  redis.call('hset', KEYS[2], node, total)
else
  redis.call('hdel', KEYS[2], node)
end
keep()
return {1, restored}
";

/// `KEYS`: totals, nodes, sequences, taken. `ARGV`: node (whose entries are
/// never taken), how long taken entries are remembered (ms), how many names
/// at most, the prefix of the nodes' hashes (`PREFIX:{TOPIC}:p:`). Takes the
/// entries of lapsed nodes (and of nodes with a total but no lease: their
/// lease expired with its key), records them in `taken` (with the time each
/// node lapsed, under its bare name), and forgets the nodes that lapsed
/// longer ago than that. Returns `{count, names, expired}`: the connections
/// of live nodes, at most the limit of their names (one entry per
/// connection), and the members taken, one entry per connection.
///
/// O(nodes + limit), plus the hashes of the nodes taken (once each), plus
/// `taken` when a node lapsed.
const LOOK: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local self, window, want, base = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local expired, lapsed = {}, false
local function take(node)
  lapsed = true
  redis.call('zrem', KEYS[2], node)
  redis.call('hdel', KEYS[1], node)
  redis.call('hset', KEYS[4], node, now)
  local key = base .. node
  local all = redis.call('hgetall', key)
  for i = 1, #all, 2 do
    local n = tonumber(all[i + 1]) or 0
    if n > 0 then
      redis.call('hincrby', KEYS[4], node .. '|' .. all[i], n)
      for _ = 1, n do table.insert(expired, all[i]) end
    end
  end
  redis.call('del', key)
end
for _, node in ipairs(redis.call('zrangebyscore', KEYS[2], '-inf', now)) do
  if node ~= self then take(node) end
end
local count, live = 0, {}
local totals = redis.call('hgetall', KEYS[1])
for i = 1, #totals, 2 do
  local node, n = totals[i], tonumber(totals[i + 1]) or 0
  if node ~= self and not redis.call('zscore', KEYS[2], node) then
    take(node)
  elseif n > 0 then
    count = count + n
    table.insert(live, {node, n})
  end
end
local names = {}
for _, entry in ipairs(live) do
  if want <= 0 then break end
  local key = base .. entry[1]
  local function add(fields)
    for i = 1, #fields, 2 do
      local n = math.min(tonumber(fields[i + 1]) or 0, want)
      for _ = 1, n do table.insert(names, fields[i]) end
      want = want - n
      if want <= 0 then return end
    end
  end
  if entry[2] <= want then
    add(redis.call('hgetall', key))
  else
    local cursor = '0'
    repeat
      local page = redis.call('hscan', key, cursor, 'COUNT', math.min(want, 1000))
      cursor = page[1]
      add(page[2])
    until cursor == '0' or want <= 0
  end
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
return {count, names, expired}
";

/// [`Presence`](tower_sse_hub::Presence) across nodes, on the Redis servers
/// of a [`RedisStore`]: each topic's presence lives on the server of its
/// history. Members of a node that stops refreshing them (it crashed) expire
/// after the TTL, and [`expired`](tower_sse_hub::Presence::expired) hands
/// them to one surviving node.
///
/// # Faults
///
/// Each node's own counts, in memory, are the truth for its members; every
/// third of the TTL it renews its lease in each topic, and re-asserts its
/// members there when Redis lost them (taken, or Redis restarted empty) or a
/// write of them failed. So, with `ttl` the TTL and `timeout` the store's
/// [`RedisConfig::timeout`](super::RedisConfig::timeout):
///
/// - A `join` or `leave` whose write fails (Redis unreachable, or slow past
///   `timeout`) returns the error but is kept: the entry is right in Redis
///   after the next round that reaches it, at most `ttl / 3 + timeout` after
///   Redis is back. A write that arrives late is ignored.
/// - A node that crashes, or that cannot reach Redis (or is paused) for longer
///   than its lease, has its members taken by the next node to look (its
///   [`expired`](tower_sse_hub::Presence::expired), `members` or `roster`)
///   at most `ttl` (plus that node's look period) after its last renewal:
///   they are listed and counted until then. Its entries wait ten TTLs to be
///   taken; if no node looks at the topic that long, they expire without a
///   `leave`.
/// - A node that comes back after its members were taken re-adds those still
///   connected at its first round (at most `ttl / 3 + timeout` after it can
///   reach Redis again), and hands them out by
///   [`restored`](tower_sse_hub::Presence::restored) once per connection, to
///   announce their `join`; those that left meanwhile stay gone. It remembers
///   which ones were taken for ten TTLs: a node that comes back later re-adds
///   them without announcing them.
/// - Expired entries taken from Redis are queued until `expired` returns them,
///   whatever fails meanwhile. An answer lost on its way back (the connection
///   cut while the script ran) loses the entries it took: their `leave` is not
///   announced (`members` is still right).
/// - A Redis server that restarts empty is refilled by each node's next round
///   (which finds itself unknown there, and re-asserts all its members);
///   the members of a node that died meanwhile are forgotten without a `leave`.
///   One paused past the TTL finds every lease lapsed when it resumes: the
///   first look announces everyone else's members gone, and their nodes
///   announce them back at their next round.
///
/// In all, once the last fault is over, `members` and `roster` are right
/// again within `ttl` plus the period at which the nodes call `expired`, plus
/// `timeout`: no ghost, no lost `leave` (but for the lost answer above).
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
    renew: Script,
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
    /// after their node last renewed them; renews (and re-asserts what Redis
    /// lost of this node's entries) every third of `ttl` from a task that
    /// ends when the presence is dropped. Needs a tokio runtime (as the store
    /// did).
    pub fn new(store: &RedisStore, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(3));
        let backend = Backend {
            store: store.broker().inner.clone(),
            node: Epoch::random().to_string(),
            ttl,
            change: Script::new(&format!("{PROLOGUE}{CHANGE}")),
            renew: Script::new(&format!("{PROLOGUE}{RENEW}")),
            assert: Script::new(&format!("{PROLOGUE}{ASSERT}")),
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

/// The error of a write that Redis ignored: a later one was applied first.
fn late() -> HubError {
    unavailable("a later write was applied first")
}

impl Backend {
    /// The key of the topic's `name` (`p:NODE`, `pc`, `n`, `ps`, `pt`).
    fn key(&self, topic: &str, name: &str) -> String {
        format!("{}:{{{topic}}}:{name}", self.store.config.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX / 4)
    }

    /// How long taken entries are remembered, and the topic's keys outlive
    /// a node's last write (ms).
    fn window_ms(&self) -> u64 {
        self.ttl_ms().saturating_mul(u64::from(RESTORE_TTLS))
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// An invocation of a script that writes this node's entries in `topic`
    /// (after [`PROLOGUE`]): its five keys, then this node, the TTL, the
    /// write's number and the keys' life.
    fn invocation<'a>(&self, script: &'a Script, topic: &str) -> ::redis::ScriptInvocation<'a> {
        let mut invocation = script.key(self.key(topic, &format!("p:{}", self.node)));
        for name in ["pc", "n", "ps", "pt"] {
            invocation.key(self.key(topic, name));
        }
        invocation
            .arg(&self.node)
            .arg(self.ttl_ms())
            .arg(self.next_seq())
            .arg(self.window_ms());
        invocation
    }
}

impl PresenceBackend for Backend {
    /// Runs the change script, O(1); a write older than the last one applied
    /// is an error (retried by the next renewal). Redis keeps the node's
    /// total itself (by the difference), so `total` is not sent.
    fn write<'a>(
        &'a self,
        topic: &'a str,
        (member, count): (&'a str, usize),
        _total: usize,
    ) -> StoreFuture<'a, Result<Written, HubError>> {
        Box::pin(async move {
            let mut invocation = self.invocation(&self.change, topic);
            invocation.arg(member).arg(count);
            let found = run::<Vec<u64>>(&self.store, topic, &invocation).await?;
            match found[..] {
                [1, taken, known] => Ok(Written {
                    taken: usize::try_from(taken).unwrap_or(usize::MAX),
                    known: known == 1,
                }),
                _ => Err(late()),
            }
        })
    }

    /// Runs the renew script, O(1).
    fn refresh<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<bool, HubError>> {
        Box::pin(async move {
            let invocation = self.invocation(&self.renew, topic);
            let found = run::<Vec<u64>>(&self.store, topic, &invocation).await?;
            match found[..] {
                [1, known] => Ok(known == 1),
                _ => Err(late()),
            }
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
                return Err(late());
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

    /// Runs the look script: `(count, names, expired)`; the expired entries
    /// are queued for `expired` before this returns.
    fn look<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        Box::pin(async move {
            let mut invocation = self.look.key(self.key(topic, "pc"));
            for name in ["n", "ps", "pt"] {
                invocation.key(self.key(topic, name));
            }
            invocation
                .arg(&self.node)
                .arg(self.window_ms())
                .arg(limit)
                .arg(self.key(topic, "p:"));
            let (count, names, expired) =
                run::<(u64, Vec<String>, Vec<String>)>(&self.store, topic, &invocation).await?;
            taken.extend(expired);
            Ok(Roster {
                count: usize::try_from(count).unwrap_or(usize::MAX),
                names,
            })
        })
    }
}

tower_sse_hub::remote_presence!(RedisPresence, inner);
