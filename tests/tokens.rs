//! The token-streaming example over real sockets, read with the crate's
//! `EventStream` as a Rust client of an LLM API would.

#[allow(dead_code)]
#[path = "../examples/tokens.rs"]
mod tokens;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower_sse::{EndReason, EndReport, EventStream};

const GUARD: Duration = Duration::from_secs(60);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn server(delay: Duration) -> (SocketAddr, mpsc::UnboundedReceiver<EndReport>) {
    let (tx, ended) = mpsc::unbounded_channel();
    let app = tokens::app(delay, Arc::new(move |report| drop(tx.send(report))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, ended)
}

/// Sends `POST /generate` with `body` on a new connection.
async fn generate(
    addr: SocketAddr,
    body: Value,
) -> (
    hyper::Response<hyper::body::Incoming>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::post("/generate")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = guard("response head", sender.send_request(req))
        .await
        .unwrap();
    (res, conn)
}

#[tokio::test]
async fn tokens_stream_then_done() {
    let (addr, mut ended) = server(Duration::from_millis(1)).await;
    let (res, _conn) = generate(addr, json!({"prompt": "  streams  of\ttokens "})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut events = EventStream::new(res.into_body());
    let mut text = String::new();
    let mut count = 0;
    let done = loop {
        let event = guard("event", events.next()).await.unwrap().unwrap();
        match event.event.as_str() {
            "token" => {
                text.push_str(&event.data);
                count += 1;
            }
            "done" => break event,
            other => panic!("unexpected event {other}"),
        }
    };
    // Leading spaces survive the wire format (`data:  of` keeps one space).
    assert_eq!(text, "You said: streams of tokens");
    let done: Value = serde_json::from_str(&done.data).unwrap();
    assert_eq!(done, json!({"tokens": count, "finish": "stop"}));
    // Then the response ends.
    assert!(guard("end", events.next()).await.is_none());
    let report = guard("end report", ended.recv()).await.unwrap();
    assert_eq!(report.reason, EndReason::Completed);
    assert_eq!(report.events, count + 1);
}

#[tokio::test]
async fn max_tokens_cuts_the_answer() {
    let (addr, _ended) = server(Duration::ZERO).await;
    let (res, _conn) = generate(addr, json!({"prompt": "a b c d e", "max_tokens": 3})).await;
    let events: Vec<_> = guard("stream", EventStream::new(res.into_body()).collect()).await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    let tokens: Vec<_> = events[..3].iter().map(|e| e.data.as_str()).collect();
    assert_eq!(tokens, ["You", " said:", " a"]);
    assert_eq!(events[3].event, "done");
    assert_eq!(events[3].data, r#"{"finish":"length","tokens":3}"#);
    assert_eq!(events.len(), 4);
}

#[tokio::test]
async fn a_client_that_leaves_stops_the_generation() {
    // Slow tokens: the client leaves long before the answer is complete.
    let (addr, mut ended) = server(Duration::from_millis(20)).await;
    let prompt = vec!["word"; 500].join(" ");
    let (res, conn) = generate(addr, json!({"prompt": prompt, "max_tokens": 500})).await;
    let mut events = EventStream::new(res.into_body());
    for _ in 0..2 {
        let event = guard("token", events.next()).await.unwrap().unwrap();
        assert_eq!(event.event, "token");
    }
    conn.abort();
    drop(events);
    let report = guard("end report", ended.recv()).await.unwrap();
    assert_eq!(report.reason, EndReason::ClientGone);
    assert!(report.events < 500, "{report:?}");
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_stream() {
    let (addr, _ended) = server(Duration::ZERO).await;
    for (body, status) in [
        (json!({"prompt": "   "}), StatusCode::BAD_REQUEST),
        (json!({"prompt": "x".repeat(9000)}), StatusCode::BAD_REQUEST),
        (
            json!({"prompt": "hi", "max_tokens": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"prompt": "hi", "max_tokens": 513}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"prompt": 42}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!([]), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (res, _conn) = generate(addr, body.clone()).await;
        assert_eq!(res.status(), status, "{body}");
        assert_ne!(res.headers()["content-type"], "text/event-stream");
        let bytes = guard("body", res.into_body().collect()).await.unwrap();
        assert!(!bytes.to_bytes().is_empty());
    }
}
