//! Publishes per second through Redis from one node with many concurrent
//! publishers, beside Redis's own unpipelined floor (`tools/redis_publish.sh`
//! runs both).
//!
//! ```sh
//! cargo build --release -p tower-sse-tools --bin redis_publish
//! tools/redis_publish.sh                     # redis-benchmark, then this, same Redis
//! target/release/redis_publish 64 5          # 64 publishers for 5 s, 16 topics
//! target/release/redis_publish 64 5 1        # the same on one topic
//! ```
//!
//! One `Hub` on a `RedisStore` (Redis at `REDIS_URL`, default
//! `redis://127.0.0.1:6379`, keys under a fresh prefix, deleted at the end).
//! `P` publisher tasks (first argument, default 64) on a two-worker tokio
//! runtime each publish a 110-byte chat message, one after the other, each
//! awaiting its acknowledgement (the event stored in Redis), to one of `T`
//! topics (third argument, default 16; publisher `p` on topic `p % T`), for
//! `S` seconds (second argument, default 5). It prints the publishes per
//! second, their latency (p50, p99), the Redis round trips per publish and
//! Redis's time per publish in them, read from `INFO commandstats` (`EVALSHA`
//! calls and their microseconds: several publishes share a call when the
//! store batches them; wall-clock time, which counts the time Redis waited
//! for a core), and Redis's CPU time per publish (`INFO cpu`, the whole
//! server's: other clients' load counts too).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tower_sse::Event;
use tower_sse_hub::{Hub, HubConfig};
use tower_sse_redis::{RedisConfig, RedisStore};

const DATA: &str = r#"{"room":"lobby","user":"alice","text":"hello everyone, how is it going today?","ts":1700000000000}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let publishers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let topics: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(16)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(publishers, Duration::from_secs(seconds), topics));
}

async fn run(publishers: usize, length: Duration, topics: usize) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("pubbench-{}", std::process::id());
    let config = RedisConfig::new(&url)
        .prefix(&prefix)
        .hub(HubConfig::new().history_len(1_000));
    let hub = Hub::with_store(RedisStore::new(config).expect("a store"));
    hub.publish("probe", Event::message("x"))
        .await
        .unwrap_or_else(|e| panic!("Redis at {url}: {e}"));
    // Warm-up: every topic exists and every script is loaded.
    for t in 0..topics {
        hub.publish(&format!("t{t}"), Event::message(DATA))
            .await
            .expect("published");
    }
    let (calls_before, usec_before) = evalsha_stats(&url).await;
    let cpu_before = redis_cpu(&url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..publishers)
        .map(|p| {
            let (hub, stop) = (hub.clone(), stop.clone());
            tokio::spawn(async move {
                let topic = format!("t{}", p % topics);
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    hub.publish(&topic, Event::message(DATA))
                        .await
                        .expect("published");
                    latencies.push(at.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a publisher"));
    }
    let elapsed = start.elapsed();
    let (calls_after, usec_after) = evalsha_stats(&url).await;
    let cpu_after = redis_cpu(&url).await;
    latencies.sort_unstable();
    let n = latencies.len();
    let at = |q: f64| latencies[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{publishers} publishers, {topics} topics: {:.0} publishes/s ({n} in {:.2} s), latency p50 {:?}, p99 {:?}, {:.3} round trips per publish, Redis {:.2} µs per publish in scripts, {:.2} µs of CPU",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        at(0.5),
        at(0.99),
        (calls_after - calls_before) as f64 / n as f64,
        (usec_after - usec_before) as f64 / n as f64,
        (cpu_after - cpu_before) * 1e6 / n as f64,
    );
    clean(&url, &prefix).await;
}

/// `EVALSHA` calls so far (each one publish, or a batch of them) and the
/// microseconds Redis spent in them.
async fn evalsha_stats(url: &str) -> (u64, u64) {
    let info = info(url, "commandstats").await;
    let Some(line) = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
    else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("calls="), field("usec="))
}

/// Redis's CPU time so far, in seconds (user and system).
async fn redis_cpu(url: &str) -> f64 {
    info(url, "cpu")
        .await
        .lines()
        .filter_map(|l| {
            l.strip_prefix("used_cpu_user:")
                .or_else(|| l.strip_prefix("used_cpu_sys:"))
        })
        .filter_map(|n| n.trim().parse::<f64>().ok())
        .sum()
}

/// One section of Redis's `INFO`.
async fn info(url: &str, section: &str) -> String {
    let client = redis::Client::open(url).expect("a URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .expect("INFO")
}

/// Deletes the run's keys (they would expire with the history TTL anyway).
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
