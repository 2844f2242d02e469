//! `tower_sse_serve`: half-sent heads, the connection cap, and graceful
//! shutdown with a deadline, over real sockets on 127.0.0.1, in plain TCP and
//! through a TLS handshake (`Server::serve_with`).

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tower_sse::{Event, KeepAlive, Shutdown, SseBody, SseLayer};
use tower_sse_serve::Server;

type Body = UnsyncBoxBody<Bytes, tower_sse::BoxError>;

/// A hang guard: generous, never a timing assertion.
async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// `/big`: 8 KiB events as fast as the connection takes them; `/stall`: a
/// foreign body that stops in the middle of an event; anything else: `ok`.
async fn handler(req: Request<Incoming>, shutdown: Shutdown) -> Result<Response<Body>, Infallible> {
    let res = match req.uri().path() {
        "/big" => {
            let event = Event::message("x".repeat(8 * 1024)).encode();
            let events = futures_util::stream::repeat(event);
            let body = SseBody::from_events(events).with_shutdown(&shutdown);
            body.into_response()
                .map(|b| b.map_err(|e| match e {}).boxed_unsync())
        }
        "/stall" => {
            let frames = futures_util::stream::iter([Ok::<_, Infallible>(http_body::Frame::data(
                Bytes::from_static(b"data: half an event\n"),
            ))])
            .chain(futures_util::stream::pending());
            tower_sse::response(http_body_util::StreamBody::new(frames))
                .map(|b| b.map_err(|e| match e {}).boxed_unsync())
        }
        _ => Response::new(
            Full::new(Bytes::from_static(b"ok"))
                .map_err(|e| match e {})
                .boxed_unsync(),
        ),
    };
    Ok(res)
}

use futures_util::StreamExt;

async fn start(
    server: Server,
    shutdown: Shutdown,
) -> (
    SocketAddr,
    JoinHandle<std::io::Result<()>>,
    tokio::sync::mpsc::UnboundedReceiver<tower_sse::EndReport>,
) {
    start_with(server, shutdown, None).await
}

/// `start`, over TLS when `tls` is given.
async fn start_with(
    server: Server,
    shutdown: Shutdown,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (
    SocketAddr,
    JoinHandle<std::io::Result<()>>,
    tokio::sync::mpsc::UnboundedReceiver<tower_sse::EndReport>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
    let layer = SseLayer::new()
        .with_shutdown(&shutdown)
        .on_end(move |r| drop(tx.send(r)));
    let shutdown_for_server = shutdown.clone();
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req| handler(req, shutdown.clone()));
    let svc = tower::ServiceBuilder::new()
        .map_response(|res: Response<tower_sse::layer::ResponseBody<Body>>| {
            res.map(|b| b.boxed_unsync())
        })
        .service(svc);
    let server = server.with_shutdown(&shutdown_for_server);
    let task = match tls {
        None => tokio::spawn(server.serve(listener, svc)),
        Some(tls) => tokio::spawn(server.serve_with(listener, svc, move |tcp| tls.accept(tcp))),
    };
    (addr, task, reports)
}

/// Over TLS: a certificate for `localhost`, signed by itself, and a client that
/// trusts it.
fn tls_pair() -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server)),
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(client)),
    )
}

/// Sends a full GET and reads the whole answer (the server closes after it).
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    guard("the answer", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the server closes `tcp`; returns how long it took.
async fn closed_after(mut tcp: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    loop {
        match guard("the server closing", tcp.read(&mut buf)).await {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn half_sent_heads_are_closed_and_the_server_keeps_serving() {
    let timeout = Duration::from_secs(1);
    let shutdown = Shutdown::new();
    let (addr, server, _) =
        start(Server::new().header_read_timeout(timeout), shutdown.clone()).await;
    let started = Instant::now();
    let mut waits = Vec::new();
    // Half a request head, nothing at all, half an HTTP/2 preface, and one
    // byte: the start of a preface (the protocol is not known yet), or of a
    // request head (HTTP/1.1).
    for (n, bytes) in [
        (40, &b"GET /big HTTP/1.1\r\nhost: x\r\n"[..]),
        (5, &b""[..]),
        (5, &b"PRI * HTTP/2"[..]),
        (5, &b"P"[..]),
        (5, &b"G"[..]),
    ] {
        for _ in 0..n {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(bytes).await.unwrap();
            waits.push(tokio::spawn(closed_after(tcp, started)));
        }
    }
    // Served meanwhile.
    assert!(get(addr, "/").await.ends_with("ok"));
    let mut longest = Duration::ZERO;
    for wait in waits {
        longest = longest.max(wait.await.unwrap());
    }
    println!("60 half-sent heads, timeout {timeout:?}: the last closed after {longest:?}");
    // Still serving afterwards.
    assert!(get(addr, "/").await.ends_with("ok"));
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_frozen_reader_does_not_hold_shutdown_beyond_the_grace_period() {
    let shutdown = Shutdown::new().grace(Duration::from_secs(1));
    let (addr, server, mut reports) = start(Server::new(), shutdown.clone()).await;
    // A client that asks for an endless stream of big events and never reads:
    // the server's buffers fill, and hyper stops polling the body, so the body
    // cannot see the shutdown.
    let mut frozen = TcpStream::connect(addr).await.unwrap();
    frozen
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let triggered = Instant::now();
    shutdown.trigger();
    // Used to hang: hyper's graceful shutdown waits for the response to finish.
    guard("serve returns", server).await.unwrap().unwrap();
    println!(
        "frozen reader: serve returned {:?} after the trigger",
        triggered.elapsed()
    );
    // Closed by the server at the deadline: reported as ended by the shutdown.
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, tower_sse::EndReason::Shutdown);
    drop(frozen);
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
}

#[tokio::test]
async fn a_stream_stalled_mid_event_does_not_hold_shutdown_or_spin() {
    let shutdown = Shutdown::new().grace(Duration::from_secs(1));
    let (addr, server, mut reports) = start(Server::new(), shutdown.clone()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /stall HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("half an event") {
        let n = guard("the half event", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    let before = cpu_time();
    let triggered = Instant::now();
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
    let took = triggered.elapsed();
    if let (Some(before), Some(after)) = (before, cpu_time()) {
        println!(
            "stalled stream: shutdown took {took:?}, CPU used meanwhile {:?}",
            after - before
        );
    }
    assert_eq!(shutdown.live_streams(), 0);
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, tower_sse::EndReason::Shutdown);
}

#[tokio::test]
async fn past_the_connection_cap_clients_wait_for_a_free_slot() {
    let shutdown = Shutdown::new().grace(Duration::from_millis(200));
    let (addr, server, _) = start(Server::new().max_connections(2), shutdown.clone()).await;
    let open = |path: &'static str| async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp
    };
    let mut a = open("/stall").await;
    let _b = open("/stall").await;
    let mut buf = [0u8; 512];
    assert!(guard("a's head", a.read(&mut buf)).await.unwrap() > 0);
    let mut c = open("/").await;
    let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection waits: {early:?}");
    drop(a);
    let n = guard("c's answer", c.read(&mut buf)).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn heartbeats_flow_through_the_server() {
    // The serving defaults change nothing a stream sees.
    let shutdown = Shutdown::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::service_fn(|_req: Request<Incoming>| async {
        let body = SseBody::from_events(futures_util::stream::pending::<Event>())
            .keep_alive(KeepAlive::new().interval(Duration::from_millis(10)));
        Ok::<_, Infallible>(body.into_response())
    });
    let server = tokio::spawn(Server::new().with_shutdown(&shutdown).serve(listener, svc));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while String::from_utf8_lossy(&seen).matches(":\n\n").count() < 2 {
        let n = guard("heartbeats", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0);
        seen.extend_from_slice(&buf[..n]);
    }
    shutdown.trigger();
    drop(tcp);
    guard("serve returns", server).await.unwrap().unwrap();
}

/// An HTTP/2 (h2c) client connection to `addr`, granting each stream
/// `window` bytes of flow control (hyper's default when `None`).
async fn h2_client(
    addr: SocketAddr,
    window: Option<u32>,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut builder =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Some(window) = window {
        builder.initial_stream_window_size(window);
    }
    let (client, conn) = builder
        .handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// `GET path` as an `EventSource` asks for it, over HTTP/2.
fn sse_get(path: &str) -> Request<http_body_util::Empty<Bytes>> {
    Request::get(format!("http://x{path}"))
        .header("accept", "text/event-stream")
        .body(http_body_util::Empty::new())
        .unwrap()
}

/// A client socket with a small receive buffer, so that a stream fills it fast.
async fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_over_http1() {
    let shutdown = Shutdown::new();
    let timeout = Duration::from_secs(1);
    let server = Server::new().write_timeout(Some(timeout));
    let (addr, server, mut reports) = start(server, shutdown.clone()).await;
    let mut frozen = small_window_client(addr).await;
    frozen
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let since = Instant::now();
    // Never read: the server's writes stop making progress, and the stream is
    // reported as cut off without the client doing anything.
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, tower_sse::EndReason::Stalled);
    println!(
        "a frozen HTTP/1.1 reader was cut off {:?} after it connected (timeout {timeout:?})",
        since.elapsed()
    );
    // And its connection is closed: reading now drains what was sent, then EOF.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match guard("the close", frozen.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // The server still serves.
    assert!(get(addr, "/").await.ends_with("ok"));
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_zero_window_http2_stream_is_cut_off_and_its_connection_goes_on() {
    let shutdown = Shutdown::new();
    let server = Server::new().write_timeout(Some(Duration::from_secs(1)));
    let (addr, server, mut reports) = start(server, shutdown.clone()).await;
    // A client that never grants its streams any flow-control window.
    let mut client = h2_client(addr, Some(0)).await;
    let res = guard("the head", client.send_request(sse_get("/big")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, tower_sse::EndReason::Stalled);
    // The connection itself was not closed: it answers another request.
    let res = guard("another head", client.send_request(sse_get("/")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    shutdown.trigger();
    drop(client);
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_busy_stream_to_a_reading_client_is_not_cut_off() {
    let shutdown = Shutdown::new().grace(Duration::from_millis(200));
    let server = Server::new().write_timeout(Some(Duration::from_millis(500)));
    let (addr, server, mut reports) = start(server, shutdown.clone()).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // Read well past several write timeouts' worth of a stream that never
    // pauses: the deadline moves with each frame the connection takes.
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let n = guard("data", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0, "the stream was closed after {total} bytes");
        total += n;
    }
    assert!(reports.try_recv().is_err(), "no stream ended");
    shutdown.trigger();
    drop(tcp);
    guard("serve returns", server).await.unwrap().unwrap();
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_ne!(report.reason, tower_sse::EndReason::Stalled);
}

#[tokio::test]
async fn http2_streams_past_the_per_connection_cap_wait_for_a_free_one() {
    let shutdown = Shutdown::new().grace(Duration::from_millis(200));
    let server = Server::new().max_streams_per_connection(2);
    let (addr, server, _) = start(server, shutdown.clone()).await;
    let mut client = h2_client(addr, None).await;
    // Two endless streams take both slots.
    let a = guard("a", client.send_request(sse_get("/stall")))
        .await
        .unwrap();
    let _b = guard("b", client.send_request(sse_get("/stall")))
        .await
        .unwrap();
    let mut third = Box::pin(client.send_request(sse_get("/")));
    let early = tokio::time::timeout(Duration::from_millis(300), &mut third).await;
    assert!(early.is_err(), "the third stream waits: {early:?}");
    // Closing one frees its slot.
    drop(a);
    let res = guard("the third", third).await.unwrap();
    assert_eq!(res.status(), 200);
    shutdown.trigger();
    drop(client);
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut_off_over_tls() {
    let (acceptor, connector) = tls_pair();
    let shutdown = Shutdown::new();
    let timeout = Duration::from_secs(1);
    let server = Server::new().write_timeout(Some(timeout));
    let (addr, server, mut reports) = start_with(server, shutdown.clone(), Some(acceptor)).await;
    let tcp = small_window_client(addr).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut frozen = guard("handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    frozen
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    frozen.flush().await.unwrap();
    let since = Instant::now();
    // The TLS stream stops taking bytes once the socket is full: the same
    // watchdog cuts the stream off, and reports it.
    let report = guard("the report", reports.recv()).await.unwrap();
    assert_eq!(report.reason, tower_sse::EndReason::Stalled);
    println!(
        "a frozen TLS reader was cut off {:?} after its request (timeout {timeout:?})",
        since.elapsed()
    );
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn unfinished_and_failed_tls_handshakes_cost_only_their_connection() {
    let (acceptor, connector) = tls_pair();
    let shutdown = Shutdown::new();
    let server = Server::new().header_read_timeout(Duration::from_secs(1));
    let (addr, server, _reports) = start_with(server, shutdown.clone(), Some(acceptor)).await;
    // Connects and never says hello: closed by the header read timeout.
    let silent = TcpStream::connect(addr).await.unwrap();
    // Half a ClientHello: the same.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let since = Instant::now();
    // Plain HTTP to the TLS port: the handshake fails, the connection closes.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = guard("plain HTTP refused", plain.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("ok"));
    let silent_closed = closed_after(silent, since).await;
    let half_closed = closed_after(half, since).await;
    println!("handshakes never finished were closed after {silent_closed:?} and {half_closed:?} (timeout 1 s)");
    // A real client is served all along.
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = guard("handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = guard("the answer", tls.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).ends_with("ok"));
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

/// Writes `first`, pauses (so that the server is likely to have looked at it
/// alone), then writes `rest`.
async fn in_two_pieces(addr: SocketAddr, first: &[u8], rest: &[u8]) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tcp.write_all(rest).await.unwrap();
    tcp
}

#[tokio::test]
async fn the_first_bytes_tell_http1_from_h2c_even_when_they_come_in_pieces() {
    let shutdown = Shutdown::new();
    let (addr, server, _) = start(Server::new(), shutdown.clone()).await;
    // An h2c (prior knowledge) client and an HTTP/1.1 one, on one server.
    let mut h2 = h2_client(addr, None).await;
    let res = guard("the h2c answer", h2.send_request(sse_get("/")))
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert!(get(addr, "/").await.ends_with("ok"));
    // The preface in two pieces, then an empty SETTINGS frame: the server
    // answers with its own SETTINGS frame (type 4), as HTTP/2.
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let mut tcp = in_two_pieces(addr, &PREFACE[..7], &[&PREFACE[7..], SETTINGS].concat()).await;
    let mut frame_head = [0u8; 9];
    guard("the server's SETTINGS", tcp.read_exact(&mut frame_head))
        .await
        .unwrap();
    assert_eq!(frame_head[3], 4, "{frame_head:?}");
    // A request head whose first byte comes alone: HTTP/1.1.
    let mut tcp = in_two_pieces(
        addr,
        b"G",
        b"ET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let mut out = Vec::new();
    guard("the answer", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("ok"),
        "{out}"
    );
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

#[tokio::test]
async fn at_shutdown_idle_and_streaming_connections_close_without_waiting_for_the_grace_period() {
    // A grace period no test waits for: serve returns only if every
    // connection closes when told to.
    let shutdown = Shutdown::new().grace(Duration::from_secs(3600));
    let (addr, server, _) = start(Server::new(), shutdown.clone()).await;
    // An HTTP/1.1 connection kept alive after its answer, idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"ok") {
        let mut buf = [0u8; 256];
        let n = guard("the answer", idle.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before its answer");
        answer.extend_from_slice(&buf[..n]);
    }
    // An HTTP/1.1 stream read by its client, and an idle h2c connection.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let stream = tokio::spawn(closed_after(stream, Instant::now()));
    let mut h2 = h2_client(addr, None).await;
    let res = guard("the h2c answer", h2.send_request(sse_get("/")))
        .await
        .unwrap();
    assert!(res.status().is_success());
    drop(res);
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
    closed_after(idle, Instant::now()).await;
    stream.await.unwrap();
}

#[tokio::test]
async fn http1_only_serves_http1_and_refuses_h2c() {
    let shutdown = Shutdown::new();
    let (addr, server, _) = start(Server::new().http1_only(true), shutdown.clone()).await;
    assert!(get(addr, "/").await.ends_with("ok"));
    // An h2c client's preface is not an HTTP/1.1 request: no answer comes.
    let mut h2 = h2_client(addr, None).await;
    let answer = tokio::time::timeout(Duration::from_secs(5), h2.send_request(sse_get("/")));
    assert!(!matches!(answer.await, Ok(Ok(_))));
    shutdown.trigger();
    guard("serve returns", server).await.unwrap().unwrap();
}

/// `bind` resolves names, listens with the larger queue, and accepts.
#[tokio::test]
async fn bind_listens_with_a_larger_accept_queue() {
    let listener = tower_sse_serve::bind("localhost:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    // Connections wait in the queue until they are accepted.
    let mut waiting = Vec::new();
    for _ in 0..8 {
        waiting.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..8 {
        listener.accept().await.unwrap();
    }
    assert!(tower_sse_serve::bind("no such host.invalid:0")
        .await
        .is_err());
    assert_eq!(tower_sse_serve::BACKLOG, 4096);
}
