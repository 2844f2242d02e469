//! A chat node: the `chat` example built with `--features redis`, run as a
//! process of its own (so that `kill -9` is a real crash), on a fixed port so
//! that a restart comes back where the clients look for it. Killed on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The example binary next to the test binary
/// (`target/debug/deps/fault_campaign-…` → `target/debug/examples/chat`),
/// built first if it is missing.
pub fn chat_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} has no grandparent directory", exe.display()))?;
    let binary = profile_dir
        .join("examples")
        .join(format!("chat{}", std::env::consts::EXE_SUFFIX));
    if binary.exists() {
        return Ok(binary);
    }
    eprintln!("building the chat example: {}", binary.display());
    let mut build = Command::new(env!("CARGO"))
        .args(["build", "--features", "redis", "--example", "chat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    // Bounded, so that CI never hangs (the test's own hard timeout starts
    // later): should the outer cargo hold the build directory's lock, say.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = build.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = build.kill();
            let _ = build.wait();
            return Err(
                "`cargo build --features redis --example chat` took over 10 minutes: build it first"
                    .to_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() || !binary.exists() {
        return Err(format!(
            "`cargo build --features redis --example chat` failed ({status}); build it first"
        ));
    }
    Ok(binary)
}

pub struct Node {
    pub index: usize,
    pub port: u16,
    binary: PathBuf,
    redis_url: String,
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
        redis_url: String,
        (heartbeat_ms, presence_ttl_ms): (u64, u64),
        dir: &Path,
    ) -> Self {
        Self {
            index,
            port,
            binary,
            redis_url,
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
            .env("REDIS_URL", &self.redis_url)
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
