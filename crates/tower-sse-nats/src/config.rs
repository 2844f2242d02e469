//! [`NatsConfig`], and the names this crate gives things in NATS.

use std::{fmt, time::Duration};

use tower_sse_hub::HubError;

/// Where and how to reach NATS, shared by [`NatsBroker`](crate::NatsBroker)
/// and [`NatsPresence`](crate::NatsPresence).
///
/// ```
/// use std::time::Duration;
/// use tower_sse_nats::NatsConfig;
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .prefix("chat")
///     .timeout(Duration::from_secs(1));
/// assert_eq!(config.get_prefix(), "chat");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    urls: Vec<String>,
    prefix: String,
    timeout: Duration,
    replicas: usize,
    memory: bool,
}

impl NatsConfig {
    /// The server at `url` (`nats://host:port`, or a comma-separated list of
    /// them for a cluster), prefix `sse`, a 2 s timeout, file storage with one
    /// replica.
    pub fn new(url: impl Into<String>) -> Self {
        let urls = url
            .into()
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        Self {
            urls,
            prefix: "sse".to_owned(),
            timeout: Duration::from_secs(2),
            replicas: 1,
            memory: false,
        }
    }

    /// Adds a server of the cluster to connect to.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// The prefix of every stream, subject and bucket this crate makes: ASCII
    /// letters, digits, `-` and `_` only (checked when connecting).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on every call to NATS (default 2 s); past it the call fails
    /// with [`HubError::Unavailable`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Replicas of each stream and bucket made (default 1; up to 5 in a
    /// JetStream cluster).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.clamp(1, 5);
        self
    }

    /// Keeps streams and buckets in the servers' memory instead of files
    /// (default `false`): faster, lost when a server restarts.
    pub fn memory_storage(mut self, memory: bool) -> Self {
        self.memory = memory;
        self
    }

    /// The servers' URLs.
    pub fn get_urls(&self) -> &[String] {
        &self.urls
    }

    /// See [`prefix`](Self::prefix).
    pub fn get_prefix(&self) -> &str {
        &self.prefix
    }

    /// See [`timeout`](Self::timeout).
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// See [`replicas`](Self::replicas).
    pub fn get_replicas(&self) -> usize {
        self.replicas
    }

    /// See [`memory_storage`](Self::memory_storage).
    pub fn get_memory_storage(&self) -> bool {
        self.memory
    }

    /// Checks the prefix and the URLs.
    pub(crate) fn check(&self) -> Result<(), HubError> {
        let valid = !self.prefix.is_empty()
            && self.prefix.len() <= 32
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(unavailable(
                &self.server(),
                "invalid prefix: 1 to 32 ASCII letters, digits, '-' or '_'",
            ));
        }
        if self.urls.is_empty() {
            return Err(unavailable("(none)", "no server URL given"));
        }
        Ok(())
    }

    /// `host:port` of the servers, for error messages.
    pub(crate) fn server(&self) -> String {
        let hosts: Vec<&str> = self
            .urls
            .iter()
            .map(|url| {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                rest.rsplit_once('@').map_or(rest, |(_, r)| r)
            })
            .collect();
        hosts.join(",")
    }

    pub(crate) fn storage(&self) -> async_nats::jetstream::stream::StorageType {
        if self.memory {
            async_nats::jetstream::stream::StorageType::Memory
        } else {
            async_nats::jetstream::stream::StorageType::File
        }
    }
}

/// An error naming the server.
#[derive(Debug)]
struct Unavailable {
    server: String,
    what: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NATS server {}: {}", self.server, self.what)
    }
}

impl std::error::Error for Unavailable {}

/// [`HubError::Unavailable`] naming `server`.
pub(crate) fn unavailable(server: &str, what: impl fmt::Display) -> HubError {
    HubError::Unavailable(Box::new(Unavailable {
        server: server.to_owned(),
        what: what.to_string(),
    }))
}

/// Runs `call` within `timeout`; its error, or the time-out, as
/// [`HubError::Unavailable`] naming `server` and saying what was done.
pub(crate) async fn bounded<T, E: fmt::Display>(
    server: &str,
    timeout: Duration,
    doing: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, HubError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(unavailable(server, format_args!("{doing}: {e}"))),
        Err(_) => Err(unavailable(
            server,
            format_args!("{doing}: no answer within {timeout:?}"),
        )),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The inverse of [`hex`]; `None` for anything else.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}

/// Topics up to this many bytes are named by their hex; longer ones by a
/// SHA-256 digest (names stay short enough for subjects and file names).
const HEX_TOPIC_MAX: usize = 48;

/// A token naming `topic` in stream names, subjects and keys: `x` + hex of
/// the topic when short, `h` + hex of its SHA-256 otherwise. Injective for
/// short topics, collision-resistant for long ones; only `[0-9a-fhx]`.
pub(crate) fn topic_token(topic: &str) -> String {
    if topic.len() <= HEX_TOPIC_MAX {
        format!("x{}", hex(topic.as_bytes()))
    } else {
        let digest = ring::digest::digest(&ring::digest::SHA256, topic.as_bytes());
        format!("h{}", hex(digest.as_ref()))
    }
}

/// 64-bit FNV-1a, then a splitmix64 finaliser: a hash that every node and
/// every build computes alike (unlike `std`'s hashers).
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Deletes a read's ephemeral consumer when dropped (in the background,
/// within the timeout), instead of leaving it to the server's 30 s
/// inactivity threshold.
pub(crate) struct Cleanup {
    pub(crate) stream: async_nats::jetstream::stream::Stream<()>,
    pub(crate) name: String,
    pub(crate) timeout: Duration,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (stream, name, timeout) = (
            self.stream.clone(),
            std::mem::take(&mut self.name),
            self.timeout,
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(timeout, stream.delete_consumer(&name)).await;
            });
        }
    }
}
