//! Presence across nodes on Redis: members seen from every node, and the
//! members of a node dropped without cleanup expire and are handed to one
//! surviving node, once. Needs Redis; see `redis_support`.

mod redis_support;

use std::time::Duration;

use redis_support::{prefix, shared};
use tower_sse::hub::{MemoryPresence, Presence, RedisConfig, RedisPresence, RedisStore};

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
