//! An HTTP/1.1 event stream written by the server itself once hyper has read
//! its request (`src/handoff.rs`), over real sockets on 127.0.0.1: what a
//! strict client reads, keep-alive after the stream, the client's close,
//! `connection: close`, pipelined requests, a failing body, and the requests
//! left to hyper.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc::UnboundedReceiver,
};
use tower_sse::{EndReason, EndReport, Event, Shutdown, SseBody, SseLayer};
use tower_sse_serve::Server;

type Body = UnsyncBoxBody<Bytes, tower_sse::BoxError>;

const LARGE: usize = 16 << 20;

/// A hang guard: generous, never a timing assertion.
async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// `/three`: three events with ids, then the end; `/endless`: no events,
/// ever; `/fail`: one event, then a body error; `/large`: 16 MiB of `x` (more than a socket buffer takes);
/// anything else: `ok`.
async fn handler(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    fn sse<S>(body: SseBody<tower_sse::OkEvents<S>>) -> Response<Body>
    where
        S: futures_core::Stream<Item = Event> + Send + 'static,
    {
        body.into_response()
            .map(|b| b.map_err(|e| match e {}).boxed_unsync())
    }
    let res = match req.uri().path() {
        "/three" => sse(SseBody::from_events(futures_util::stream::iter(
            ["one", "two", "three"]
                .into_iter()
                .enumerate()
                .map(|(i, data)| Event::message(data).id(i.to_string()).unwrap()),
        ))),
        "/endless" => sse(SseBody::from_events(
            futures_util::stream::pending::<Event>(),
        )),
        "/fail" => {
            let frames = futures_util::stream::iter([
                Ok(http_body::Frame::data(Bytes::from_static(b"data: one\n\n"))),
                Err(tower_sse::BoxError::from("the producer failed")),
            ]);
            tower_sse::response(http_body_util::StreamBody::new(frames)).map(|b| b.boxed_unsync())
        }
        "/large" => Response::new(
            Full::new(Bytes::from(vec![b'x'; LARGE]))
                .map_err(|e| match e {})
                .boxed_unsync(),
        ),
        _ => Response::new(
            Full::new(Bytes::from_static(b"ok"))
                .map_err(|e| match e {})
                .boxed_unsync(),
        ),
    };
    Ok(res)
}

/// A server with `SseLayer` (end reports) around [`handler`].
async fn start() -> (SocketAddr, Shutdown, UnboundedReceiver<EndReport>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
    let svc = tower::ServiceBuilder::new()
        .map_response(|res: Response<tower_sse::layer::ResponseBody<Body>>| {
            res.map(|b| b.boxed_unsync())
        })
        .layer(SseLayer::new().on_end(move |r| drop(tx.send(r))))
        .service_fn(handler);
    let shutdown = Shutdown::new();
    tokio::spawn(Server::new().with_shutdown(&shutdown).serve(listener, svc));
    (addr, shutdown, reports)
}

/// Sends `request` as is, and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    guard("the server closing", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn messages(body: &[u8]) -> Vec<(String, String)> {
    let mut decoder = tower_sse::Decoder::new();
    decoder.push(body);
    let mut out = Vec::new();
    while let Some(frame) = decoder.next_frame().unwrap() {
        if let tower_sse::decode::Frame::Event(event) = frame {
            out.push((event.id, event.data));
        }
    }
    out
}

fn ids_and_data() -> Vec<(String, String)> {
    [("0", "one"), ("1", "two"), ("2", "three")]
        .into_iter()
        .map(|(id, data)| (id.to_owned(), data.to_owned()))
        .collect()
}

#[tokio::test]
async fn a_strict_client_reads_the_stream_and_the_connection_serves_again_after_it() {
    let (addr, _shutdown, mut reports) = start().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut client, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for _ in 0..3 {
        let request = Request::get("/three")
            .header("host", "x")
            .header("accept", "text/event-stream")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = guard("the head", client.send_request(request))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(headers["transfer-encoding"], "chunked");
        assert_eq!(headers["cache-control"], "no-cache, no-transform");
        assert!(headers.contains_key("date"));
        assert!(!headers.contains_key("connection"));
        let body = guard("the body", response.into_body().collect())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(messages(&body), ids_and_data());
        let report = guard("the end report", reports.recv()).await.unwrap();
        assert!(matches!(report.reason, EndReason::Completed), "{report:?}");
        // The same connection, served by hyper again.
        let request = Request::get("/ok")
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = guard("ok", client.send_request(request)).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "ok");
    }
    drop(client);
    guard("the connection ends", conn).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_closes_ends_its_stream_at_once() {
    let (addr, _shutdown, mut reports) = start().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = guard("the head", tcp.read(&mut buf)).await.unwrap();
        assert!(n > 0);
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    // hyper writes `date` after `transfer-encoding`: this order tells that
    // the stream was taken over.
    assert!(head.contains("\r\ndate: "), "{head}");
    assert!(
        head.ends_with("GMT\r\ntransfer-encoding: chunked\r\n\r\n"),
        "{head}"
    );
    drop(tcp);
    // No heartbeat is due for 15 s: the peek at the socket tells the close.
    let report = guard("the end report", reports.recv()).await.unwrap();
    assert!(matches!(report.reason, EndReason::ClientGone), "{report:?}");
}

#[tokio::test]
async fn connection_close_and_a_pipelined_request_close_the_connection_after_the_stream() {
    let (addr, _shutdown, _reports) = start().await;
    // Asked by the client.
    let answer = exchange(
        addr,
        "GET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "{body:?}");
    // A request pipelined behind the stream's, in the same segment: hyper
    // read it into the buffer dropped with its connection. The head says the
    // connection closes after the stream, so the client sends it again
    // (RFC 9112, section 9.3.2) instead of waiting for an answer.
    let answer = exchange(
        addr,
        "GET /three HTTP/1.1\r\nhost: x\r\n\r\nGET /ok HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "{body:?}");
    assert!(!body.contains("HTTP/1.1"), "{body:?}");
}

#[tokio::test]
async fn a_failing_body_cuts_the_response_off_without_its_last_chunk() {
    let (addr, _shutdown, _reports) = start().await;
    let answer = exchange(addr, "GET /fail HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\ntransfer-encoding: chunked"), "{head}");
    assert_eq!(body, "b\r\ndata: one\n\n\r\n");
}

#[tokio::test]
async fn http_1_0_head_and_request_bodies_are_left_to_hyper() {
    let (addr, _shutdown, _reports) = start().await;
    // HTTP/1.0 has no chunks: hyper ends the body by closing.
    let answer = exchange(addr, "GET /three HTTP/1.0\r\nhost: x\r\n\r\n").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.ends_with("GMT"), "hyper writes `date` last: {head}");
    assert_eq!(messages(body.as_bytes()), ids_and_data());
    // HEAD: a head only.
    let answer = exchange(
        addr,
        "HEAD /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert_eq!(body, "");
    // A request with a body, read by hyper while the stream is written.
    let answer = exchange(
        addr,
        "POST /three HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await;
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(body.ends_with("\r\n0\r\n\r\n"), "{body:?}");
}

#[tokio::test]
async fn a_stream_pipelined_behind_a_response_still_being_flushed_follows_all_of_it() {
    let (addr, _shutdown, _reports) = start().await;
    // A small receive buffer, read late: the large response waits in the
    // socket and in hyper's write buffer while the stream's request behind
    // it is read. The stream is taken over only once hyper's buffer is
    // flushed (a write that went through last), so nothing of the large
    // response is lost with it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /large HTTP/1.1\r\nhost: x\r\n\r\nGET /three HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut out = Vec::new();
    guard("the server closing", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&out[..end]);
    assert!(head.contains(&format!("content-length: {LARGE}")), "{head}");
    let body = &out[end..end + LARGE];
    assert!(body.iter().all(|&b| b == b'x'));
    let rest = String::from_utf8(out[end + LARGE..].to_vec()).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest:.200}");
    let (head, stream) = rest.split_once("\r\n\r\n").unwrap();
    // Taken over from hyper (which writes `date` last).
    assert!(
        head.contains("GMT\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert!(stream.ends_with("\r\n0\r\n\r\n"), "{stream:?}");
}
