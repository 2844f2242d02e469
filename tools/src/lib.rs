//! What the measurement bins share: this program started again as its own
//! server in a child process ([`ServerProcess`]), and a process's resident
//! memory and CPU time read from `/proc` ([`rss`], [`cpu`]).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::OnceLock,
};

/// This program started again with `args` (and `ADDR=127.0.0.1:0`) as a
/// server, once it printed `listening on http://ADDR` as its first line;
/// killed when dropped, so each measurement starts from a fresh process.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: String,
}

impl ServerProcess {
    /// Starts it and waits for its first line.
    ///
    /// # Panics
    ///
    /// When it cannot be started or its first line is not the address: a
    /// measurement cannot go on without its server.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(args)
            .env("ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    /// Its resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        rss(&format!("/proc/{}/status", self.child.id()))
    }

    /// Its user plus system CPU time so far, in seconds.
    pub fn cpu(&self) -> f64 {
        cpu(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory in bytes, from a `/proc/PID/status` (`/proc/self/status`
/// for this process).
///
/// # Panics
///
/// When the file cannot be read or has no `VmRSS` line (not Linux).
pub fn rss(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// User plus system CPU seconds, from a `/proc/PID/stat`.
///
/// # Panics
///
/// When the file cannot be read or is not in the kernel's format.
pub fn cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).expect("read stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 if unknown).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
