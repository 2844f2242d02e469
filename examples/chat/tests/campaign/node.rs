//! A chat node: the chat's binary (`tower-sse-chat`), run as a
//! process of its own (so that `kill -9` is a real crash), on a fixed port so
//! that a restart comes back where the clients look for it. Killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The chat's binary, which cargo builds before this package's tests.
pub fn chat_binary() -> Result<PathBuf, String> {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_chat"));
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is missing: `cargo build -p tower-sse-chat`",
            binary.display()
        ))
    }
}

pub struct Node {
    pub index: usize,
    pub port: u16,
    binary: PathBuf,
    /// The broker's variable and URL: `REDIS_URL` or `NATS_URL`.
    broker: (&'static str, String),
    heartbeat_ms: u64,
    presence_ttl_ms: u64,
    dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started: each run writes its own output files.
    runs: u32,
}

impl Node {
    pub fn new(
        index: usize,
        port: u16,
        binary: PathBuf,
        broker: (&'static str, String),
        (heartbeat_ms, presence_ttl_ms): (u64, u64),
        dir: &Path,
    ) -> Self {
        Self {
            index,
            port,
            binary,
            broker,
            heartbeat_ms,
            presence_ttl_ms,
            dir: dir.to_owned(),
            child: None,
            runs: 0,
        }
    }

    /// Starts the process and waits for `listening on http://ADDR`.
    pub async fn start(&mut self) -> Result<(), String> {
        self.runs += 1;
        let out = self
            .dir
            .join(format!("node{}-run{}.out", self.index, self.runs));
        let err = self
            .dir
            .join(format!("node{}-run{}.err", self.index, self.runs));
        let file = |path: &Path| std::fs::File::create(path).map_err(|e| e.to_string());
        let child = Command::new(&self.binary)
            .env("ADDR", format!("127.0.0.1:{}", self.port))
            // Only the broker this node is given, whatever the test's own
            // environment holds (`.ci/run` exports both URLs).
            .env_remove("REDIS_URL")
            .env_remove("NATS_URL")
            .env_remove("REDIS_CLUSTER_URL")
            .env(self.broker.0, &self.broker.1)
            .env("HEARTBEAT_MS", self.heartbeat_ms.to_string())
            .env("PRESENCE_TTL_MS", self.presence_ttl_ms.to_string())
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&err)?)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let ready = format!("listening on http://127.0.0.1:{}", self.port);
        // Generous: other builds may be hogging this machine's two cores.
        for _ in 0..600 {
            if std::fs::read_to_string(&out).is_ok_and(|s| s.contains(&ready)) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
                    self.child = None;
                    return Err(format!(
                        "node {} exited at start ({status}): {stderr}",
                        self.index
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "node {} did not print {ready:?} in 30 s",
            self.index
        ))
    }

    /// `kill -9`: no clean-up, no `leave` from this node.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `SIGSTOP` or `SIGCONT` (`sig` without `SIG`) to the node.
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        let Some(child) = self.child.as_ref() else {
            return Err(format!("node {} is not running", self.index));
        };
        // The shell's own `kill`: no package beyond `sh` needed.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", child.id()))
            .status()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{sig} node {}: {status}", self.index))
        }
    }

    /// Whether the process exited on its own (a crash the campaign did not
    /// cause).
    pub fn crashed(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let err = self
            .dir
            .join(format!("node{}-run{}.err", self.index, self.runs));
        let stderr = std::fs::read_to_string(err).unwrap_or_default();
        Some(format!("node {} exited ({status}): {stderr}", self.index))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory of this run's own (Redis's RDB, the nodes' output), removed on
/// drop, also when the test panics.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tower-sse-chat-nodes-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
