//! The hub on Redis with 3 nodes against the in-process hub, in one run:
//!
//! - publish-to-deliver latency (p50, p99) of sequential publishes, seen by a
//!   subscriber on each node;
//! - events delivered per second with 3 nodes and N subscribers per node, with
//!   concurrent publishers on every node;
//! - Redis commands per publish (`INFO commandstats`).
//!
//! `cargo bench -p tower-sse-redis --bench redis` (Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`; `BENCH_SUBSCRIBERS` per node, default 100; keys
//! under a fresh prefix, deleted at the end). Under `cargo test
//! --benches` it runs a small round as a smoke test. The floor, Redis itself:
//! `redis-benchmark -q -n 200000 publish chan hello` and
//! `redis-benchmark -q -n 200000 xadd bench '*' d x`.

use std::time::{Duration, Instant};

use futures_util::{future::join_all, StreamExt};
use tower_sse::Event;
use tower_sse_hub::{Hub, HubConfig};
use tower_sse_redis::{RedisConfig, RedisStore};

struct Size {
    latency_events: usize,
    subscribers_per_node: usize,
    publishers_per_node: usize,
    events_per_publisher: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        Size {
            latency_events: 2000,
            subscribers_per_node: std::env::var("BENCH_SUBSCRIBERS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(100),
            publishers_per_node: 4,
            events_per_publisher: 500,
        }
    } else {
        Size {
            latency_events: 20,
            subscribers_per_node: 2,
            publishers_per_node: 1,
            events_per_publisher: 10,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&size));
}

async fn run(size: &Size) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bench-{}", std::process::id());
    let config = || {
        HubConfig::new()
            .history_len(100_000)
            .queue_capacity(1 << 20)
    };
    let redis_nodes = |n: usize| -> Vec<Hub> {
        (0..n)
            .map(|_| {
                let config = RedisConfig::new(&url).prefix(&prefix).hub(config());
                Hub::with_store(RedisStore::new(config).expect("a store"))
            })
            .collect()
    };
    let nodes = redis_nodes(3);
    if let Err(e) = nodes[0].publish("probe", Event::message("x")).await {
        if std::env::var_os("CI").is_some() {
            panic!("the redis bench needs Redis at {url}: {e}");
        }
        println!("SKIP redis bench: {e}");
        return;
    }
    let local = Hub::with_config(config());
    let in_process = vec![local.clone(), local.clone(), local];

    for (name, hubs) in [("in-process", &in_process), ("redis, 3 nodes", &nodes)] {
        let (p50, p99) = latency(hubs, &format!("lat-{name}"), size.latency_events).await;
        println!(
            "latency {name}: p50 {p50:?}, p99 {p99:?} ({} events)",
            size.latency_events
        );
    }
    for (name, hubs) in [("in-process", &in_process), ("redis, 3 nodes", &nodes)] {
        let (rate, total) = throughput(hubs, &format!("tp-{name}"), size).await;
        println!(
            "delivered {name}: {rate:.0} events/s ({total} deliveries to {} subscribers)",
            3 * size.subscribers_per_node
        );
    }
    let (before, calls_before) = commands(&url).await;
    let n = 1000;
    for i in 0..n {
        nodes[0]
            .publish("rt", Event::message(i.to_string()))
            .await
            .expect("published");
    }
    let (after, calls_after) = commands(&url).await;
    // One EVALSHA is one round trip; the commands count those the script runs.
    println!(
        "round trips per publish: {:.2} (Redis commands run per publish, inside the script included: {:.2})",
        (calls_after - calls_before) as f64 / n as f64,
        (after - before) as f64 / n as f64,
    );
    clean(&url, &prefix).await;
}

/// Deletes the bench's keys (they would expire with the history TTL anyway).
async fn clean(url: &str, prefix: &str) {
    let client = redis::Client::open(url).expect("a URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<i64, _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    }
}

/// Sequential publishes on node 0, each stamped, the next once every node's
/// subscriber got the last (unloaded latency); a subscriber per hub records
/// when it got each. Returns (p50, p99) over every delivery.
async fn latency(hubs: &[Hub], topic: &str, events: usize) -> (Duration, Duration) {
    let start = Instant::now();
    let mut readers = Vec::new();
    let (ack, mut acks) = tokio::sync::mpsc::unbounded_channel::<()>();
    for hub in hubs {
        let mut sub = hub.subscribe(topic, None).await.expect("subscribed");
        let ack = ack.clone();
        readers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(events);
            for _ in 0..events {
                let event = sub.next().await.expect("an event");
                let text = String::from_utf8_lossy(event.as_bytes()).into_owned();
                let sent: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                lat.push(start.elapsed().saturating_sub(Duration::from_nanos(sent)));
                let _ = ack.send(());
            }
            lat
        }));
    }
    for _ in 0..events {
        let stamp = start.elapsed().as_nanos().to_string();
        hubs[0]
            .publish(topic, Event::message(stamp))
            .await
            .expect("published");
        for _ in hubs {
            acks.recv().await.expect("an ack");
        }
    }
    let mut all: Vec<Duration> = join_all(readers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("reader"))
        .collect();
    all.sort_unstable();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    (at(0.50), at(0.99))
}

/// Concurrent publishers on every hub, N subscribers per hub; returns
/// deliveries per second until every subscriber has every event.
async fn throughput(hubs: &[Hub], topic: &str, size: &Size) -> (f64, usize) {
    let total = hubs.len() * size.publishers_per_node * size.events_per_publisher;
    let mut readers = Vec::new();
    for hub in hubs {
        for _ in 0..size.subscribers_per_node {
            let mut sub = hub.subscribe(topic, None).await.expect("subscribed");
            readers.push(tokio::spawn(async move {
                for _ in 0..total {
                    sub.next().await.expect("an event");
                }
            }));
        }
    }
    let start = Instant::now();
    let publishers: Vec<_> = hubs
        .iter()
        .flat_map(|hub| (0..size.publishers_per_node).map(move |_| hub.clone()))
        .map(|hub| {
            let topic = topic.to_owned();
            let n = size.events_per_publisher;
            tokio::spawn(async move {
                for i in 0..n {
                    let data = format!("{{\"n\":{i},\"text\":\"a chat message of typical size\"}}");
                    hub.publish(&topic, Event::message(data))
                        .await
                        .expect("published");
                }
            })
        })
        .collect();
    join_all(publishers).await;
    let deliveries = total * readers.len();
    join_all(readers).await;
    (
        deliveries as f64 / start.elapsed().as_secs_f64(),
        deliveries,
    )
}

/// (total commands processed, evalsha calls) of the server.
async fn commands(url: &str) -> (u64, u64) {
    let client = redis::Client::open(url).expect("a URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let commandstats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let total = stats
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let evalsha = commandstats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (total, evalsha)
}
