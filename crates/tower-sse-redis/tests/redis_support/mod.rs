//! Redis for the tests: the shared server named by `REDIS_URL` (default
//! `redis://127.0.0.1:6379`), with a unique key prefix per test, or a private
//! `redis-server` on a free loopback port for tests that flush, stop or kill
//! connections. Without Redis a test prints SKIP, unless `CI` is set: then it
//! fails and says why.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use futures_util::StreamExt;
use tower_sse::EncodedEvent;
use tower_sse_hub::{Hub, HubConfig, Subscriber};
use tower_sse_redis::{RedisConfig, RedisStore};

/// Fails under CI, says SKIP otherwise; `None` means skip the test.
fn unavailable(why: &str) -> Option<()> {
    if std::env::var_os("CI").is_some() {
        panic!(
            "this test needs Redis and CI is set: {why} (.ci/run starts one and exports REDIS_URL)"
        );
    }
    eprintln!("SKIP: {why}");
    None
}

/// The shared server's URL, if it answers.
pub async fn shared() -> Option<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    match ping(&url).await {
        Ok(()) => Some(url),
        Err(e) => unavailable(&format!("no Redis answers at {url}: {e}")).map(|()| url),
    }
}

pub async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let connect = client.get_multiplexed_async_connection();
    let mut conn = tokio::time::timeout(Duration::from_secs(2), connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A key prefix no other test (or run) uses.
pub fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "test-{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A node: a hub on its own `RedisStore`.
pub fn node(urls: &str, prefix: &str, hub: HubConfig) -> Hub {
    let config = RedisConfig::new(urls)
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .hub(hub);
    Hub::with_store(RedisStore::new(config).expect("a store"))
}

/// Runs a Redis command on `url`.
pub async fn command<T: redis::FromRedisValue>(url: &str, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

/// Closes every client connection of `kind` (`normal`, `pubsub`) on `url`, as
/// a network fault would; returns how many it closed.
pub async fn kill_clients(url: &str, kind: &str) -> i64 {
    command(url, redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg(kind)).await
}

/// A `redis-server` of this test's own on a free loopback port, killed on drop.
pub struct Private {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    persist: bool,
}

impl Private {
    /// Without persistence; `None` (after SKIP) when there is no redis-server.
    pub async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    /// With an append-only file in a directory of its own, so that a restart
    /// keeps what was acknowledged.
    pub async fn start_persistent() -> Option<Self> {
        Self::start_with(true).await
    }

    async fn start_with(persist: bool) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir =
            std::env::temp_dir().join(format!("tower-sse-redis-{port}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut server = Self {
            port,
            child: None,
            dir,
            persist,
        };
        if let Err(e) = server.run().await {
            unavailable(&e)?;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again).
    pub async fn run(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.persist {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..100 {
            if ping(&self.url()).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("redis-server on port {} did not answer", self.port))
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn text(event: &EncodedEvent) -> String {
    String::from_utf8_lossy(event.as_bytes()).into_owned()
}

/// The next event, as text; fails after 10 s (a test that hangs says where).
pub async fn next(sub: &mut Subscriber) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an event within 10 s")
        .map(|e| text(&e))
}

/// `id: ID` of an event's text.
pub fn id_of(event: &str) -> &str {
    event
        .lines()
        .find_map(|line| line.strip_prefix("id: "))
        .unwrap_or("")
}

/// `data: ...` of an event's text.
pub fn data_of(event: &str) -> &str {
    event
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap_or("")
}
