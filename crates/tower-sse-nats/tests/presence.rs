//! `NatsPresence` against a real nats-server: members across nodes, a dead
//! node's members handed out once, a lapsed node's members restored.

mod support;

use std::time::Duration;

use support::{addr, config, server, Proxy};
use tower_sse_hub::Presence;
use tower_sse_nats::{NatsConfig, NatsPresence};

async fn presence(config: &NatsConfig, ttl: Duration) -> NatsPresence {
    NatsPresence::connect(config.clone(), ttl).await.unwrap()
}

#[tokio::test]
async fn members_across_nodes() {
    let Some(url) = server().await else { return };
    let config = config(&url, "members");
    let a = presence(&config, Duration::from_secs(30)).await;
    let b = presence(&config, Duration::from_secs(30)).await;
    a.join("room", "alice").await.unwrap();
    b.join("room", "bob").await.unwrap();
    b.join("room", "alice").await.unwrap();
    assert_eq!(a.members("room").await.unwrap(), ["alice", "alice", "bob"]);
    b.leave("room", "alice").await.unwrap();
    assert_eq!(b.members("room").await.unwrap(), ["alice", "bob"]);
    b.leave("room", "nobody").await.unwrap();
    assert_eq!(a.members("other").await.unwrap(), Vec::<String>::new());
    assert!(a.expired().await.unwrap().is_empty(), "no node died");
    a.leave("room", "alice").await.unwrap();
    b.leave("room", "bob").await.unwrap();
    assert!(a.members("room").await.unwrap().is_empty());
    // On a broker's connection.
    let broker = tower_sse_nats::NatsBroker::connect(config.clone())
        .await
        .unwrap();
    let c = NatsPresence::with_broker(&broker, Duration::from_secs(30));
    c.join("room", "carol").await.unwrap();
    assert_eq!(a.members("room").await.unwrap(), ["carol"]);
    c.leave("room", "carol").await.unwrap();
    // Any topic and member name.
    a.join("a.b c/é*>", "x.y z").await.unwrap();
    assert_eq!(b.members("a.b c/é*>").await.unwrap(), ["x.y z"]);
}

#[tokio::test]
async fn a_dropped_node_s_members_expire_and_one_survivor_reports_them() {
    let Some(url) = server().await else { return };
    let config = config(&url, "expiry");
    let ttl = Duration::from_millis(600);
    let (b, c) = (presence(&config, ttl).await, presence(&config, ttl).await);
    {
        let a = presence(&config, ttl).await;
        a.join("room", "ghost").await.unwrap();
        a.join("room", "ghost").await.unwrap();
        // Dropped without leaving: the node crashed.
    }
    b.join("room", "bob").await.unwrap();
    assert_eq!(c.members("room").await.unwrap(), ["bob", "ghost", "ghost"]);
    b.members("room").await.unwrap();
    // B and C keep renewing their own; A's lapse. Both look; one gets them.
    let mut reported = Vec::new();
    for _ in 0..400 {
        let (from_b, from_c) = tokio::join!(b.expired(), c.expired());
        reported.extend(from_b.unwrap());
        reported.extend(from_c.unwrap());
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
    tokio::time::sleep(ttl).await;
    assert_eq!(c.members("room").await.unwrap(), ["bob"]);
    assert!(b.expired().await.unwrap().is_empty());
    assert!(c.expired().await.unwrap().is_empty());
}

/// A node cut off for longer than the TTL loses its members to a survivor
/// (which announces their `leave`); when it is back it re-adds them and hands
/// them out as restored, to announce their `join`. Not those that left.
#[tokio::test]
async fn a_lapsed_node_restores_its_members() {
    let Some(url) = server().await else { return };
    let proxy = Proxy::to(addr()).await;
    let shared = config(&url, "lapse");
    let ttl = Duration::from_millis(600);
    let via_proxy = NatsConfig::new(proxy.url())
        .prefix(shared.get_prefix())
        .timeout(Duration::from_millis(300));
    let a = presence(&via_proxy, ttl).await;
    let b = presence(&shared, ttl).await;
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if b.members("room").await.unwrap() == ["alice", "alice", "bob"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's members are back: {:?}",
            b.members("room").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.expired().await.unwrap().is_empty(), "no more leaves");
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

/// Joins and leaves racing with the renewals: the bucket ends with this
/// node's counts, never a member that left.
#[tokio::test]
async fn renewals_never_resurrect_a_member_that_left() {
    let Some(url) = server().await else { return };
    let config = config(&url, "race");
    let a = presence(&config, Duration::from_millis(300)).await;
    let b = presence(&config, Duration::from_secs(30)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..4 {
        let a = a.clone();
        tasks.spawn(async move {
            for round in 0..15 {
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.members("room").await.unwrap(), ["stays"]);
    assert_eq!(a.members("room").await.unwrap(), ["stays"]);
}

/// `roster`: every node's connections counted from their totals (a member
/// connected twice, on one node or two, counts twice), at most `limit` names.
#[tokio::test]
async fn roster_counts_every_node_and_bounds_names() {
    let Some(url) = server().await else { return };
    let config = config(&url, "roster");
    let a = presence(&config, Duration::from_secs(30)).await;
    let b = presence(&config, Duration::from_secs(30)).await;
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
    let some = a.roster("room", 2).await.unwrap();
    assert_eq!((some.count, some.names.len()), (5, 2));
    assert!(some.names.iter().all(|n| all.names.contains(n)));
    let counted = a.roster("room", 0).await.unwrap();
    assert_eq!((counted.count, counted.names.len()), (5, 0));
    b.leave("room", "alice").await.unwrap();
    a.leave("room", "carol").await.unwrap();
    let left = b.roster("room", 10).await.unwrap();
    assert_eq!(left.count, 3);
    assert_eq!(left.names, ["alice", "alice", "bob"]);
    assert_eq!(a.members("room").await.unwrap(), left.names);
    // A big node: the names stop at the limit.
    for i in 0..100 {
        a.join("big", &format!("m{i:03}")).await.unwrap();
    }
    let roster = b.roster("big", 7).await.unwrap();
    assert_eq!((roster.count, roster.names.len()), (100, 7));
}

/// A node that lapses leaves the count: its members are taken, once, for
/// `expired`; the live nodes' stay counted.
#[tokio::test]
async fn roster_count_drops_a_lapsed_node() {
    let Some(url) = server().await else { return };
    let config = config(&url, "rlapse");
    let ttl = Duration::from_millis(600);
    let (b, c) = (presence(&config, ttl).await, presence(&config, ttl).await);
    {
        let a = presence(&config, ttl).await;
        a.join("room", "ghost").await.unwrap();
        a.join("room", "ghost").await.unwrap();
        a.join("room", "bob").await.unwrap();
        // Dropped without leaving: the node crashed.
    }
    b.join("room", "bob").await.unwrap();
    c.join("room", "carol").await.unwrap();
    assert_eq!(c.roster("room", 0).await.unwrap().count, 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let roster = c.roster("room", 10).await.unwrap();
        if roster.count == 2 || tokio::time::Instant::now() > deadline {
            break roster;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dropped.count, 2);
    assert_eq!(dropped.names, ["bob", "carol"]);
    let mut reported = b.expired().await.unwrap();
    reported.extend(c.expired().await.unwrap());
    reported.sort();
    let entry = |m: &str| ("room".to_owned(), m.to_owned());
    assert_eq!(reported, [entry("bob"), entry("ghost"), entry("ghost")]);
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(b.roster("room", 10).await.unwrap().count, 2);
    assert!(b.expired().await.unwrap().is_empty());
    assert!(c.expired().await.unwrap().is_empty());
}

/// The last sequence of the presence bucket's stream: how many writes it took.
async fn writes(url: &str, config: &NatsConfig) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("KV_{}_presence", config.get_prefix()))
        .await
        .unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// A renewal reads one key per topic instead of rewriting every entry, but
/// for a full rewrite every third TTL: rounds go by without writes.
#[tokio::test]
async fn renewals_do_not_rewrite_entries_every_round() {
    let Some(url) = server().await else { return };
    let config = config(&url, "renew");
    let ttl = Duration::from_millis(600);
    let a = presence(&config, ttl).await;
    for i in 0..50 {
        a.join("room", &format!("m{i}")).await.unwrap();
    }
    // The first round rewrites them all (once), then the rounds only read.
    let joined = writes(&url, &config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while writes(&url, &config).await < joined + 50 {
        assert!(tokio::time::Instant::now() < deadline, "no first rewrite");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rewritten = writes(&url, &config).await;
    // Two rounds (every 200 ms), well before the next full rewrite (1.8 s).
    tokio::time::sleep(ttl * 2 / 3).await;
    assert!(writes(&url, &config).await < rewritten + 10, "rewritten");
    assert_eq!(a.roster("room", 0).await.unwrap().count, 50);
}
