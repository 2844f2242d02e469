//! What presence costs Redis (issue 19): `NODES` `RedisPresence` instances
//! (one store each, as on `NODES` servers) join `N` members to one topic, in
//! turn, asking `roster(topic, LIMIT)` every `ROSTER_EVERY` joins; then
//! `ROSTERS` rosters of the full room, an idle hold of `HOLD_ROUNDS` renewal
//! rounds, and every member leaving. After each phase it prints what Redis
//! spent (`INFO commandstats` for the scripts, `INFO cpu` for the process),
//! per operation.
//!
//! Run by `tools/presence_cost.sh`, which starts a private `redis-server`;
//! `REDIS_URL` names it. The server's statistics are reset: do not point it at
//! a shared Redis.
//!
//! Environment: `REDIS_URL` (required), `N` (15000), `NODES` (3), `LIMIT`
//! (1000), `ROSTER_EVERY` (100; 0 for none during the joins), `ROSTERS`
//! (100), `TTL_MS` (3000), `HOLD_ROUNDS` (3).

use std::{env, time::Duration};

use tower_sse_hub::Presence;
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

fn setting(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Redis's counters at a moment.
#[derive(Default, Clone, Copy)]
struct Sample {
    /// `EVALSHA` and `EVAL` calls (the scripts).
    calls: u64,
    /// Their time in Redis, µs (nested commands included).
    usec: u64,
    /// The process's CPU (user + system), µs.
    cpu: u64,
}

async fn info(conn: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap_or_default()
}

/// A `key=value` field of an `INFO` line.
fn field(line: &str, key: &str) -> Option<f64> {
    line.split([',', ':'])
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

async fn sample(conn: &mut redis::aio::MultiplexedConnection) -> Sample {
    let mut out = Sample::default();
    for line in info(conn, "commandstats").await.lines() {
        if line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:") {
            out.calls += field(line, "calls").unwrap_or(0.0) as u64;
            out.usec += field(line, "usec").unwrap_or(0.0) as u64;
        }
    }
    let cpu = info(conn, "cpu").await;
    let seconds = |key: &str| {
        cpu.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    out.cpu = ((seconds("used_cpu_user") + seconds("used_cpu_sys")) * 1e6) as u64;
    out
}

async fn reset(conn: &mut redis::aio::MultiplexedConnection) -> Sample {
    let _: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await;
    sample(conn).await
}

/// Prints what Redis spent since `before`, per one of `ops` `what` (per
/// script call if `ops` is 0).
async fn report(
    conn: &mut redis::aio::MultiplexedConnection,
    phase: &str,
    before: Sample,
    ops: u64,
    what: &str,
) {
    let after = sample(conn).await;
    let scripts = after.calls.saturating_sub(before.calls);
    let ops = if ops == 0 { scripts } else { ops }.max(1) as f64;
    let usec = after.usec.saturating_sub(before.usec);
    let cpu = after.cpu.saturating_sub(before.cpu);
    println!(
        "{phase:<8} {ops:>6} {what:<8} scripts: {scripts:>6} calls, {:>8.1} usec_per_call, {:>8.1} µs per {what} | redis CPU (user+sys): {:>8.1} µs per {what}",
        usec as f64 / (scripts.max(1) as f64),
        usec as f64 / ops,
        cpu as f64 / ops,
    );
}

#[tokio::main]
async fn main() {
    let Ok(url) = env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is required (tools/presence_cost.sh starts a private redis-server)");
        std::process::exit(2);
    };
    let n = setting("N", 15_000);
    let nodes = setting("NODES", 3).max(1);
    let limit = setting("LIMIT", 1000) as usize;
    let every = setting("ROSTER_EVERY", 100);
    let rosters = setting("ROSTERS", 100);
    let ttl = Duration::from_millis(setting("TTL_MS", 3000));
    let hold = setting("HOLD_ROUNDS", 3);
    let prefix = format!("cost{}", std::process::id());
    let topic = "room";

    let presences: Vec<RedisPresence> = (0..nodes)
        .map(|_| {
            let config = RedisConfig::new(url.as_str())
                .prefix(prefix.as_str())
                .timeout(Duration::from_secs(10));
            let store = RedisStore::new(config).expect("a store on REDIS_URL");
            RedisPresence::new(&store, ttl)
        })
        .collect();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let node = |i: u64| &presences[(i % nodes) as usize];
    println!(
        "N={n} NODES={nodes} LIMIT={limit} ROSTER_EVERY={every} ROSTERS={rosters} TTL_MS={} HOLD_ROUNDS={hold}",
        ttl.as_millis()
    );
    // Load the scripts (and warm the connections) outside the figures.
    let warm = node(0);
    warm.join("warm", "w").await.expect("join");
    warm.roster("warm", 1).await.expect("roster");
    warm.leave("warm", "w").await.expect("leave");

    // Joins, with a roster now and then.
    let before = reset(&mut conn).await;
    let started = std::time::Instant::now();
    let mut asked = 0;
    for i in 0..n {
        node(i)
            .join(topic, &format!("member{i:06}"))
            .await
            .expect("join");
        if every > 0 && (i + 1) % every == 0 {
            let roster = node(i).roster(topic, limit).await.expect("roster");
            assert_eq!(roster.count, (i + 1) as usize, "the count");
            assert_eq!(roster.names.len(), limit.min(i as usize + 1), "the names");
            asked += 1;
        }
    }
    let took = started.elapsed();
    report(&mut conn, "joins", before, n, "join").await;
    println!(
        "         ({asked} rosters of at most {limit} names among them; {:.1} s)",
        took.as_secs_f64()
    );

    // Rosters of the full room.
    let before = reset(&mut conn).await;
    for i in 0..rosters {
        let roster = node(i).roster(topic, limit).await.expect("roster");
        assert_eq!(roster.count, n as usize, "the count");
    }
    report(&mut conn, "rosters", before, rosters, "roster").await;

    // Idle: renewals only.
    let before = reset(&mut conn).await;
    tokio::time::sleep(ttl / 3 * hold as u32 + ttl / 6).await;
    report(&mut conn, "renewal", before, 0, "round").await;
    println!(
        "         (a round: one node renews its {} members, every {} ms)",
        n / nodes,
        (ttl / 3).as_millis()
    );

    // Leaves.
    let before = reset(&mut conn).await;
    for i in 0..n {
        node(i)
            .leave(topic, &format!("member{i:06}"))
            .await
            .expect("leave");
    }
    report(&mut conn, "leaves", before, n, "leave").await;
    let roster = node(0).roster(topic, limit).await.expect("roster");
    assert_eq!(roster.count, 0, "all left");
}
