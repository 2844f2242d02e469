//! Load harness for the chat example: N real SSE connections on loopback, M
//! messages posted, every delivery checked, latency and server memory reported.
//!
//! ```text
//! cargo run --release --example chat &          # prints "listening on ..."
//! SERVER_PID=$! N=1000 M=50 cargo run --release --example loadgen
//! ```
//!
//! Environment: `ADDR` (the chat server, default `127.0.0.1:3000`), `N`
//! (connections, default 1000), `M` (messages, default 50), `INTERVAL_MS` (pause
//! between two posts, default 10), `PACE` (connections opened per second,
//! default 1000), `SETTLE_S` (seconds to wait after the last join, default 3),
//! `SERVER_PID` (to read the server's `VmRSS`
//! from `/proc`; memory is not reported without it). Needs an open-file limit
//! above N for this process and for the server (`ulimit -n 65536`).
//!
//! Each message's text carries its sequence number and the time it was posted,
//! so each client measures publish-to-delivery latency and checks that it got
//! every message exactly once, in order. Exits non-zero if any client did not.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server's resident memory in KiB, from `/proc/PID/status`.
fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let addr: SocketAddr = env("ADDR", "127.0.0.1:3000".to_owned()).parse()?;
    let n: usize = env("N", 1000);
    let m: usize = env("M", 50);
    let interval = Duration::from_millis(env("INTERVAL_MS", 10));
    let pace: f64 = env("PACE", 1000.0);
    let pid: Option<u32> = std::env::var("SERVER_PID")
        .ok()
        .and_then(|p| p.parse().ok());
    let epoch = Instant::now();
    let room = format!("load{}", std::process::id());

    let rss_before = rss_kib(pid);
    let connected = Instant::now();
    let ready = Arc::new(AtomicUsize::new(0));
    let reconnects = Arc::new(AtomicUsize::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let (room, ready_tx, ready) = (room.clone(), ready_tx.clone(), ready.clone());
        let reconnects = reconnects.clone();
        clients.push(tokio::spawn(async move {
            client(addr, &room, i, m, epoch, ready_tx, ready, reconnects).await
        }));
        // Paced: every join is heard by every client already there, so opening
        // N connections costs N²/2 presence events.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_secs_f64(100.0 / pace)).await;
        }
    }
    drop(ready_tx);
    for _ in 0..n {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let opened = ready.load(Ordering::SeqCst);
    println!(
        "{opened}/{n} connections subscribed in {:.2?}",
        connected.elapsed()
    );
    // Let the join storm settle.
    tokio::time::sleep(Duration::from_secs(env("SETTLE_S", 3))).await;
    let rss_idle = rss_kib(pid);

    for k in 0..m {
        let text = format!("{k} {}", epoch.elapsed().as_micros());
        post(addr, &room, &text).await?;
        tokio::time::sleep(interval).await;
    }

    let mut latencies = Vec::with_capacity(n * m);
    let mut complete = 0;
    for c in clients {
        match tokio::time::timeout(Duration::from_secs(120), c).await {
            Ok(Ok(Ok(mut l))) => {
                complete += 1;
                latencies.append(&mut l);
            }
            Ok(Ok(Err(e))) => eprintln!("client failed: {e}"),
            Ok(Err(e)) => eprintln!("client panicked: {e}"),
            Err(_) => eprintln!("client timed out"),
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    println!(
        "{complete}/{n} clients got all {m} messages exactly once, in order ({} deliveries); \
         {} reconnections (lag policy during the join storm)",
        latencies.len(),
        reconnects.load(Ordering::SeqCst)
    );
    println!(
        "delivery latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50),
        pct(0.99),
        latencies.last().map_or(f64::NAN, |us| *us as f64 / 1000.0)
    );
    match (rss_before, rss_idle) {
        (Some(before), Some(idle)) => println!(
            "server RSS: {before} KiB before, {idle} KiB with {n} connections: {:.1} KiB per connection",
            idle.saturating_sub(before) as f64 / n as f64
        ),
        _ => println!("server memory: not measured (set SERVER_PID)"),
    }
    if complete != n {
        return Err(format!("{} clients did not get every message", n - complete).into());
    }
    Ok(())
}

/// One SSE client: waits for its snapshot, then collects the latency of each of
/// the `m` messages, checking their order. Like a browser, it reconnects with
/// `Last-Event-ID` when the server ends its stream (the hub's lag policy does,
/// for a client that fell too far behind during the join storm).
#[allow(clippy::too_many_arguments)]
async fn client(
    addr: SocketAddr,
    room: &str,
    i: usize,
    m: usize,
    epoch: Instant,
    ready_tx: tokio::sync::mpsc::Sender<()>,
    ready: Arc<AtomicUsize>,
    reconnects: Arc<AtomicUsize>,
) -> Result<Vec<u64>, Error> {
    let mut latencies = Vec::with_capacity(m);
    let mut signalled = false;
    let mut last_id = String::new();
    loop {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::get(format!("/sse?room={room}&name=c{i}"))
            .header("host", addr.to_string())
            .header("accept", "text/event-stream");
        if !last_id.is_empty() {
            req = req.header("last-event-id", last_id.as_str());
        }
        let res = sender
            .send_request(req.body(Empty::<Bytes>::new())?)
            .await?;
        if res.status() != 200 {
            return Err(format!("status {}", res.status()).into());
        }
        let mut events = res.into_body().into_data_stream().eventsource();
        while latencies.len() < m {
            let Some(event) = events.next().await else {
                break;
            };
            let event = event?;
            if !event.id.is_empty() {
                last_id = event.id.clone();
            }
            match event.event.as_str() {
                "members" if !signalled => {
                    signalled = true;
                    ready.fetch_add(1, Ordering::SeqCst);
                    let _ = ready_tx.send(()).await;
                }
                "message" => {
                    let now = epoch.elapsed().as_micros() as u64;
                    let data: serde_json::Value = serde_json::from_str(&event.data)?;
                    let text = data["text"].as_str().ok_or("no text")?;
                    let (k, sent) = text.split_once(' ').ok_or("bad text")?;
                    if k.parse::<usize>()? != latencies.len() {
                        let got = latencies.len();
                        return Err(format!("client {i}: got message {k} after {got}").into());
                    }
                    latencies.push(now.saturating_sub(sent.parse()?));
                }
                // Before the first message only presence can have been lost.
                "reset" | "gap" if !latencies.is_empty() => {
                    return Err(format!("client {i}: {} after a message", event.event).into())
                }
                _ => {}
            }
        }
        if latencies.len() == m {
            return Ok(latencies);
        }
        reconnects.fetch_add(1, Ordering::SeqCst);
    }
}

async fn post(addr: SocketAddr, room: &str, text: &str) -> Result<(), Error> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let body = serde_json::json!({"room": room, "name": "loadgen", "text": text}).to_string();
    let req = Request::post("/send")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let res = sender.send_request(req).await?;
    if res.status() != 202 {
        let body = res.into_body().collect().await?.to_bytes();
        return Err(format!("post answered {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(())
}
