//! Load harness for the chat example (and `tools/src/bin/anchor_chat.rs`): N real SSE
//! connections on loopback that reconnect the way a browser's `EventSource`
//! does, M messages posted, every delivery checked, latency and server memory
//! reported.
//!
//! ```text
//! cargo run --release --example chat &          # prints "listening on ..."
//! SERVER_PID=$! N=1000 M=50 cargo run --release -p tower-sse-tools --bin loadgen
//! ```
//!
//! `tools/storm.sh` runs it against both chats side by side;
//! `tools/redis_restart.sh` against three chat nodes sharing a Redis that is
//! restarted empty half-way through the posts.
//!
//! Environment: `ADDR` (the chat server, default `127.0.0.1:3000`), `ADDRS`
//! (several nodes of one chat, comma-separated, default `ADDR`: client i
//! connects to node i mod the count first and moves to the next node on every
//! reconnection, as behind a load balancer without sticky sessions; message k
//! is posted to node k mod the count), `N`
//! (connections, default 1000), `M` (messages, default 50), `INTERVAL_MS` (the
//! posting schedule: message k is due k × INTERVAL_MS after the first, default
//! 10), `PACE` (connections opened per second,
//! default 1000; `0` opens them all at once), `SETTLE_S` (seconds to wait after
//! every client has its `members` snapshot before posting, default 3),
//! `DEADLINE_S` (the whole run's bound, default 120), `RETRY_CAP_MS` (the
//! longest reconnection wait honoured, default 10000), `MAX_RECONNECTS` (per
//! client, default 100), `SERVER_PID` (to read the server's memory from
//! `/proc`; not reported without it), `FAULT_AFTER` and `FAULT_CMD` (once
//! `FAULT_AFTER` messages were accepted, the shell command `FAULT_CMD` is run
//! with `sh -c` and waited for, then the posting goes on; the rest of the
//! schedule is shifted by the command's duration, so that the time the fault
//! itself takes, such as restarting a server, does not count as latency, but
//! the time the chat takes to recover from it does), `POST_RETRY_MS` (the wait
//! before a post that got `503` or no answer is sent again, default 100),
//! `PROTOCOL` (`chat`, the default, or `nchan`: the same clients against
//! nginx + nchan, see below).
//! Needs an open-file limit above N for this process and for the server
//! (`ulimit -n`).
//!
//! Each client behaves like `EventSource`: when its stream ends or fails it
//! waits the last `retry:` it received (3 s until it has one, as browsers do;
//! at most `RETRY_CAP_MS`) and reconnects with `Last-Event-ID` set to the last
//! `id:` it received. Ids are opaque strings. Messages are posted one after the
//! other on a schedule, from a thread of their own; each message's text carries
//! its sequence number and the time it was due, so each client counts
//! duplicates and lost or out-of-order messages, and measures the latency of
//! the last message from the time it was due to its delivery (reconnections
//! included; a server slow to accept posts delays every later message, and that
//! counts). Each message is posted with an `Idempotency-Key` of its own, and
//! a post answered `503` (or not answered) is sent again with the same key
//! until it is accepted (`202`) or the run's deadline passes: the chat stores it
//! once, and every accepted message must reach every client once.
//! A `reset` notice (the chat's store started a new epoch) is counted but is
//! neither a loss nor a duplicate by itself: messages are told by the sequence
//! number in their text, whatever their ids.
//! Clients keep their connection open until every client is done, so no
//! `leave` storm disturbs the measurement.
//!
//!
//! With `PROTOCOL=nchan` the server is nginx with an `nchan_subscriber
//! eventsource` location at `/sub/<room>` and an `nchan_publisher` location at
//! `/pub/<room>` (`tools/nchan_storm.sh` writes that configuration): a client
//! counts as joined once its stream's headers arrive (nchan sends no snapshot),
//! a message is posted as its raw text (`K MICROS`, any `2xx` accepts it; nchan
//! has no idempotency keys, so a post sent again may be stored twice), and
//! the stream's `data` is that text, with nchan's own ids.
//!
//! The last line, `RESULT key=value ...`, is for scripts. Exits non-zero if any
//! message was lost or duplicated, or a client did not get the last message
//! within the deadline.

mod client;
mod report;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, Request};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{sleep, sleep_until, timeout_at, Instant},
};

use client::{client, Outcome};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A line of the server's `/proc/PID/status`, in KiB (`VmRSS`, `VmHWM`).
fn proc_kib(pid: Option<u32>, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user and system) a process has used, in seconds, from
/// `/proc/PID/stat` (counted in Linux's USER_HZ ticks of 1/100 s).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: utime is the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// What every client shares.
pub(crate) struct Run {
    /// The server speaks nchan's endpoints (`PROTOCOL=nchan`), not the chat's.
    pub(crate) nchan: bool,
    /// The chat's nodes (one unless `ADDRS` names several).
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) room: String,
    pub(crate) m: usize,
    pub(crate) epoch: Instant,
    pub(crate) deadline: Instant,
    pub(crate) retry_cap: Duration,
    pub(crate) max_reconnects: usize,
    /// Messages that arrived after a client had them all.
    pub(crate) late_dups: AtomicUsize,
    /// Posts sent again after a `503` or a failed request.
    pub(crate) post_retries: AtomicUsize,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let addr = env("ADDR", "127.0.0.1:3000".to_owned());
    let addrs = env("ADDRS", addr)
        .split(',')
        .map(|a| a.trim().parse())
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let n: usize = env("N", 1000);
    let m: usize = env("M", 50).max(1);
    let interval = Duration::from_millis(env("INTERVAL_MS", 10));
    let pace: f64 = env("PACE", 1000.0);
    let pid: Option<u32> = std::env::var("SERVER_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let epoch = Instant::now();
    let fault_after: Option<usize> = std::env::var("FAULT_AFTER")
        .ok()
        .and_then(|k| k.parse().ok());
    let fault_cmd = std::env::var("FAULT_CMD").ok().filter(|c| !c.is_empty());
    let post_retry = Duration::from_millis(env("POST_RETRY_MS", 100));
    let nchan = match env("PROTOCOL", "chat".to_owned()).as_str() {
        "chat" => false,
        "nchan" => true,
        other => return Err(format!("PROTOCOL={other}: chat or nchan").into()),
    };
    let run = Arc::new(Run {
        nchan,
        addrs,
        room: format!("load{}", std::process::id()),
        m,
        epoch,
        deadline: epoch + Duration::from_secs(env("DEADLINE_S", 120)),
        retry_cap: Duration::from_millis(env("RETRY_CAP_MS", 10_000)),
        max_reconnects: env("MAX_RECONNECTS", 100),
        late_dups: AtomicUsize::new(0),
        post_retries: AtomicUsize::new(0),
    });

    let rss_before = proc_kib(pid, "VmRSS:");
    let server = pid.map(|p| p.to_string());
    let cpu_before = [server.as_deref().and_then(cpu_secs), cpu_secs("self")];
    // `true` once a client has its snapshot, `false` if it gave up before.
    let (ready_tx, mut ready_rx) = mpsc::channel::<bool>(n.max(1));
    let (outcome_tx, mut outcome_rx) = mpsc::channel::<Outcome>(n.max(1));
    let (done_tx, done_rx) = watch::channel(false);
    for i in 0..n {
        let (run, ready_tx, outcome_tx, done_rx) = (
            run.clone(),
            ready_tx.clone(),
            outcome_tx.clone(),
            done_rx.clone(),
        );
        tokio::spawn(async move { client(&run, i, ready_tx, outcome_tx, done_rx).await });
        // Every join is heard by every client already there: opening N
        // connections costs N²/2 presence events.
        if pace > 0.0 && i % 100 == 99 {
            sleep(Duration::from_secs_f64(100.0 / pace)).await;
        }
    }
    drop((ready_tx, outcome_tx));
    let (mut subscribed, mut settled) = (0, 0);
    while settled < n {
        let Ok(Some(ok)) = timeout_at(run.deadline, ready_rx.recv()).await else {
            break;
        };
        subscribed += usize::from(ok);
        settled += 1;
    }
    let joined_at = epoch.elapsed();
    println!("{subscribed}/{n} clients had their members snapshot after {joined_at:.2?}");
    let rss_joined = proc_kib(pid, "VmRSS:");
    sleep(Duration::from_secs(env("SETTLE_S", 3))).await;

    let posted_at = epoch.elapsed();
    // On a thread and runtime of its own, over one kept-alive connection, so
    // that the posts keep their pace however busy the clients keep this
    // process: their timing depends on the server alone.
    let poster_run = run.clone();
    let poster = std::thread::spawn(move || -> Result<(), String> {
        let run = poster_run;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            // One kept-alive connection per node.
            let mut conns: Vec<_> = run.addrs.iter().map(|_| None).collect();
            let mut start = Instant::now();
            for k in 0..m {
                if fault_after == Some(k) {
                    if let Some(cmd) = &fault_cmd {
                        start += fault(cmd)?;
                    }
                }
                // Message k is due at `start + k * interval`; its latency is
                // counted from then, so a server that is slow to accept posts
                // pays for it (no coordinated omission).
                let due = start + interval * u32::try_from(k).unwrap_or(u32::MAX);
                sleep_until(due).await;
                let text = format!("{k} {}", due.duration_since(epoch).as_micros());
                let node = k % run.addrs.len();
                // One key per message and run: a retry is stored once.
                let key = format!("{}-{k}", run.room);
                post(&run, node, &mut conns[node], &key, &text, post_retry)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    });
    tokio::task::spawn_blocking(move || poster.join())
        .await?
        .map_err(|_| "the poster thread panicked")??;

    let mut outcomes = Vec::with_capacity(n);
    while let Some(outcome) = outcome_rx.recv().await {
        outcomes.push(outcome);
    }
    let delivered_at = epoch.elapsed();
    let rss_after = proc_kib(pid, "VmRSS:");
    let hwm = proc_kib(pid, "VmHWM:");
    let cpu_after = [server.as_deref().and_then(cpu_secs), cpu_secs("self")];
    let cpu = [0, 1].map(|i| Some(cpu_after[i]? - cpu_before[i]?));
    let _ = done_tx.send(true);

    report::report(
        &run,
        n,
        &outcomes,
        (joined_at, posted_at, delivered_at),
        [rss_before, rss_joined, rss_after, hwm],
        cpu,
    )
}

/// Runs the fault command with `sh -c` and waits for it; returns how long it
/// took (by which the rest of the schedule is shifted).
fn fault(cmd: &str) -> Result<Duration, String> {
    let began = std::time::Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .map_err(|e| format!("FAULT_CMD: {e}"))?;
    let took = began.elapsed();
    println!("fault command ran in {took:.2?} ({status})");
    if !status.success() {
        return Err(format!("FAULT_CMD failed: {status}"));
    }
    Ok(took)
}

/// Posts one message to node `node` on `conn` (opened first if it is not
/// open) until it is accepted: a `503`, or a request that failed (its answer
/// may be lost even though the message was stored), is sent again with the
/// same key after `pause`, on a new connection if the old one closed. Any other
/// answer, or the run's deadline, is an error.
async fn post(
    run: &Run,
    node: usize,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    key: &str,
    text: &str,
    pause: Duration,
) -> Result<(), Error> {
    loop {
        let refused = match post_once(run, node, conn, key, text).await {
            Ok(None) => return Ok(()),
            Ok(Some(refused)) if refused.starts_with("503") => refused,
            Ok(Some(refused)) => return Err(format!("post answered {refused}").into()),
            Err(e) => {
                *conn = None;
                e.to_string()
            }
        };
        if Instant::now() + pause >= run.deadline {
            return Err(format!("post not accepted before the deadline: {refused}").into());
        }
        run.post_retries.fetch_add(1, Ordering::SeqCst);
        eprintln!("post to {} sent again: {refused}", run.addrs[node]);
        sleep(pause).await;
    }
}

/// Posts one message on `conn`, opening it first if it is not open: `None`
/// once accepted (`202`), else the status and body of the refusal.
async fn post_once(
    run: &Run,
    node: usize,
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    key: &str,
    text: &str,
) -> Result<Option<String>, Error> {
    let (addr, room) = (run.addrs[node], &run.room);
    let sender = match conn.take().filter(|s| !s.is_closed()) {
        Some(sender) => conn.insert(sender),
        None => {
            let stream = TcpStream::connect(addr).await?;
            let (sender, io) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(io);
            conn.insert(sender)
        }
    };
    sender.ready().await?;
    let req = if run.nchan {
        // nchan's publisher: the raw text is the message; `201` (subscribers
        // were there) or `202` (none were).
        Request::post(format!("/pub/{room}"))
            .header("host", addr.to_string())
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(text.to_owned())))?
    } else {
        let body = serde_json::json!({"room": room, "name": "loadgen", "text": text});
        Request::post("/send")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from(body.to_string())))?
    };
    let res = sender.send_request(req).await?;
    let status = res.status();
    // Read to the end, so the connection can carry the next post.
    let body = res.into_body().collect().await?.to_bytes();
    let accepted = if run.nchan {
        status.is_success()
    } else {
        status == 202
    };
    if !accepted {
        return Ok(Some(format!(
            "{} {}",
            status.as_u16(),
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(None)
}
