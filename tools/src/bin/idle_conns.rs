//! Memory and CPU per idle SSE connection: our `SseBody` + `SseLayer` against
//! axum's `Sse`, on real loopback connections, in one run.
//!
//! ```sh
//! cargo run --release -p tower-sse-tools --bin idle_conns              # N = 1000, 5000, 10000
//! cargo run --release -p tower-sse-tools --bin idle_conns -- 2000      # other values of N
//! ```
//!
//! The program is its own server: for every server kind and every N it starts
//! itself as a child process (`idle_conns server KIND`, which prints
//! `listening on http://ADDR` once ready; `ADDR` defaults to `127.0.0.1:0`
//! here), so each measurement starts from a fresh process. It then opens N
//! connections that each send `GET /sse` with `accept: text/event-stream`, waits
//! for every response head, and reads from `/proc/PID/status` (`VmRSS`) and
//! `/proc/PID/stat` (`utime + stime`):
//!
//! - server memory per connection: RSS after the N connections minus RSS before,
//!   divided by N;
//! - server CPU while every connection sits idle with a 1 s heartbeat for 10 s,
//!   per heartbeat (the clients keep reading, and count the heartbeat bytes).
//!
//! Server kinds, all with the same tokio runtime (one worker per core):
//!
//! - `ours`: hyper 1 `http1::Builder` with `writev(false)`, `SseLayer` around a
//!   handler that returns `SseBody::into_response()`;
//! - `ours-auto`: the same behind hyper-util's `auto::Builder` (HTTP/1 and h2c);
//! - `axum-hyper`: the `ours` server, but the handler returns axum's `Sse`
//!   (isolates the body from the server settings);
//! - `axum`: a stock `axum::serve` with a `Router` whose handler returns `Sse`;
//! - `serve`: tower-sse-serve's `Server` with its defaults (HTTP/1.1 and h2c),
//!   `SseLayer` around the `ours` handler; `serve-http1`: the same with
//!   `Server::http1_only(true)`.
//!
//! Built with `--features jemalloc`, every server runs on jemalloc (the chat's
//! allocator) instead of glibc's malloc.
//!
//! Every N sockets need one file descriptor in the server and one here: the
//! soft limit (`ulimit -n`) must be above N plus a few; raise it with
//! `ulimit -n 65536` (up to `ulimit -Hn`) before running if needed.
//!
//! `idle_conns state` prints our per-stream state: `size_of` of the body and
//! the heap it holds once armed (measured over 100 000 bodies), beside axum's.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::Context,
    time::Duration,
};

use axum::response::IntoResponse;
use futures_util::stream::{self, Pending};
use http::Request;
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower::ServiceBuilder;
use tower_sse::{Event, KeepAlive, OkEvents, SseBody, SseLayer};
use tower_sse_tools::{rss, ServerProcess};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const HEARTBEAT: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(10);
const KINDS: [&str; 8] = [
    "serve",
    "serve-http1",
    "ours",
    "ours-body",
    "ours-writev",
    "ours-auto",
    "axum-hyper",
    "axum",
];

type OurBody = SseBody<OkEvents<Pending<Event>>>;

fn our_body() -> OurBody {
    SseBody::from_events(stream::pending()).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

fn axum_response() -> axum::response::Response {
    let events = stream::pending::<Result<axum::response::sse::Event, Infallible>>();
    axum::response::sse::Sse::new(events)
        .keep_alive(axum::response::sse::KeepAlive::new().interval(HEARTBEAT))
        .into_response()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => server(args.get(1).map_or("ours", String::as_str)),
        Some("state") => state(),
        _ => {
            let ns: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
            let ns = if ns.is_empty() {
                vec![1_000, 5_000, 10_000]
            } else {
                ns
            };
            drive(&ns);
        }
    }
}

// ---------------------------------------------------------------- servers ---

#[tokio::main]
async fn server(kind: &str) {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    let local = listener.local_addr().expect("address");
    if kind == "axum" {
        let app =
            axum::Router::new().route("/sse", axum::routing::get(|| async { axum_response() }));
        println!("listening on http://{local}");
        axum::serve(listener, app).await.expect("serve");
        return;
    }
    if let Some(http1_only) = match kind {
        "serve" => Some(false),
        "serve-http1" => Some(true),
        _ => None,
    } {
        let svc =
            ServiceBuilder::new()
                .layer(SseLayer::new())
                .service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(our_body().into_response())
                });
        println!("listening on http://{local}");
        tower_sse_serve::Server::new()
            .http1_only(http1_only)
            .serve(listener, svc)
            .await
            .expect("serve");
        return;
    }
    println!("listening on http://{local}");
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // One flat write buffer: heartbeats and events are copied into it, instead of
    // a queue of frames plus a separate header buffer.
    http1.writev(kind == "ours-writev");
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1().writev(false);
    loop {
        let (socket, _) = listener.accept().await.expect("accept");
        let io = TokioIo::new(socket);
        match kind {
            "ours" | "ours-auto" | "ours-writev" => {
                let svc = ServiceBuilder::new().layer(SseLayer::new()).service_fn(
                    |_: Request<Incoming>| async {
                        Ok::<_, Infallible>(our_body().into_response())
                    },
                );
                let svc = TowerToHyperService::new(svc);
                if kind == "ours" {
                    tokio::spawn(http1.serve_connection(io, svc));
                } else {
                    let auto = auto.clone();
                    tokio::spawn(async move { auto.serve_connection(io, svc).await });
                }
            }
            "ours-body" => {
                let svc = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(our_body().into_response())
                });
                tokio::spawn(http1.serve_connection(io, svc));
            }
            "axum-hyper" => {
                let svc = hyper::service::service_fn(|_: Request<Incoming>| async {
                    Ok::<_, Infallible>(axum_response())
                });
                tokio::spawn(http1.serve_connection(io, svc));
            }
            other => panic!("unknown server kind {other:?}: one of {KINDS:?}"),
        }
    }
}

// ----------------------------------------------------------------- driver ---

/// Opens one stream and waits for its response head; then keeps reading,
/// counting the bytes after the head (heartbeats), until the socket is dropped.
async fn open(addr: &str, heartbeat_bytes: Arc<AtomicU64>) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"GET /sse HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n")
        .await
        .expect("send the request");
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = socket.read(&mut buf).await.expect("read the head");
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                head.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&head)
            );
            heartbeat_bytes.fetch_add((head.len() - end - 4) as u64, Ordering::Relaxed);
            return socket;
        }
    }
}

fn drive(ns: &[usize]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "{:<11} {:>6} {:>12} {:>14} {:>16} {:>14}",
        "server", "conns", "rss/conn", "cpu/heartbeat", "cpu % (1 core)", "heartbeats"
    );
    let only = std::env::var("KINDS").unwrap_or_default();
    let kinds: Vec<&str> = KINDS
        .into_iter()
        .filter(|k| only.is_empty() || only.split(',').any(|o| o == *k))
        .collect();
    for &n in ns {
        for &kind in &kinds {
            let server = ServerProcess::start(&["server", kind]);
            std::thread::sleep(Duration::from_millis(300));
            let before = server.rss();
            let counted = Arc::new(AtomicU64::new(0));
            let sockets = rt.block_on(async {
                let mut sockets = Vec::with_capacity(n);
                // In batches, so that the listen backlog never overflows.
                for chunk in (0..n).collect::<Vec<_>>().chunks(250) {
                    let opened = futures_util::future::join_all(
                        chunk.iter().map(|_| open(&server.addr, counted.clone())),
                    )
                    .await;
                    sockets.extend(opened);
                }
                sockets
            });
            // Keep reading every stream, as a client would.
            let readers: Vec<_> = sockets
                .into_iter()
                .map(|mut socket| {
                    let counted = counted.clone();
                    rt.spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(read @ 1..) = socket.read(&mut buf).await {
                            counted.fetch_add(read as u64, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(1500));
            let after = server.rss();
            let (cpu0, bytes0) = (server.cpu(), counted.load(Ordering::Relaxed));
            std::thread::sleep(IDLE);
            let (cpu1, bytes1) = (server.cpu(), counted.load(Ordering::Relaxed));
            // Every heartbeat is `:\n\n` inside an HTTP/1.1 chunk: `3\r\n:\n\n\r\n`, 8 bytes.
            let heartbeats = (bytes1 - bytes0) / 8;
            let per_conn = after.saturating_sub(before) as f64 / n as f64;
            let cpu = cpu1 - cpu0;
            println!(
                "{:<11} {:>6} {:>9.0} B {:>11.2} µs {:>15.2}% {:>14}",
                kind,
                n,
                per_conn,
                cpu * 1e6 / heartbeats.max(1) as f64,
                cpu * 100.0 / IDLE.as_secs_f64(),
                heartbeats
            );
            for reader in readers {
                reader.abort();
            }
            drop(server);
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

// ------------------------------------------------------------------ state ---

/// Polls once, so that the heartbeat timer is armed as on a live connection.
fn arm<B: Body + Unpin>(body: &mut B) {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    let polled = Pin::new(body).poll_frame(&mut cx);
    assert!(polled.is_pending(), "an idle stream has nothing to send");
}

fn state() {
    const M: usize = 100_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let before = rss("/proc/self/status");
        let mut ours: Vec<OurBody> = (0..M).map(|_| our_body()).collect();
        ours.iter_mut().for_each(arm);
        let ours_rss = (rss("/proc/self/status") - before) as f64 / M as f64;
        let before = rss("/proc/self/status");
        let mut theirs: Vec<axum::body::Body> =
            (0..M).map(|_| axum_response().into_body()).collect();
        theirs.iter_mut().for_each(arm);
        let axum_rss = (rss("/proc/self/status") - before) as f64 / M as f64;
        println!(
            "ours: size_of::<SseBody<..>>() = {} B, {:.0} B per armed stream (inline + heap)",
            std::mem::size_of::<OurBody>(),
            ours_rss
        );
        println!(
            "axum: size_of::<Body>() = {} B, {:.0} B per armed stream (inline + heap, response head not counted)",
            std::mem::size_of::<axum::body::Body>(),
            axum_rss
        );
        drop((ours, theirs));
    });
}
