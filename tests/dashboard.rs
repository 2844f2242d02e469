//! The dashboard example over real sockets: the current snapshot at once, then
//! newer ones in order; viewers counted with the streams' end reports.

#[allow(dead_code)]
#[path = "../examples/dashboard.rs"]
mod dashboard;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::{body::Incoming, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tower_sse::{EventStream, MessageEvent};

const GUARD: Duration = Duration::from_secs(60);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn server(every: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = dashboard::app(every);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Page {
    events: EventStream<tower_sse::decode::BodyDataStream<Incoming>>,
    conn: tokio::task::JoinHandle<()>,
}

async fn open(addr: SocketAddr) -> Page {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/sse")
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = guard("head", sender.send_request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Page {
        events: EventStream::new(res.into_body()),
        conn,
    }
}

impl Page {
    async fn next(&mut self) -> (MessageEvent, Value) {
        let event = guard("snapshot", self.events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(event.event, "stats");
        let data = serde_json::from_str(&event.data).unwrap();
        (event, data)
    }
}

#[tokio::test]
async fn snapshots_arrive_in_order_with_ids() {
    let addr = server(Duration::from_millis(5)).await;
    let mut page = open(addr).await;
    let (first, data) = page.next().await;
    assert_eq!(first.id, data["tick"].to_string());
    let mut last = data["tick"].as_u64().unwrap();
    for _ in 0..5 {
        let (event, data) = page.next().await;
        let tick = data["tick"].as_u64().unwrap();
        // Newer each time; a slow reader may skip some, never goes back.
        assert!(tick > last, "{last} then {tick}");
        assert_eq!(event.id, tick.to_string());
        assert!(data["load"].is_number() && data["uptime_ms"].is_u64());
        last = tick;
    }
}

#[tokio::test]
async fn viewers_are_counted_while_their_pages_are_open() {
    let addr = server(Duration::from_millis(5)).await;
    let mut first = open(addr).await;
    let second = open(addr).await;
    // Two pages open: a snapshot soon says so.
    loop {
        let (_, data) = first.next().await;
        if data["viewers"] == 2 {
            break;
        }
    }
    // The second page goes away; its end report takes it off the count.
    second.conn.abort();
    drop(second);
    loop {
        let (_, data) = first.next().await;
        if data["viewers"] == 1 {
            break;
        }
    }
}
