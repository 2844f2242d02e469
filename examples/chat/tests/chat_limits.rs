//! The chat example's limits, over real sockets: the content type of `/send`,
//! its body read timeout, the `leave` of a member that never reads, and the
//! `members` snapshots' shared list.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tower_sse::Shutdown;

/// Hang guard for anything awaited: generous, never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

/// The chat on the crate's serving defaults, with `write_timeout`.
async fn server(write_timeout: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chat::app(Duration::from_secs(3600), &Shutdown::new());
    let server = tower_sse_serve::Server::new().write_timeout(Some(write_timeout));
    tokio::spawn(server.serve(listener, app));
    addr
}

/// One raw HTTP/1.1 exchange on a new connection; the answer as text.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    guard("the answer", tcp.read_to_end(&mut out))
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn post(content_type: Option<&str>, body: &str) -> Vec<u8> {
    let mut head = "POST /send HTTP/1.1\r\nhost: x\r\nconnection: close\r\n".to_owned();
    if let Some(content_type) = content_type {
        head.push_str(&format!("content-type: {content_type}\r\n"));
    }
    format!("{head}content-length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// The `message`, `join` and `leave` events of a room, as `(kind, data)`.
async fn watch(
    addr: SocketAddr,
    path: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Value)> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "x")
        .header("accept", "text/event-stream")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = guard("the stream", sender.send_request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use eventsource_stream::Eventsource;
        let mut events = res.into_body().into_data_stream().eventsource();
        while let Some(Ok(event)) = events.next().await {
            let data = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if tx.send((event.event, data)).is_err() {
                break;
            }
        }
        drop(sender);
    });
    rx
}

async fn next_of(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    kind: &str,
) -> Value {
    loop {
        let (k, data) = guard(kind, events.recv()).await.expect("stream ended");
        if k == kind {
            return data;
        }
    }
}

#[tokio::test]
async fn send_takes_json_only_and_a_refused_post_is_not_broadcast() {
    let addr = server(Duration::from_secs(30)).await;
    let mut watcher = watch(addr, "/sse?room=t&name=watcher").await;
    next_of(&mut watcher, "join").await;
    let forged = json!({"room": "t", "name": "page", "text": "forged"}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let answer = raw(addr, &post(content_type, &forged)).await;
        assert!(
            answer.starts_with("HTTP/1.1 415"),
            "{content_type:?}: {answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "the body must be `application/json`");
    }
    // JSON, with or without a charset, in any case, is taken.
    for content_type in ["application/json", "Application/JSON; charset=utf-8"] {
        let text = format!("as {content_type}");
        let body = json!({"room": "t", "name": "poster", "text": text}).to_string();
        let answer = raw(addr, &post(Some(content_type), &body)).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        // The first message the watcher sees is this one: nothing forged before.
        let message = next_of(&mut watcher, "message").await;
        assert_eq!(message["text"], text);
    }
}

#[tokio::test]
async fn a_send_body_that_never_finishes_gets_408() {
    let addr = server(Duration::from_secs(30)).await;
    let head = "POST /send HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n";
    // Half a chunked body, and a body shorter than its Content-Length; the
    // clients keep their connections open and send nothing more.
    let cases = [
        format!("{head}transfer-encoding: chunked\r\n\r\n5\r\n{{\"roo"),
        format!("{head}content-length: 100\r\n\r\n{{\"room\":\"t\""),
    ];
    let waits = cases.map(|request| {
        tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            guard("the 408", tcp.read_to_end(&mut out)).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        })
    });
    for wait in waits {
        let answer = wait.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("the body did not arrive in time"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_member_that_never_reads_gets_its_leave() {
    let write_timeout = Duration::from_secs(1);
    let addr = server(write_timeout).await;
    let mut watcher = watch(addr, "/sse?room=f&name=watcher").await;
    next_of(&mut watcher, "join").await;
    // It asks for the stream and never reads, through a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut frozen = socket.connect(addr).await.unwrap();
    frozen
        .write_all(
            b"GET /sse?room=f&name=frozen HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
        )
        .await
        .unwrap();
    let join = next_of(&mut watcher, "join").await;
    assert_eq!(join["name"], "frozen");
    // Messages of 4 KB until the frozen member's leave: its buffers fill, its
    // writes stop making progress, and the server cuts it off on its own.
    let (done_tx, mut done) = tokio::sync::oneshot::channel();
    let posting = tokio::spawn(async move {
        let body = json!({"room": "f", "name": "poster", "text": "x".repeat(4000)}).to_string();
        let mut sent = 0u32;
        loop {
            if done.try_recv().is_ok() {
                return sent;
            }
            let answer = raw(addr, &post(Some("application/json"), &body)).await;
            assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
            sent += 1;
        }
    });
    let since = Instant::now();
    let leave = loop {
        let (kind, data) = guard("the leave", watcher.recv()).await.unwrap();
        if kind == "leave" {
            break data;
        }
    };
    assert_eq!(leave["name"], "frozen");
    let _ = done_tx.send(());
    let sent = posting.await.unwrap();
    println!(
        "a member that never reads was listed until {:?} after the first post \
         ({sent} posts of 4 KB, write timeout {write_timeout:?})",
        since.elapsed()
    );
    drop(frozen);
}

/// A room's `members` snapshots: their own head and tail, one shared list.
#[test]
fn snapshots_share_the_member_list_until_it_changes() {
    let mut members = chat::room::Members::default();
    let position: tower_sse_hub::EventId = "7-00000000".parse().unwrap();
    let names = |n: usize| (0..n).map(|i| format!("member {i}")).collect::<Vec<_>>();
    let ada = members.snapshot("lobby", "ada", position, names(500), None);
    let bo = members.snapshot("lobby", "bo\n\"quoted\"", position, names(500), None);
    // The list is one buffer for both, and most of each snapshot.
    assert_eq!(ada.parts()[1].as_ptr(), bo.parts()[1].as_ptr());
    assert!(ada.parts()[1].len() > 9 * ada.len() / 10);
    for (snapshot, you) in [(&ada, "ada"), (&bo, "bo\n\"quoted\"")] {
        let text = std::str::from_utf8(snapshot.as_bytes()).unwrap();
        let data = text
            .strip_prefix("event: members\nid: 7-00000000\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap();
        assert!(!data.contains('\n'), "one data line");
        let json: Value = serde_json::from_str(data).unwrap();
        assert_eq!(
            json,
            json!({"room": "lobby", "you": you, "names": names(500), "as_of": "7-00000000"})
        );
    }
    // A changed list is a new buffer, shared from then on.
    let cy = members.snapshot("lobby", "cy", position, names(501), None);
    let dee = members.snapshot("lobby", "dee", position, names(501), None);
    assert_ne!(cy.parts()[1].as_ptr(), ada.parts()[1].as_ptr());
    assert_eq!(cy.parts()[1].as_ptr(), dee.parts()[1].as_ptr());
    let empty = members.snapshot("lobby", "eve", position, Vec::new(), None);
    assert!(empty
        .as_bytes()
        .ends_with(b"\"names\":[],\"as_of\":\"7-00000000\"}\n\n"));
}
