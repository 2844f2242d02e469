//! The chat's settings, from the environment.

use std::time::Duration;

use crate::invalid_input;

/// What the environment sets.
#[derive(Clone, Debug)]
pub struct Config {
    /// `ADDR`: where to listen (default `127.0.0.1:3000`).
    pub addr: String,
    /// `HEARTBEAT_MS`: the heartbeat of idle streams (default 15 s).
    pub heartbeat: Duration,
    /// `TLS=1`: serve HTTPS with HTTP/2 (`TLS_CERT` and `TLS_KEY`, or a
    /// certificate made at start).
    pub tls: bool,
    /// `REDIS_URL`: one URL, or several separated by commas: this process is
    /// one node of a cluster on Redis.
    pub redis_url: Option<String>,
    /// `REDIS_CLUSTER_URL`: one or more seed nodes of a Redis Cluster (Redis 7
    /// or later), separated by commas: this process is one node of a cluster
    /// on it, each room in one hash slot.
    pub redis_cluster_url: Option<String>,
    /// `NATS_URL`: this process is one node of a cluster on NATS JetStream.
    pub nats_url: Option<String>,
    /// `PRESENCE_TTL_MS`: how long a node's members outlive it in the shared
    /// presence (default 30 s).
    pub presence_ttl: Duration,
    /// `PRESENCE_FULL_MAX`: the largest room with a `join` and a `leave` per
    /// member (default 1 000); above it, counts.
    pub presence_full_max: usize,
    /// `MAX_STREAMS`: concurrent event streams on this node (default 10 000).
    pub max_streams: usize,
}

impl Config {
    /// Reads the environment.
    ///
    /// # Errors
    ///
    /// A setting that is not a number (of milliseconds, or of members), `TLS`
    /// other than `0` or `1`, or more than one of `REDIS_URL`,
    /// `REDIS_CLUSTER_URL` and `NATS_URL`.
    pub fn from_env() -> std::io::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let config = Self {
            addr: var("ADDR").unwrap_or_else(|| "127.0.0.1:3000".to_owned()),
            heartbeat: millis("HEARTBEAT_MS", 15_000)?,
            tls: match var("TLS").as_deref() {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(invalid_input(format!("TLS must be 1 or 0, not {other:?}")))
                }
            },
            redis_url: var("REDIS_URL"),
            redis_cluster_url: var("REDIS_CLUSTER_URL"),
            nats_url: var("NATS_URL"),
            presence_ttl: millis("PRESENCE_TTL_MS", 30_000)?,
            presence_full_max: match var("PRESENCE_FULL_MAX") {
                None => crate::room::PRESENCE_FULL_MAX,
                Some(n) => n.parse().map_err(|_| {
                    invalid_input(format!(
                        "PRESENCE_FULL_MAX must be a number of members, not {n:?}"
                    ))
                })?,
            },
            max_streams: match var("MAX_STREAMS") {
                None => crate::routes::MAX_STREAMS,
                Some(n) => n.parse().map_err(|_| {
                    invalid_input(format!(
                        "MAX_STREAMS must be a number of streams, not {n:?}"
                    ))
                })?,
            },
        };
        let shared = [
            &config.redis_url,
            &config.redis_cluster_url,
            &config.nats_url,
        ];
        if shared.iter().filter(|url| url.is_some()).count() > 1 {
            return Err(invalid_input(
                "set one of REDIS_URL, REDIS_CLUSTER_URL and NATS_URL".to_owned(),
            ));
        }
        Ok(config)
    }
}

/// The duration in milliseconds that `name` sets, or `default` ms.
fn millis(name: &str, default: u64) -> std::io::Result<Duration> {
    match std::env::var(name) {
        Ok(ms) => ms.parse().map(Duration::from_millis).map_err(|_| {
            invalid_input(format!(
                "{name} must be a number of milliseconds, not {ms:?}"
            ))
        }),
        Err(_) => Ok(Duration::from_millis(default)),
    }
}
