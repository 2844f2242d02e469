//! [`RedisPresence`]: presence across the nodes of a cluster.
//!
//! Per topic, on the topic's Redis server (same hash tag as its stream):
//! `PREFIX:{TOPIC}:p`, a hash `NODE|MEMBER -> connections`, and
//! `PREFIX:{TOPIC}:n`, a sorted set of the nodes with members there, scored by
//! the time (Redis's clock, in ms) until which each is alive. A node renews its
//! score every third of the TTL; a node that stops (crash, partition) lets it
//! lapse, and the next node to look takes its entries, in one script, so that
//! each `leave` is published by one node only.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use ::redis::Script;

use super::{unavailable, Inner, RedisStore};
use crate::hub::{presence::Presence, Epoch, HubError, StoreFuture};

/// `KEYS`: hash, nodes. `ARGV`: field, delta, node, TTL ms. Returns nothing.
const CHANGE: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local n = redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then redis.call('hdel', KEYS[1], ARGV[1]) end
redis.call('zadd', KEYS[2], now + ARGV[4], ARGV[3])
redis.call('pexpire', KEYS[1], 2 * ARGV[4])
redis.call('pexpire', KEYS[2], 2 * ARGV[4])
return 0
";

/// `KEYS`: hash, nodes. `ARGV`: node, TTL ms (renew) or empty (look only).
/// Takes the entries of lapsed nodes; returns `{alive members, expired members}`,
/// one entry per connection.
const LOOK: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[2] ~= '' then
  redis.call('zadd', KEYS[2], now + ARGV[2], ARGV[1])
  redis.call('pexpire', KEYS[1], 2 * ARGV[2])
  redis.call('pexpire', KEYS[2], 2 * ARGV[2])
end
local dead = {}
for _, node in ipairs(redis.call('zrangebyscore', KEYS[2], '-inf', now)) do
  dead[node] = true
  redis.call('zrem', KEYS[2], node)
end
local alive, expired = {}, {}
local all = redis.call('hgetall', KEYS[1])
for i = 1, #all, 2 do
  local bar = string.find(all[i], '|', 1, true) or 0
  local node, member = string.sub(all[i], 1, bar - 1), string.sub(all[i], bar + 1)
  local into = alive
  if dead[node] or redis.call('zscore', KEYS[2], node) == false then
    into = expired
    redis.call('hdel', KEYS[1], all[i])
  end
  for _ = 1, (tonumber(all[i + 1]) or 0) do table.insert(into, member) end
end
return {alive, expired}
";

/// [`Presence`] across nodes, on the Redis servers of a [`RedisStore`]: each
/// topic's presence lives on the server of its history. Members of a node that
/// stops refreshing them (it crashed) expire after the TTL, and
/// [`expired`](Presence::expired) hands them to one surviving node.
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
    look: Script,
    /// This node's own connections per topic, and the topics it looked at.
    local: Mutex<HashMap<String, HashMap<String, usize>>>,
    watched: Mutex<HashSet<String>>,
    /// Expired entries taken by `members`, for the next `expired`.
    taken: Mutex<Vec<(String, String)>>,
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
    /// after their node last renewed them; renews every third of `ttl` from a
    /// task that ends when the presence is dropped. Needs a tokio runtime (as
    /// the store did).
    pub fn new(store: &RedisStore, ttl: Duration) -> Self {
        let inner = Arc::new(PresenceInner {
            store: store.inner.clone(),
            node: Epoch::random().to_string(),
            ttl: ttl.max(Duration::from_millis(3)),
            change: Script::new(CHANGE),
            look: Script::new(LOOK),
            local: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            taken: Mutex::new(Vec::new()),
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
        let topics: Vec<String> = lock(&inner.local).keys().cloned().collect();
        for topic in topics {
            // A failure is retried at the next round, well within the TTL.
            if let Ok((_, expired)) = inner.look(&topic, true).await {
                let taken = expired.into_iter().map(|member| (topic.clone(), member));
                lock(&inner.taken).extend(taken);
            }
        }
    }
}

impl PresenceInner {
    fn keys(&self, topic: &str) -> (String, String) {
        let prefix = &self.store.config.prefix;
        (
            format!("{prefix}:{{{topic}}}:p"),
            format!("{prefix}:{{{topic}}}:n"),
        )
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX / 4)
    }

    async fn change(&self, topic: &str, member: &str, delta: i64) -> Result<(), HubError> {
        let (hash, nodes) = self.keys(topic);
        let mut conn = self.store.shard(topic).commands.clone();
        let field = format!("{}|{member}", self.node);
        let mut invocation = self.change.key(hash);
        invocation
            .key(nodes)
            .arg(field)
            .arg(delta)
            .arg(&self.node)
            .arg(self.ttl_ms());
        let run = invocation.invoke_async::<i64>(&mut conn);
        match tokio::time::timeout(self.store.config.timeout, run).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("Redis did not answer in time")),
        }
    }

    /// Runs the look script: `(alive, expired)`.
    async fn look(&self, topic: &str, renew: bool) -> Result<(Vec<String>, Vec<String>), HubError> {
        let (hash, nodes) = self.keys(topic);
        let mut conn = self.store.shard(topic).commands.clone();
        let ttl = if renew {
            self.ttl_ms().to_string()
        } else {
            String::new()
        };
        let mut invocation = self.look.key(hash);
        invocation.key(nodes).arg(&self.node).arg(ttl);
        let run = invocation.invoke_async::<(Vec<String>, Vec<String>)>(&mut conn);
        match tokio::time::timeout(self.store.config.timeout, run).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("Redis did not answer in time")),
        }
    }
}

impl Presence for RedisPresence {
    fn join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            self.inner.change(topic, member, 1).await?;
            let mut local = lock(&self.inner.local);
            *local
                .entry(topic.to_owned())
                .or_default()
                .entry(member.to_owned())
                .or_insert(0) += 1;
            Ok(())
        })
    }

    fn leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            {
                let mut local = lock(&self.inner.local);
                if let Some(members) = local.get_mut(topic) {
                    if let Some(n) = members.get_mut(member) {
                        *n -= 1;
                        if *n == 0 {
                            members.remove(member);
                        }
                    }
                    if members.is_empty() {
                        local.remove(topic);
                    }
                }
            }
            self.inner.change(topic, member, -1).await
        })
    }

    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move {
            lock(&self.inner.watched).insert(topic.to_owned());
            let (mut alive, expired) = self.inner.look(topic, false).await?;
            let taken = expired.into_iter().map(|member| (topic.to_owned(), member));
            lock(&self.inner.taken).extend(taken);
            alive.sort_unstable();
            Ok(alive)
        })
    }

    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(async move {
            let mut topics: HashSet<String> = lock(&self.inner.local).keys().cloned().collect();
            topics.extend(lock(&self.inner.watched).drain());
            let mut out = std::mem::take(&mut *lock(&self.inner.taken));
            for topic in topics {
                let renew = lock(&self.inner.local).contains_key(&topic);
                let (alive, expired) = self.inner.look(&topic, renew).await?;
                if !alive.is_empty() && !renew {
                    // Still someone's: keep looking at it.
                    lock(&self.inner.watched).insert(topic.clone());
                }
                out.extend(expired.into_iter().map(|member| (topic.clone(), member)));
            }
            Ok(out)
        })
    }
}
