//! Presence across nodes on Redis: members seen from every node, and the
//! members of a node dropped without cleanup expire and are handed to one
//! surviving node, once. Under faults (Redis cut off for one node through a
//! proxy, or restarted empty) presence converges: no ghost, no lost `leave`,
//! and members announced gone by mistake are handed out as restored. Needs
//! Redis (the fault tests start their own `redis-server`); see `redis_support`.

mod redis_support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use redis_support::{command, prefix, shared, Private};
use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
};
use tower_sse_hub::{MemoryPresence, Presence};
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::new(RedisConfig::new(url).prefix(prefix)).unwrap()
}

#[tokio::test]
async fn members_across_nodes() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("presence");
    let a = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    let b = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    a.join("room", "alice").await.unwrap();
    b.join("room", "bob").await.unwrap();
    b.join("room", "alice").await.unwrap();
    assert_eq!(a.members("room").await.unwrap(), ["alice", "alice", "bob"]);
    b.leave("room", "alice").await.unwrap();
    assert_eq!(b.members("room").await.unwrap(), ["alice", "bob"]);
    assert_eq!(a.members("other").await.unwrap(), Vec::<String>::new());
    assert!(a.expired().await.unwrap().is_empty(), "no node died");
}

#[tokio::test]
async fn a_dropped_node_s_members_expire_and_one_survivor_reports_them() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("expiry");
    let ttl = Duration::from_millis(300);
    let (b, c) = (
        RedisPresence::new(&store(&url, &prefix), ttl),
        RedisPresence::new(&store(&url, &prefix), ttl),
    );
    {
        let a = RedisPresence::new(&store(&url, &prefix), ttl);
        a.join("room", "ghost").await.unwrap();
        a.join("room", "ghost").await.unwrap();
        // Dropped without leaving: the node crashed.
    }
    b.join("room", "bob").await.unwrap();
    assert_eq!(c.members("room").await.unwrap(), ["bob", "ghost", "ghost"]);
    // B and C keep refreshing their own; A's lapse. Both look; one gets them.
    let mut reported = Vec::new();
    for _ in 0..200 {
        reported.extend(b.expired().await.unwrap());
        reported.extend(c.expired().await.unwrap());
        if !reported.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    reported.extend(b.expired().await.unwrap());
    reported.extend(c.expired().await.unwrap());
    let ghost = ("room".to_owned(), "ghost".to_owned());
    assert_eq!(
        reported,
        [ghost.clone(), ghost],
        "each lost connection once"
    );
    // B's member outlives A's: B renews it.
    assert_eq!(c.members("room").await.unwrap(), ["bob"]);
}

#[tokio::test]
async fn memory_presence_counts_connections() {
    let presence = MemoryPresence::new();
    presence.join("r", "x").await.unwrap();
    presence.join("r", "x").await.unwrap();
    presence.leave("r", "x").await.unwrap();
    presence.leave("r", "nobody").await.unwrap();
    assert_eq!(presence.members("r").await.unwrap(), ["x"]);
    presence.leave("r", "x").await.unwrap();
    assert!(presence.members("r").await.unwrap().is_empty());
}

/// A TCP proxy to a Redis server that the test can cut: while cut, every
/// connection through it is dropped and new ones are closed at once, so that
/// Redis is unreachable for the nodes that use it, and only for them.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn to(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                            let _ = copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            cut,
            links,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones until `heal`.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A store with short timeouts, for fault tests.
fn quick_store(url: &str, prefix: &str) -> RedisStore {
    let config = RedisConfig::new(url)
        .prefix(prefix)
        .timeout(Duration::from_millis(300));
    RedisStore::new(config).unwrap()
}

/// Calls `f` until it returns `Some`, for at most `bound`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    bound: Duration,
    mut f: impl FnMut() -> F,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(found) = f().await {
            return Some(found);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The members of `topic` straight from Redis (the hash `PREFIX:{TOPIC}:p:NODE`,
/// `MEMBER -> connections`, of each node with a total in `PREFIX:{TOPIC}:pc`),
/// without taking anything.
async fn raw_members(url: &str, prefix: &str, topic: &str) -> Vec<String> {
    let nodes: Vec<String> = command(
        url,
        redis::cmd("HKEYS").arg(format!("{prefix}:{{{topic}}}:pc")),
    )
    .await;
    let mut names = Vec::new();
    for node in nodes {
        let all: Vec<(String, i64)> = command(
            url,
            redis::cmd("HGETALL").arg(format!("{prefix}:{{{topic}}}:p:{node}")),
        )
        .await;
        for (member, n) in all {
            for _ in 0..n {
                names.push(member.clone());
            }
        }
    }
    names.sort_unstable();
    names
}

/// (a) Expired entries already taken out of Redis survive a failed look: the
/// ghost's entry taken by `members` is handed out by a later `expired` even
/// though the first `expired` after it could not reach Redis.
#[tokio::test]
async fn taken_entries_survive_a_failed_look() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let proxy = Proxy::to(redis.port).await;
    let prefix = prefix("taken");
    let ttl = Duration::from_millis(300);
    {
        let a = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
        a.join("room", "ghost").await.unwrap();
        // Dropped without leaving: the node crashed.
    }
    let c = RedisPresence::new(&quick_store(&proxy.url(), &prefix), ttl);
    // Once A's lease lapsed, C's `members` takes its entry (for `expired`).
    let seen = eventually(Duration::from_secs(5), || async {
        c.members("room").await.ok().filter(Vec::is_empty)
    })
    .await;
    assert!(seen.is_some(), "the ghost's lease lapses");
    proxy.cut();
    let mut reported = c.expired().await.unwrap_or_default();
    proxy.heal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reported.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        reported.extend(c.expired().await.unwrap_or_default());
    }
    assert_eq!(reported, [("room".to_owned(), "ghost".to_owned())]);
}

/// (b) A leave whose write fails (Redis unreachable) is retried: the node's
/// own counts win, and the member does not stay listed under its live lease.
#[tokio::test]
async fn a_failed_leave_is_retried() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let proxy = Proxy::to(redis.port).await;
    let prefix = prefix("leave");
    let ttl = Duration::from_millis(600);
    let a = RedisPresence::new(&quick_store(&proxy.url(), &prefix), ttl);
    a.join("room", "alice").await.unwrap();
    a.join("room", "bob").await.unwrap();
    proxy.cut();
    assert!(a.leave("room", "alice").await.is_err(), "Redis is cut off");
    proxy.heal();
    let url = redis.url();
    let gone = eventually(Duration::from_secs(5), || async {
        (raw_members(&url, &prefix, "room").await == ["bob"]).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "alice stays a ghost: {:?}",
        raw_members(&url, &prefix, "room").await
    );
    assert_eq!(a.members("room").await.unwrap(), ["bob"]);
}

/// (c) A node cut off from Redis for longer than the TTL loses its members to
/// a survivor (which announces their `leave`); when it is back it re-adds
/// them, and hands them out as restored, to announce their `join`.
#[tokio::test]
async fn a_lapsed_node_restores_its_members() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let proxy = Proxy::to(redis.port).await;
    let prefix = prefix("lapse");
    let ttl = Duration::from_millis(400);
    let a = RedisPresence::new(&quick_store(&proxy.url(), &prefix), ttl);
    let b = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
    a.join("room", "alice").await.unwrap();
    a.join("room", "alice").await.unwrap();
    a.join("room", "carol").await.unwrap();
    b.join("room", "bob").await.unwrap();
    assert_eq!(
        b.members("room").await.unwrap(),
        ["alice", "alice", "bob", "carol"]
    );
    proxy.cut();
    let mut left = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while left.len() < 3 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        left.extend(b.expired().await.unwrap_or_default());
    }
    left.sort();
    let entry = |m: &str| ("room".to_owned(), m.to_owned());
    assert_eq!(left, [entry("alice"), entry("alice"), entry("carol")]);
    // Carol disconnects while A is cut off: her leave was announced already.
    let _ = a.leave("room", "carol").await;
    assert_eq!(b.members("room").await.unwrap(), ["bob"]);
    proxy.heal();
    let back = eventually(Duration::from_secs(5), || async {
        (b.members("room").await.ok()? == ["alice", "alice", "bob"]).then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "A's members are back: {:?}",
        b.members("room").await
    );
    assert!(b.expired().await.unwrap().is_empty(), "no more leaves");
    // A hands out the ones announced gone and still here, once each: their
    // `join`. Not carol, who left.
    let mut restored = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while restored.len() < 2 && tokio::time::Instant::now() < deadline {
        restored.extend(a.restored().await.unwrap());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(ttl).await;
    restored.extend(a.restored().await.unwrap());
    assert_eq!(restored, [entry("alice"), entry("alice")]);
    assert!(b.restored().await.unwrap().is_empty());
}

/// Joins and leaves racing with the renewals (every 50 ms) and with one
/// another: Redis ends with this node's counts, never a member that left.
#[tokio::test]
async fn renewals_never_resurrect_a_member_that_left() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("race");
    let a = RedisPresence::new(&store(&url, &prefix), Duration::from_millis(150));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let a = a.clone();
        tasks.spawn(async move {
            for round in 0..40 {
                let member = format!("m{}", (task + round) % 5);
                a.join("room", &member).await.unwrap();
                if round % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                a.leave("room", &member).await.unwrap();
            }
        });
    }
    a.join("room", "stays").await.unwrap();
    while tasks.join_next().await.is_some() {}
    // Two renewals later, Redis still has only what this node counts.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(raw_members(&url, &prefix, "room").await, ["stays"]);
    assert_eq!(a.members("room").await.unwrap(), ["stays"]);
}

/// Redis restarted empty: each node re-adds its members at its next renewal,
/// without announcing anything (no `leave` was).
#[tokio::test]
async fn members_come_back_after_redis_restarts_empty() {
    let Some(mut redis) = Private::start().await else {
        return;
    };
    let prefix = prefix("restart");
    let ttl = Duration::from_millis(300);
    let a = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
    a.join("room", "alice").await.unwrap();
    redis.stop();
    redis.run().await.unwrap();
    let url = redis.url();
    let back = eventually(Duration::from_secs(5), || async {
        (raw_members(&url, &prefix, "room").await == ["alice"]).then_some(())
    })
    .await;
    assert!(back.is_some(), "alice is re-added");
    assert!(a.expired().await.unwrap().is_empty());
    assert!(a.restored().await.unwrap().is_empty());
}

/// What is remembered of a lapsed node (its taken entries, to announce them
/// back; its last write's number) is forgotten ten TTLs after it lapsed, even
/// in a topic that stays busy (nodes lapsing there all the time).
#[tokio::test]
async fn lapsed_nodes_are_forgotten_after_ten_ttls() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("forget");
    let ttl = Duration::from_millis(50);
    let b = RedisPresence::new(&store(&url, &prefix), ttl);
    b.join("room", "b").await.unwrap();
    let start = tokio::time::Instant::now();
    let mut ghosts = 0;
    while start.elapsed() < ttl * 20 {
        let ghost = format!("ghost{ghosts}");
        ghosts += 1;
        {
            let a = RedisPresence::new(&store(&url, &prefix), ttl);
            a.join("room", &ghost).await.unwrap();
        }
        let taken = eventually(Duration::from_secs(5), || async {
            Some(b.expired().await.unwrap()).filter(|taken| !taken.is_empty())
        })
        .await;
        assert_eq!(taken, Some(vec![("room".to_owned(), ghost)]));
    }
    let key = |k: &str| format!("{prefix}:{{room}}:{k}");
    let taken: Vec<String> = command(&url, redis::cmd("HKEYS").arg(key("pt"))).await;
    let seqs: Vec<String> = command(&url, redis::cmd("HKEYS").arg(key("ps"))).await;
    let last = format!("|ghost{}", ghosts - 1);
    assert!(
        taken.iter().any(|field| field.ends_with(&last)),
        "{taken:?}"
    );
    assert!(
        !taken.iter().any(|field| field.ends_with("|ghost0")),
        "{taken:?}"
    );
    assert!(
        seqs.len() < ghosts,
        "{ghosts} lapsed nodes, {} remembered",
        seqs.len()
    );
}

/// Presence and history live side by side in a topic (same hash tag) without
/// stepping on each other's keys, through a lapse and its restore too.
#[tokio::test]
async fn presence_and_history_share_a_topic() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("shared");
    let store = store(&url, &prefix);
    let presence = RedisPresence::new(&store, Duration::from_secs(30));
    let hub = tower_sse_hub::Hub::with_store(store);
    hub.publish("room", tower_sse::Event::default().data("one"))
        .await
        .unwrap();
    presence.join("room", "alice").await.unwrap();
    presence.join("room", "bob").await.unwrap();
    presence.leave("room", "bob").await.unwrap();
    hub.publish("room", tower_sse::Event::default().data("two"))
        .await
        .unwrap();
    assert_eq!(presence.members("room").await.unwrap(), ["alice"]);
    assert!(presence.expired().await.unwrap().is_empty());
}

/// `roster`: the connections of every node counted (a member connected twice,
/// on one node or two, counts twice), and at most `limit` names.
#[tokio::test]
async fn roster_counts_every_node_and_bounds_names() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("roster");
    let a = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    let b = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    let empty = a.roster("room", 10).await.unwrap();
    assert_eq!((empty.count, empty.names.len()), (0, 0));
    a.join("room", "alice").await.unwrap();
    a.join("room", "alice").await.unwrap();
    a.join("room", "carol").await.unwrap();
    b.join("room", "bob").await.unwrap();
    b.join("room", "alice").await.unwrap();
    let all = b.roster("room", 10).await.unwrap();
    assert_eq!(all.count, 5);
    assert_eq!(all.names, ["alice", "alice", "alice", "bob", "carol"]);
    assert!(all.is_complete());
    let some = a.roster("room", 2).await.unwrap();
    assert_eq!(some.count, 5);
    assert_eq!(some.names.len(), 2);
    assert!(some.names.iter().all(|n| all.names.contains(n)));
    let counted = a.roster("room", 0).await.unwrap();
    assert_eq!((counted.count, counted.names.len()), (5, 0));
    b.leave("room", "alice").await.unwrap();
    a.leave("room", "carol").await.unwrap();
    let left = b.roster("room", 10).await.unwrap();
    assert_eq!(left.count, 3);
    assert_eq!(left.names, ["alice", "alice", "bob"]);
    assert_eq!(a.members("room").await.unwrap(), left.names);
}

/// A node with more members than a small hash holds (Redis then scans it):
/// still at most `limit` names, each a member, and the whole count.
#[tokio::test]
async fn roster_of_a_big_room_reads_only_the_limit() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("big");
    let a = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    let b = RedisPresence::new(&store(&url, &prefix), Duration::from_secs(30));
    for i in 0..300 {
        a.join("room", &format!("a{i:03}")).await.unwrap();
    }
    for i in 0..200 {
        b.join("room", &format!("b{i:03}")).await.unwrap();
    }
    b.join("room", "b000").await.unwrap();
    for limit in [1, 50, 299, 300, 301, 450] {
        let roster = b.roster("room", limit).await.unwrap();
        assert_eq!(roster.count, 501, "limit {limit}");
        assert_eq!(roster.names.len(), limit, "limit {limit}");
        assert!(roster.names.windows(2).all(|w| w[0] <= w[1]), "sorted");
        assert!(
            roster
                .names
                .iter()
                .all(|n| (n.starts_with('a') || n.starts_with('b')) && n.len() == 4),
            "{:?}",
            roster.names
        );
    }
    let all = a.roster("room", 1000).await.unwrap();
    assert_eq!((all.count, all.names.len()), (501, 501));
    assert_eq!(all.names, a.members("room").await.unwrap());
}

/// A node that lapses leaves the count (its members are taken, once, for
/// `expired`), and the live nodes' members stay counted.
#[tokio::test]
async fn roster_count_drops_a_lapsed_node() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("rlapse");
    let ttl = Duration::from_millis(300);
    let b = RedisPresence::new(&store(&url, &prefix), ttl);
    let c = RedisPresence::new(&store(&url, &prefix), ttl);
    {
        let a = RedisPresence::new(&store(&url, &prefix), ttl);
        a.join("room", "ghost").await.unwrap();
        a.join("room", "ghost").await.unwrap();
        a.join("room", "bob").await.unwrap();
        // Dropped without leaving: the node crashed.
    }
    b.join("room", "bob").await.unwrap();
    c.join("room", "carol").await.unwrap();
    assert_eq!(c.roster("room", 0).await.unwrap().count, 5);
    let dropped = eventually(Duration::from_secs(5), || async {
        let roster = c.roster("room", 10).await.ok()?;
        (roster.count == 2).then_some(roster)
    })
    .await;
    assert_eq!(
        dropped.map(|r| r.names),
        Some(vec!["bob".into(), "carol".into()])
    );
    let mut reported = b.expired().await.unwrap();
    reported.extend(c.expired().await.unwrap());
    reported.sort();
    let entry = |m: &str| ("room".to_owned(), m.to_owned());
    assert_eq!(reported, [entry("bob"), entry("ghost"), entry("ghost")]);
    // The live nodes renew theirs: still counted rounds later.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(b.roster("room", 10).await.unwrap().count, 2);
    assert!(b.expired().await.unwrap().is_empty());
    assert!(c.expired().await.unwrap().is_empty());
}

/// Redis restarted empty (here: FLUSHALL): every node finds itself unknown at
/// its next round and re-asserts its members; the count and names are right
/// again, and nothing is announced.
#[tokio::test]
async fn roster_is_refilled_after_flushall() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let prefix = prefix("flush");
    let ttl = Duration::from_millis(300);
    let a = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
    let b = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
    a.join("room", "alice").await.unwrap();
    a.join("room", "alice").await.unwrap();
    a.join("room", "carol").await.unwrap();
    b.join("room", "bob").await.unwrap();
    b.join("room", "alice").await.unwrap();
    assert_eq!(a.roster("room", 0).await.unwrap().count, 5);
    let url = redis.url();
    let () = command(&url, &mut redis::cmd("FLUSHALL")).await;
    // A change between the flush and the next round: the node finds itself
    // unknown, so that round still re-asserts the others.
    a.join("room", "dave").await.unwrap();
    let back = eventually(Duration::from_secs(5), || async {
        let roster = b.roster("room", 10).await.ok()?;
        (roster.count == 6).then_some(roster.names)
    })
    .await;
    assert_eq!(
        back,
        Some(
            ["alice", "alice", "alice", "bob", "carol", "dave"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(
        raw_members(&url, &prefix, "room").await,
        ["alice", "alice", "alice", "bob", "carol", "dave"]
    );
    assert!(a.expired().await.unwrap().is_empty());
    assert!(b.expired().await.unwrap().is_empty());
    assert!(a.restored().await.unwrap().is_empty());
    assert!(b.restored().await.unwrap().is_empty());
}

/// The calls of `command` so far on `url` (`INFO commandstats`), 0 if none.
async fn calls(url: &str, command_name: &str) -> u64 {
    let info: String = self::command(url, redis::cmd("INFO").arg("commandstats")).await;
    let line = format!("cmdstat_{command_name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A renewal rewrites no entry while Redis has them all: a node with 200
/// members renews them over several rounds without re-asserting them (which
/// deletes its hash and sets each member again).
#[tokio::test]
async fn renewals_do_not_rewrite_entries() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let prefix = prefix("renew");
    let ttl = Duration::from_millis(150);
    let a = RedisPresence::new(&quick_store(&redis.url(), &prefix), ttl);
    for i in 0..200 {
        a.join("room", &format!("m{i}")).await.unwrap();
    }
    let url = redis.url();
    let (sets, deletes) = (calls(&url, "hset").await, calls(&url, "del").await);
    let renewals = calls(&url, "zadd").await;
    // Several rounds (every 50 ms).
    tokio::time::sleep(ttl * 3).await;
    assert!(
        calls(&url, "zadd").await > renewals,
        "the lease was renewed"
    );
    assert_eq!(calls(&url, "del").await, deletes, "not re-asserted");
    // One per round (the write's number), not one per member.
    assert!(calls(&url, "hset").await - sets < 100, "nothing rewritten");
    assert_eq!(a.roster("room", 0).await.unwrap().count, 200);
}
