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

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
    time::Duration,
};

use ::redis::Script;

use super::{unavailable, Inner, RedisStore};
use crate::hub::{presence::Presence, Epoch, HubError, StoreFuture};

/// How many TTLs the entries taken from a lapsed node are remembered, for it to
/// announce them as back if it comes back.
const RESTORE_TTLS: u32 = 10;

/// `KEYS`: hash, nodes, sequences, taken. `ARGV`: node, TTL ms, sequence number,
/// member, count, kept. Sets this node's count of `member` (deletes it at 0) and
/// renews the node's lease. Returns `{1, restored}`, where restored is how many
/// of the member's connections were taken (announced gone) and are still here
/// (at most `kept`), or `{0, 0}` for a write older than the last one applied.
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
local restored = 0
local taken = tonumber(redis.call('hget', KEYS[4], field)) or 0
if taken > 0 then
  redis.call('hdel', KEYS[4], field)
  restored = math.min(taken, tonumber(ARGV[6]) or 0)
end
for i = 1, 3 do redis.call('pexpire', KEYS[i], 2 * ttl) end
return {1, restored}
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

/// [`Presence`] across nodes, on the Redis servers of a [`RedisStore`]: each
/// topic's presence lives on the server of its history. Members of a node that
/// stops refreshing them (it crashed) expire after the TTL, and
/// [`expired`](Presence::expired) hands them to one surviving node.
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
///   [`expired`](Presence::expired), or `members`) at most `ttl` (plus that
///   node's look period) after its last renewal: they are listed until then.
/// - A node that comes back after its members were taken re-adds those still
///   connected at its first round (at most `ttl / 3 + timeout` after it can
///   reach Redis again), and hands them out by [`restored`](Presence::restored)
///   once per connection, to announce their `join`; those that left meanwhile
///   stay gone. It remembers which ones were taken for ten TTLs:
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
    inner: Arc<PresenceInner>,
}

struct PresenceInner {
    store: Arc<Inner>,
    /// This node's name in Redis.
    node: String,
    ttl: Duration,
    change: Script,
    assert: Script,
    look: Script,
    /// This node's own connections per topic: the truth for its entries.
    local: Mutex<HashMap<String, Arc<Local>>>,
    /// The topics asked about (`members`) that still have someone.
    watched: Mutex<HashSet<String>>,
    /// Expired entries taken from Redis, for the next `expired`.
    taken: Mutex<Vec<(String, String)>>,
    /// This node's members found taken and still here, for the next `restored`.
    restored: Mutex<Vec<(String, String)>>,
    /// Numbers this node's writes, so that Redis ignores a late one.
    seq: AtomicU64,
}

/// This node's connections to a topic. Locked across each write to Redis, so
/// that its writes reach Redis in the order of the changes here.
type Local = tokio::sync::Mutex<Counts>;

#[derive(Default)]
struct Counts {
    /// Connections per member; a member at 0 is still to be deleted in Redis.
    members: HashMap<String, usize>,
    /// Removed from `PresenceInner::local`: look the topic up again.
    gone: bool,
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node", &self.inner.node)
            .field("ttl", &self.inner.ttl)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisPresence {
    /// Presence on `store`'s servers, entries expiring `ttl` (at least 3 ms)
    /// after their node last renewed them; renews (and re-asserts this node's
    /// entries) every third of `ttl` from a task that ends when the presence is
    /// dropped. Needs a tokio runtime (as the store did).
    pub fn new(store: &RedisStore, ttl: Duration) -> Self {
        let inner = Arc::new(PresenceInner {
            store: store.inner.clone(),
            node: Epoch::random().to_string(),
            ttl: ttl.max(Duration::from_millis(3)),
            change: Script::new(CHANGE),
            assert: Script::new(ASSERT),
            look: Script::new(LOOK),
            local: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            taken: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
        });
        tokio::spawn(renew(Arc::downgrade(&inner)));
        Self { inner }
    }
}

async fn renew(inner: Weak<PresenceInner>) {
    let Some(every) = inner.upgrade().map(|inner| inner.ttl / 3) else {
        return;
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let topics: Vec<(String, Arc<Local>)> = lock(&inner.local)
            .iter()
            .map(|(topic, local)| (topic.clone(), local.clone()))
            .collect();
        // Concurrently: a server that does not answer delays no other's topics.
        let mut rounds = tokio::task::JoinSet::new();
        for (topic, local) in topics {
            let inner = inner.clone();
            rounds.spawn(async move { inner.reassert(&topic, &local).await });
        }
        drop(inner);
        while rounds.join_next().await.is_some() {}
    }
}

/// Runs a script, within the store's time-out.
async fn run<T: ::redis::FromRedisValue>(
    store: &Inner,
    topic: &str,
    invocation: &::redis::ScriptInvocation<'_>,
) -> Result<T, HubError> {
    let mut conn = store.shard(topic).commands.clone();
    match tokio::time::timeout(
        store.config.timeout,
        invocation.invoke_async::<T>(&mut conn),
    )
    .await
    {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("Redis did not answer in time")),
    }
}

impl PresenceInner {
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
    fn write<'a>(&self, script: &'a Script, topic: &str) -> ::redis::ScriptInvocation<'a> {
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

    /// Writes this node's `count` of `member` (called with the topic's
    /// [`Local`] locked); `kept` of them were there before.
    async fn change(
        &self,
        topic: &str,
        member: &str,
        count: usize,
        kept: usize,
    ) -> Result<(), HubError> {
        let mut invocation = self.write(&self.change, topic);
        invocation.arg(member).arg(count).arg(kept);
        let (applied, restored) = run::<(i64, usize)>(&self.store, topic, &invocation).await?;
        if applied == 0 {
            return Err(unavailable("a later write was applied first"));
        }
        let back = std::iter::repeat_n((topic.to_owned(), member.to_owned()), restored);
        lock(&self.restored).extend(back);
        Ok(())
    }

    /// Re-asserts this node's entries in `topic`; forgets the topic once it has
    /// none there.
    async fn reassert(&self, topic: &str, local: &Arc<Local>) {
        let mut counts = local.lock().await;
        if counts.gone {
            return;
        }
        let mut invocation = self.write(&self.assert, topic);
        for (member, n) in &counts.members {
            invocation.arg(member).arg(*n);
        }
        // A failure is retried at the next round.
        let Ok((1, restored)) = run::<(i64, Vec<String>)>(&self.store, topic, &invocation).await
        else {
            return;
        };
        let back = restored
            .into_iter()
            .map(|member| (topic.to_owned(), member));
        lock(&self.restored).extend(back);
        counts.members.retain(|_, n| *n > 0);
        self.forget_if_empty(topic, local, &mut counts);
    }

    /// Removes `topic` from `local` when this node has no entry left there.
    fn forget_if_empty(&self, topic: &str, entry: &Arc<Local>, counts: &mut Counts) {
        if counts.members.is_empty() {
            counts.gone = true;
            let mut local = lock(&self.local);
            if local.get(topic).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                local.remove(topic);
            }
        }
    }

    /// Runs the look script: `(alive, expired)`; the expired entries are
    /// queued for `expired` before this returns.
    async fn look(&self, topic: &str) -> Result<Vec<String>, HubError> {
        let [hash, nodes, seqs, taken] = self.keys(topic);
        let remember = self.ttl_ms().saturating_mul(u64::from(RESTORE_TTLS));
        let mut invocation = self.look.key(hash);
        invocation
            .key(nodes)
            .key(seqs)
            .key(taken)
            .arg(&self.node)
            .arg(remember);
        let (alive, expired) =
            run::<(Vec<String>, Vec<String>)>(&self.store, topic, &invocation).await?;
        let expired = expired.into_iter().map(|member| (topic.to_owned(), member));
        lock(&self.taken).extend(expired);
        Ok(alive)
    }
}

impl Presence for RedisPresence {
    /// Counts the connection here first, then writes it to Redis; an error
    /// means the write failed, and is retried by the next renewal.
    fn join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            loop {
                let entry = lock(&self.inner.local)
                    .entry(topic.to_owned())
                    .or_default()
                    .clone();
                let mut counts = entry.lock().await;
                if counts.gone {
                    continue;
                }
                let n = counts.members.entry(member.to_owned()).or_insert(0);
                *n += 1;
                let n = *n;
                return self.inner.change(topic, member, n, n - 1).await;
            }
        })
    }

    /// Uncounts the connection here first, then writes it to Redis; an error
    /// means the write failed, and is retried by the next renewal.
    fn leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let Some(entry) = lock(&self.inner.local).get(topic).cloned() else {
                return Ok(());
            };
            let mut counts = entry.lock().await;
            let n = match counts.members.get_mut(member) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    *n
                }
                _ => return Ok(()),
            };
            self.inner.change(topic, member, n, n).await?;
            if n == 0 {
                counts.members.remove(member);
                self.inner.forget_if_empty(topic, &entry, &mut counts);
            }
            Ok(())
        })
    }

    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move {
            lock(&self.inner.watched).insert(topic.to_owned());
            let mut alive = self.inner.look(topic).await?;
            alive.sort_unstable();
            Ok(alive)
        })
    }

    /// Looks at every topic this node has members in or was asked about, and
    /// returns what it took, with what `members` took before. A topic whose
    /// look fails is looked at again next time; the error is returned only
    /// when there is nothing to return.
    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(async move {
            let mut topics: HashSet<String> = lock(&self.inner.local).keys().cloned().collect();
            topics.extend(lock(&self.inner.watched).iter().cloned());
            let mut error = None;
            for topic in topics {
                match self.inner.look(&topic).await {
                    // No one left: stop looking (unless it has members here).
                    Ok(alive) if alive.is_empty() => {
                        lock(&self.inner.watched).remove(&topic);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            let taken = std::mem::take(&mut *lock(&self.inner.taken));
            match error {
                Some(e) if taken.is_empty() => Err(e),
                _ => Ok(taken),
            }
        })
    }

    fn restored(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        let restored = std::mem::take(&mut *lock(&self.inner.restored));
        Box::pin(std::future::ready(Ok(restored)))
    }
}
