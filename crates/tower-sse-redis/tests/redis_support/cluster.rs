//! A Redis Cluster of three masters of this test's own, on free loopback
//! ports, each `redis-server` (with `--cluster-enabled yes`) in a directory of
//! its own under the temp dir, made one cluster by `redis-cli --cluster
//! create`.
//!
//! Each server runs under a small `sh` that kills it (and removes its
//! directory) when its stdin closes: when the [`Cluster`] is dropped, and also
//! when the test process ends however it ends (a panic, a kill), so a cluster
//! kept for the whole process (the contract tests') does not outlive it.
//! Everything here is blocking (`std::process`): call it from
//! `spawn_blocking`, or accept a short block of a test's runtime.

use std::{
    io::Write,
    net::TcpListener,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

/// Kills the server when stdin closes or gives a line; removes the node's
/// directory unless that line is `keep` (a restart follows).
const GUARD: &str = r#"dir=$1; shift
redis-server "$@" &
pid=$!
read line
kill -9 $pid
wait $pid 2>/dev/null
[ "$line" = keep ] || rm -rf "$dir"
"#;

struct Node {
    port: u16,
    dir: PathBuf,
    guard: Option<(Child, ChildStdin)>,
}

/// Three masters, killed on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    persist: bool,
}

/// A port that is free, and whose cluster bus port (+10000) is too, and that
/// no other cluster of this process was given (they start at once).
fn free_port() -> Option<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").ok()?;
        let port = listener.local_addr().ok()?.port();
        let taken = given.iter().any(|&p| {
            [p, p + 10_000].contains(&port) || [p, p + 10_000].contains(&(port + 10_000))
        });
        if port < 55_000 && !taken && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            given.push(port);
            return Some(port);
        }
    }
    None
}

/// `redis-cli -p PORT ARGS...`, its output (trimmed), or why it failed.
pub fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || text.starts_with("ERR") || text.starts_with("(error)") {
        return Err(format!(
            "redis-cli {args:?} on {port}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(text)
}

impl Node {
    fn run(&mut self, persist: bool) -> Result<(), String> {
        let _ = std::fs::create_dir_all(&self.dir);
        let port = self.port.to_string();
        let conf = self.dir.join("nodes.conf");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(GUARD).arg("sh").arg(&self.dir);
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            .arg("--cluster-config-file")
            .arg(&conf)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if persist { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        self.guard = Some((child, stdin));
        let until = Instant::now() + Duration::from_secs(10);
        while cli(self.port, &["PING"]).as_deref() != Ok("PONG") {
            if Instant::now() > until {
                return Err(format!("redis-server on {port} did not answer"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the server (SIGKILL); keeps its directory if `keep`.
    fn kill(&mut self, keep: bool) {
        if let Some((mut child, mut stdin)) = self.guard.take() {
            if keep {
                let _ = stdin.write_all(b"keep\n");
            }
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Starts three masters and makes them a cluster; `persist`: an
    /// append-only file fsynced at every write, so that a restart keeps what
    /// was acknowledged. `Err` says why (no `redis-server`, ...).
    pub fn start(persist: bool) -> Result<Self, String> {
        let mut cluster = Self {
            nodes: Vec::new(),
            persist,
        };
        for _ in 0..3 {
            let port = free_port().ok_or("no free port")?;
            let dir = std::env::temp_dir()
                .join(format!("tower-sse-cluster-{}-{port}", std::process::id()));
            let mut node = Node {
                port,
                dir,
                guard: None,
            };
            let started = node.run(persist);
            cluster.nodes.push(node);
            started?;
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        cluster.wait_ok()?;
        Ok(cluster)
    }

    /// The seed URLs, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Until every node says `cluster_state:ok` and all agree on the slots.
    pub fn wait_ok(&self) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.nodes.iter().all(|n| {
                cli(n.port, &["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            let slots: Vec<_> = self
                .nodes
                .iter()
                .map(|n| cli(n.port, &["CLUSTER", "SLOTS"]).unwrap_or_default())
                .collect();
            if ok && slots.windows(2).all(|w| w[0] == w[1]) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err("the cluster did not reach cluster_state:ok".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("CLUSTER KEYSLOT")
    }

    fn id(&self, i: usize) -> String {
        cli(self.nodes[i].port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID")
    }

    /// Which node (index) owns `slot`, as each node says of itself (in
    /// `CLUSTER NODES`).
    pub fn owner(&self, slot: u16) -> usize {
        for (i, node) in self.nodes.iter().enumerate() {
            let nodes = cli(node.port, &["CLUSTER", "NODES"]).unwrap_or_default();
            let mine = nodes.lines().find(|l| l.contains("myself")).unwrap_or("");
            let owns = mine.split(' ').skip(8).any(|range| {
                let mut ends = range.split('-');
                let (Some(lo), hi) = (ends.next(), ends.next()) else {
                    return false;
                };
                let (Ok(lo), hi) = (lo.parse::<u16>(), hi.map(str::parse::<u16>)) else {
                    return false;
                };
                let hi = match hi {
                    Some(Ok(hi)) => hi,
                    Some(Err(_)) => return false,
                    None => lo,
                };
                (lo..=hi).contains(&slot)
            });
            if owns {
                return i;
            }
        }
        panic!("no node owns slot {slot}")
    }

    /// Moves `slot` from node `from` to node `to` the way `redis-cli --cluster
    /// reshard` does: `IMPORTING` on the target, `MIGRATING` on the source,
    /// `MIGRATE` of its keys a few at a time, then `SETSLOT NODE` everywhere
    /// (the target first).
    pub fn move_slot(&self, slot: u16, from: usize, to: usize) -> Result<(), String> {
        let (source, target) = (self.nodes[from].port, self.nodes[to].port);
        let (source_id, target_id) = (self.id(from), self.id(to));
        let slot = slot.to_string();
        cli(
            target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
        )?;
        cli(
            source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
        )?;
        loop {
            let keys = cli(source, &["CLUSTER", "GETKEYSINSLOT", &slot, "3"])?;
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = target.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            cli(source, &args)?;
            // Let publishes run between batches, as a long reshard does.
            std::thread::sleep(Duration::from_millis(20));
        }
        cli(target, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id])?;
        cli(source, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id])?;
        for (i, node) in self.nodes.iter().enumerate() {
            if i != from && i != to {
                cli(
                    node.port,
                    &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id],
                )?;
            }
        }
        self.wait_ok()
    }

    /// Kills node `i` (SIGKILL: no shutdown save) and starts it again on the
    /// same port, files and cluster configuration, `down` later.
    pub fn restart(&mut self, i: usize, down: Duration) -> Result<(), String> {
        self.nodes[i].kill(true);
        std::thread::sleep(down);
        let persist = self.persist;
        self.nodes[i].run(persist)?;
        self.wait_ok()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill(false);
        }
    }
}
