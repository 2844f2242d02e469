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
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may carry passwords.
        f.debug_struct("RedisConfig")
            .field("urls", &self.urls.len())
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
