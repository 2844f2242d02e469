//! `SseBody` over real sockets: a hyper 1 server on 127.0.0.1:0 and real clients.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tower_sse::{EndReason, EndReport, Event, KeepAlive, Shutdown, SseBody};

type Body = UnsyncBoxBody<Bytes, Infallible>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<Body> + Send + Sync>;
/// End reports with the time each arrived.
type Reports = Arc<Mutex<Vec<(Instant, EndReport)>>>;

/// Serves `handler` over HTTP/1.1 until the returned shutdown is triggered, then
/// shuts hyper down gracefully; the join handle completes when every connection has.
async fn serve(handler: Handler) -> (SocketAddr, Shutdown, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let stopped = async {
            while !stop.is_triggered() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::pin!(stopped);
        loop {
            tokio::select! {
                Ok((tcp, _)) = listener.accept() => {
                    let handler = handler.clone();
                    let svc = service_fn(move |req| {
                        let res = handler(req);
                        async move { Ok::<_, Infallible>(res) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc);
                    let conn = graceful.watch(conn);
                    tokio::spawn(conn);
                }
                _ = &mut stopped => break,
            }
        }
        graceful.shutdown().await;
    });
    (addr, shutdown, server)
}

fn boxed(body: impl http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static) -> Body {
    UnsyncBoxBody::new(body)
}

/// Sends a GET and returns the raw bytes the server writes, header and chunked body,
/// until `until` is found in them.
async fn raw_get(addr: SocketAddr, path: &str, until: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(until) {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("server answers in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(out).unwrap()
}

/// An HTTP/1.1 client connection (hyper) and its response.
async fn get(addr: SocketAddr, path: &str) -> Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
        .send_request(Request::get(path).body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap()
}

/// Reads data frames until `n` bytes have arrived.
async fn read_bytes(body: &mut Incoming, n: usize) -> String {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("frame in time")
            .expect("body not ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    String::from_utf8(out).unwrap()
}

fn report_sink() -> (Reports, impl Fn(EndReport) + Clone) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |r| {
        sink.lock().unwrap().push((Instant::now(), r))
    })
}

#[tokio::test]
async fn headers_and_exact_bytes() {
    let (addr, stop, _) = serve(Arc::new(|_| {
        let events = futures_util::stream::iter([
            Event::message("a\r\nb"),
            Event::default()
                .event("x")
                .unwrap()
                .id("7")
                .unwrap()
                .data(""),
        ]);
        SseBody::from_events(events).into_response().map(boxed)
    }))
    .await;
    let raw = raw_get(addr, "/", "\r\n0\r\n\r\n").await;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for line in [
        "content-type: text/event-stream",
        "cache-control: no-cache, no-transform",
        "x-accel-buffering: no",
        "transfer-encoding: chunked",
    ] {
        assert!(head.contains(line), "missing {line}: {head}");
    }
    assert!(!head.contains("content-length"), "{head}");
    assert!(!head.contains("connection:"), "{head}");
    // Both events were ready together: one coalesced chunk.
    let payload = "data: a\ndata: b\n\nevent: x\nid: 7\ndata:\n\n";
    assert_eq!(
        body,
        format!("{:x}\r\n{payload}\r\n0\r\n\r\n", payload.len())
    );
    stop.trigger();
}

#[tokio::test]
async fn first_frame_and_heartbeats_arrive() {
    let (addr, stop, _) = serve(Arc::new(|_| {
        SseBody::from_events(futures_util::stream::pending::<Event>())
            .retry(Duration::from_secs(2))
            .comment("open")
            .keep_alive(
                KeepAlive::new()
                    .interval(Duration::from_millis(50))
                    .text("hb"),
            )
            .into_response()
            .map(boxed)
    }))
    .await;
    let mut res = get(addr, "/").await;
    let first = read_bytes(res.body_mut(), ": open\nretry: 2000\n\n".len()).await;
    assert_eq!(first, ": open\nretry: 2000\n\n");
    let beats = read_bytes(res.body_mut(), 3 * ": hb\n\n".len()).await;
    assert_eq!(beats, ": hb\n\n".repeat(3));
    stop.trigger();
}

#[tokio::test]
async fn stream_error_ends_the_response_cleanly() {
    let (seen, sink) = report_sink();
    let (addr, stop, _) = serve(Arc::new(move |_| {
        let events = futures_util::stream::iter([
            Ok(Event::message("ok")),
            Err(std::io::Error::other("upstream failed")),
        ]);
        SseBody::new(events)
            .on_error(|e| Some(Event::default().event("error").unwrap().data(e.to_string())))
            .on_end(sink.clone())
            .into_response()
            .map(boxed)
    }))
    .await;
    let res = get(addr, "/").await;
    // The body ends normally: `collect` would fail on an aborted connection.
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &bytes[..],
        b"data: ok\n\nevent: error\ndata: upstream failed\n\n"
    );
    let (_, report) = seen.lock().unwrap()[0].clone();
    assert_eq!(report.reason.to_string(), "failed: upstream failed");
    stop.trigger();
}

#[tokio::test]
async fn ten_thousand_events_arrive_complete_and_in_order() {
    let (addr, stop, _) = serve(Arc::new(|_| {
        let events = futures_util::stream::iter(0..10_000)
            .map(|i| Event::message(format!("{i}")).id(i.to_string()));
        SseBody::new(events).into_response().map(boxed)
    }))
    .await;
    let res = get(addr, "/").await;
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let text = std::str::from_utf8(&bytes).unwrap();
    let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(blocks.len(), 10_000);
    for (i, block) in blocks.iter().enumerate() {
        assert_eq!(*block, format!("id: {i}\ndata: {i}"));
    }
    stop.trigger();
}

/// A stream the test feeds by hand, whose server side reports its end.
fn fed_server(
    sink: impl Fn(EndReport) + Clone + Send + Sync + 'static,
    keep_alive: KeepAlive,
) -> (
    Handler,
    mpsc::UnboundedReceiver<mpsc::UnboundedSender<Event>>,
) {
    let (senders_tx, senders_rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |_| {
        let (tx, rx) = mpsc::unbounded_channel();
        senders_tx.send(tx).unwrap();
        SseBody::from_events(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .keep_alive(keep_alive.clone())
            .on_end(sink.clone())
            .into_response()
            .map(boxed)
    });
    (handler, senders_rx)
}

#[tokio::test]
async fn client_close_is_reported_promptly() {
    let (seen, sink) = report_sink();
    let (handler, mut senders) = fed_server(sink, KeepAlive::disabled());
    let (addr, stop, _) = serve(handler).await;

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let events = senders.recv().await.unwrap();
    events.send(Event::message("hello")).unwrap();
    let mut buf = [0u8; 1024];
    let mut got = String::new();
    while !got.contains("data: hello") {
        let n = tcp.read(&mut buf).await.unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // The stream is idle, no heartbeat: only hyper's read side can notice the FIN.
    let closed_at = Instant::now();
    drop(tcp);
    let report = wait_report(&seen).await;
    let latency = report.0 - closed_at;
    assert!(report.1.reason.is_client_gone(), "{:?}", report.1);
    assert_eq!(report.1.events, 1);
    assert_eq!(report.1.bytes, "data: hello\n\n".len() as u64);
    assert!(
        latency < Duration::from_secs(1),
        "reported after {latency:?}, want under 1 s"
    );
    eprintln!("client close reported after {latency:?}");
    stop.trigger();
}

#[tokio::test]
async fn reset_connection_is_reported_as_client_gone() {
    let (seen, sink) = report_sink();
    let keep_alive = KeepAlive::new().interval(Duration::from_millis(100));
    let (handler, mut senders) = fed_server(sink, keep_alive);
    let (addr, stop, _) = serve(handler).await;

    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let _events = senders.recv().await.unwrap();
    let mut buf = [0u8; 1024];
    let mut got = String::new();
    while !got.contains(":\n\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Abort the connection (RST, no FIN), as a vanished peer's kernel answers the
    // next heartbeat write. A zero linger makes `drop` send RST; it does not block.
    #[allow(deprecated)]
    tcp.set_linger(Some(Duration::ZERO)).unwrap();
    let aborted_at = Instant::now();
    drop(tcp);
    let (at, report) = wait_report(&seen).await;
    assert!(report.reason.is_client_gone(), "{report:?}");
    assert!(report.heartbeats >= 1);
    eprintln!("reset connection reported after {:?}", at - aborted_at);
    stop.trigger();
}

async fn wait_report(seen: &Reports) -> (Instant, EndReport) {
    // A hang guard only; the latency itself is measured from the report's time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = seen.lock().unwrap().first().cloned() {
            return r;
        }
        assert!(Instant::now() < deadline, "no end report");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn graceful_shutdown_completes_with_streams_open() {
    let (seen, sink) = report_sink();
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let (addr, stop, server) = serve(Arc::new(move |_| {
        SseBody::from_events(futures_util::stream::pending::<Event>())
            .with_shutdown(&sd)
            .on_end(sink.clone())
            .into_response()
            .map(boxed)
    }))
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(get(addr, "/").await);
    }
    assert_eq!(shutdown.live_streams(), 3);

    // Without ending the streams, hyper's graceful shutdown would wait forever.
    stop.trigger();
    shutdown.trigger_with(Event::default().retry(Duration::from_secs(1)).encode());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown completes")
        .unwrap();
    for res in clients {
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"retry: 1000\n\n");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(_, r)| r.reason == EndReason::Shutdown));
}

#[tokio::test]
async fn served_by_hyper_util_auto_builder_over_http2() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let svc = service_fn(|_req: Request<Incoming>| async {
            let body = SseBody::from_events(futures_util::stream::iter([Event::message("h2")]))
                .keep_alive(KeepAlive::disabled());
            Ok::<_, Infallible>(body.into_response())
        });
        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tcp), svc)
            .await
            .unwrap();
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            Request::get("http://x/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(res.headers().get("connection").is_none());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"data: h2\n\n");
}

#[tokio::test]
async fn axum_handler_returns_the_response_as_is() {
    async fn sse(
    ) -> Response<SseBody<tower_sse::OkEvents<futures_util::stream::Iter<std::vec::IntoIter<Event>>>>>
    {
        SseBody::from_events(futures_util::stream::iter(vec![Event::message(
            "from axum",
        )]))
        .into_response()
    }
    let app = axum::Router::new().route("/sse", axum::routing::get(sse));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let res = get(addr, "/sse").await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], b"data: from axum\n\n");
}
