//! The campaign's own `redis-server`, on a free loopback port with its own
//! directory, so that shutting it down, pausing it or killing its clients
//! never touches a Redis anyone else uses. Killed, and its directory removed,
//! on drop (also when the test panics).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// A free loopback port (bound, then released: another process could take it
/// in between, which the callers' start-up checks would report).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether `redis-server` can be run at all.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// Starts it in `dir` (created).
    pub async fn start(dir: &Path) -> Result<Self, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.run().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again, on the same port and directory: a
    /// `dump.rdb` left by `SHUTDOWN SAVE` is loaded).
    pub async fn run(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("redis.log")).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` is one of the faults; Redis 7 refuses `DEBUG`
            // unless it is enabled (for local connections is enough).
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(format!("redis-server on port {} did not answer", self.port))
    }

    pub async fn ping(&self) -> Result<(), String> {
        self.command::<String>(redis::cmd("PING"), Duration::from_secs(1))
            .await
            .map(drop)
    }

    /// Runs one command on a connection of its own (never through a proxy).
    pub async fn command<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        timeout: Duration,
    ) -> Result<T, String> {
        let url = self.url();
        let run = async move {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            // The caller's `timeout` bounds it: the connection's own default
            // response timeout would cut `DEBUG SLEEP` short.
            let no_timeout = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&no_timeout)
                .await
                .map_err(|e| e.to_string())?;
            cmd.query_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    /// `SHUTDOWN SAVE` or `SHUTDOWN NOSAVE`, then waits for the process to
    /// exit. Without saving, a `dump.rdb` of an earlier `SHUTDOWN SAVE` is
    /// removed too, so that the restart is empty (data loss), not a rollback.
    pub async fn shutdown(&mut self, save: bool) -> Result<(), String> {
        let mut cmd = redis::cmd("SHUTDOWN");
        cmd.arg(if save { "SAVE" } else { "NOSAVE" });
        // The server closes the connection instead of answering.
        let _ = self.command::<()>(cmd, Duration::from_secs(5)).await;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        for _ in 0..200 {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if child.try_wait().map_err(|e| e.to_string())?.is_none() {
            let _ = child.kill();
            let _ = child.wait();
            return Err("redis-server did not shut down within 5 s: killed".to_owned());
        }
        if !save {
            let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
