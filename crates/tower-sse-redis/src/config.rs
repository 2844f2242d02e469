//! [`RedisConfig`]: how a [`RedisStore`](super::RedisStore) reaches Redis.

use std::{fmt, time::Duration};

use tower_sse_hub::HubConfig;

/// How to reach Redis and what to keep there; see [`RedisStore`](super::RedisStore).
///
/// ```
/// use std::time::Duration;
/// use tower_sse_redis::RedisConfig;
///
/// let config = RedisConfig::new("redis://10.0.0.1:6379, redis://10.0.0.2:6379")
///     .prefix("chat")
///     .timeout(Duration::from_millis(300));
/// assert_eq!(config.urls().len(), 2);
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(super) urls: Vec<String>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) hub: HubConfig,
    /// The URLs are seed nodes of one Redis Cluster.
    pub(super) cluster: bool,
}

impl RedisConfig {
    /// One Redis URL (`redis://[:password@]host:port[/db]`) or several separated
    /// by commas, over which topics are spread; keys prefixed `tower-sse`, a
    /// timeout of 500 ms, and the default [`HubConfig`].
    pub fn new(urls: &str) -> Self {
        Self {
            urls: urls
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(str::to_owned)
                .collect(),
            prefix: "tower-sse".to_owned(),
            timeout: Duration::from_millis(500),
            hub: HubConfig::new(),
            cluster: false,
        }
    }

    /// A Redis Cluster (Redis 7 or later), reached through one or more of its
    /// nodes (`redis://[:password@]host:port`, separated by commas; the rest
    /// of the cluster is found from them); otherwise as [`new`](Self::new).
    ///
    /// Each topic lives in the hash slot of its name (every key and channel
    /// of a topic has the topic as its hash tag), on that slot's master: its
    /// scripts run there, and its live events go through sharded Pub/Sub
    /// (`SPUBLISH`, `SSUBSCRIBE`), so each master carries only its own
    /// topics' traffic. The slot map is followed as it changes:
    ///
    /// - **A slot moved** (resharding: `MIGRATING`/`IMPORTING`, `MIGRATE`,
    ///   `SETSLOT NODE`): while its keys move, a publish waits (Redis answers
    ///   `TRYAGAIN` until a topic's keys are all on one side), failing with
    ///   [`HubError::Unavailable`](tower_sse_hub::HubError::Unavailable) only
    ///   if that takes longer than the [`timeout`](Self::timeout); the topic
    ///   keeps its epoch and offsets. Redis drops the node's subscription when
    ///   the slot leaves the old master; the node subscribes again on the new
    ///   one and reads from the stream what was published meanwhile, so open
    ///   streams miss nothing and see nothing twice.
    /// - **A master restarted** (no failover): publishes to its slots fail
    ///   until it is back (the cluster refuses them while it is down, or all
    ///   of them with the default `cluster-require-full-coverage yes`); the
    ///   node subscribes again and catches up from the streams. With
    ///   persistence (`appendonly yes`, `appendfsync always`) nothing
    ///   acknowledged is lost and no client sees a `reset`; without it the
    ///   topics of its slots start a new epoch, and open streams get the
    ///   `reset` in-band, as after a standalone restart.
    /// - **A failover** (a replica promoted): the node follows the new slot
    ///   map and subscribes on the new master. Redis replicates
    ///   asynchronously: a publish acknowledged by the old master and not yet
    ///   on the replica is lost, and its offset can be given again to another
    ///   event in the same epoch, which nodes that had the lost one then do
    ///   not deliver. Where that matters, keep `min-replicas-to-write` and
    ///   fail over manually (`CLUSTER FAILOVER`, which waits for the replica
    ///   to catch up).
    ///
    /// A publish's deadline (see [`timeout`](Self::timeout)) is set on one
    /// clock for all masters: their clocks should agree to well within half
    /// the timeout (NTP does). When a connection drops after a publish script
    /// ran, the cluster connection sends it again once reconnected (before
    /// the deadline): without an idempotency key the event can then be stored
    /// twice (once acknowledged), where a standalone store would only leave
    /// the outcome unknown; with a key
    /// ([`Hub::publish_once`](tower_sse_hub::Hub::publish_once)) it is stored
    /// once.
    ///
    /// Every subscription is made again every 5 s (the `redis` crate's
    /// cluster connection can drop one silently when it replaces a restarted
    /// master's connection): a topic whose subscription was lost that way
    /// gets its live events again within that, its subscribers missing
    /// nothing (the node reads the stream), at the cost of one `SSUBSCRIBE`
    /// and one read per topic every 5 s.
    ///
    /// ```
    /// use tower_sse_redis::RedisConfig;
    ///
    /// let config = RedisConfig::cluster("redis://10.0.0.1:7000, redis://10.0.0.2:7000");
    /// assert!(config.is_cluster());
    /// ```
    pub fn cluster(urls: &str) -> Self {
        Self {
            cluster: true,
            ..Self::new(urls)
        }
    }

    /// Prefixes every key and channel with `prefix` (so that several hubs, or
    /// several applications, share one Redis). It must not contain `{` or `}`,
    /// which Redis Cluster reads as a hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a command may take before the operation fails with
    /// [`HubError::Unavailable`](tower_sse_hub::HubError::Unavailable) (at least 1 ms): a publish while Redis is
    /// unreachable fails after about this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The history bounds and lag policy: [`HubConfig::history_len`] bounds each
    /// topic's stream in Redis (`MAXLEN`), [`HubConfig::history_ttl`] is its
    /// expiry after the last publish; the byte bounds and the lag policy apply
    /// to each node's copy of a topic. `max_topics` and
    /// `max_total_history_bytes` do not apply: the history lives in Redis.
    pub fn hub(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// The URLs.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Whether the URLs are seed nodes of a Redis Cluster
    /// ([`cluster`](Self::cluster)), not standalone servers.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry passwords.
        f.debug_struct("RedisConfig")
            .field("urls", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("hub", &self.hub)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_splits_urls_and_hides_them() {
        let config = RedisConfig::new(" redis://:secret@a:1 ,, redis://b:2");
        assert_eq!(config.urls(), ["redis://:secret@a:1", "redis://b:2"]);
        assert!(!format!("{config:?}").contains("secret"));
    }
}
