//! The dashboard example over real sockets: one stream of every widget shows
//! each widget's latest state at once, then live updates; a reconnect with the
//! composite `Last-Event-ID` gets exactly what each widget published
//! meanwhile; viewers counted with the streams' end reports; bad queries
//! answered `400` with a JSON error.

#[allow(dead_code)]
#[path = "../examples/dashboard.rs"]
mod dashboard;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_sse::EventStream;
use tower_sse_hub::{Cursor, Hub};

const GUARD: Duration = Duration::from_secs(60);
/// A sampling period no test lasts: only the tests publish.
const NEVER: Duration = Duration::from_secs(24 * 3600);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn server(hub: Hub, every: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = dashboard::app(hub, every).await;
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `GET path` on a new connection, with `Last-Event-ID: last` if any; the
/// connection's task, to close it.
async fn get(
    addr: SocketAddr,
    path: &str,
    last: Option<&str>,
) -> (Response<Incoming>, JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    let res = guard(
        "head",
        sender.send_request(req.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    (res, conn)
}

struct Page {
    events: EventStream<tower_sse::decode::BodyDataStream<Incoming>>,
    conn: JoinHandle<()>,
}

/// A page that goes away closes its connection.
impl Drop for Page {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// A page's stream of `path`.
async fn open(addr: SocketAddr, path: &str, last: Option<&str>) -> Page {
    let (res, conn) = get(addr, path, last).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Page {
        events: EventStream::new(res.into_body()),
        conn,
    }
}

/// One widget update: its name, its value, and the stream's cursor.
struct Update {
    widget: String,
    value: Value,
    id: String,
}

impl Page {
    async fn next(&mut self) -> Update {
        let event = guard("update", self.events.next())
            .await
            .expect("stream ended")
            .unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        // Every id is a cursor over the stream's widgets, opaque to the page.
        assert!(event.id.parse::<Cursor>().is_ok(), "{:?}", event.id);
        Update {
            widget: event.event,
            value: data["value"].clone(),
            id: event.id,
        }
    }
}

#[tokio::test]
async fn a_page_shows_every_widget_at_once_then_live_updates() {
    let hub = dashboard::hub();
    let addr = server(hub.clone(), NEVER).await;
    // Updates before the page opens: only the latest of each is its state.
    for load in [10.0, 20.0, 30.5] {
        dashboard::show(&hub, "load", json!(load)).await.unwrap();
    }
    dashboard::show(&hub, "uptime", json!(42)).await.unwrap();

    let mut page = open(addr, "/sse", None).await;
    let mut first = BTreeMap::new();
    for _ in 0..dashboard::WIDGETS.len() {
        let update = page.next().await;
        let again = first.insert(update.widget.clone(), update.value);
        assert!(again.is_none(), "{} twice before the others", update.widget);
    }
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(names, ["load", "started", "uptime", "viewers"]);
    assert_eq!(first["load"], 30.5);
    assert_eq!(first["uptime"], 42);
    assert!(first["started"].as_u64().unwrap() > 0);

    // Then live: the update, and the viewer count this page changed.
    dashboard::show(&hub, "load", json!(55.5)).await.unwrap();
    loop {
        let update = page.next().await;
        if update.widget == "load" {
            assert_eq!(update.value, 55.5);
            break;
        }
        assert_eq!(update.widget, "viewers", "only live updates now");
    }
}

#[tokio::test]
async fn a_reconnect_resumes_each_widget_exactly() {
    let hub = dashboard::hub();
    let addr = server(hub.clone(), NEVER).await;
    // A page of three widgets (not `viewers`, which the pages themselves move).
    let three = "/sse?widget=load&widget=uptime&widget=started";
    let mut page = open(addr, three, None).await;
    let mut last = String::new();
    for _ in 0..3 {
        last = page.next().await.id;
    }
    drop(page); // the connection drops...

    // ...updates meanwhile...
    for (widget, value) in [
        ("load", json!(1.5)),
        ("uptime", json!(7)),
        ("load", json!(2.5)),
    ] {
        dashboard::show(&hub, widget, value).await.unwrap();
    }

    // ...and the browser reconnects with the last cursor it saw: exactly what
    // it missed, per widget and in order, then live updates.
    let mut page = open(addr, three, Some(&last)).await;
    let mut missed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for _ in 0..3 {
        let update = page.next().await;
        missed.entry(update.widget).or_default().push(update.value);
    }
    let want = BTreeMap::from([
        ("load".to_owned(), vec![json!(1.5), json!(2.5)]),
        ("uptime".to_owned(), vec![json!(7)]),
    ]);
    assert_eq!(missed, want);
    dashboard::show(&hub, "started", json!(5)).await.unwrap();
    let update = page.next().await;
    assert_eq!(
        (update.widget.as_str(), &update.value),
        ("started", &json!(5))
    );
    let live = update.id;

    // A reconnect that adds a widget: the others resume (nothing missed
    // here), the new one starts with its state.
    let mut page = open(
        addr,
        "/sse?widget=load&widget=uptime&widget=started&widget=viewers",
        Some(&live),
    )
    .await;
    let update = page.next().await;
    assert_eq!(update.widget, "viewers");
    assert!(update.value.is_u64());
    dashboard::show(&hub, "uptime", json!(8)).await.unwrap();
    loop {
        let update = page.next().await;
        if update.widget != "viewers" {
            assert_eq!(
                (update.widget.as_str(), &update.value),
                ("uptime", &json!(8))
            );
            break;
        }
    }
}

#[tokio::test]
async fn viewers_are_counted_while_their_pages_are_open() {
    let addr = server(dashboard::hub(), Duration::from_millis(5)).await;
    let mut first = open(addr, "/sse", None).await;
    let second = open(addr, "/sse?widget=viewers", None).await;
    // Two pages open: an update soon says so (the sampler's updates go on).
    loop {
        let update = first.next().await;
        if update.widget == "viewers" && update.value == 2 {
            break;
        }
    }
    // The second page goes away; its end report takes it off the count.
    drop(second);
    loop {
        let update = first.next().await;
        if update.widget == "viewers" && update.value == 1 {
            break;
        }
    }
}

#[tokio::test]
async fn bad_queries_are_refused_with_a_json_error() {
    let addr = server(dashboard::hub(), NEVER).await;
    for path in [
        "/sse?widget=nope",
        "/sse?widget=load&widget=",
        "/sse?widget=%FF",
        "/sse?widget=widget/load",
    ] {
        let (res, _conn) = get(addr, path, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(res.headers()["content-type"], "application/json");
        let body = guard("body", res.into_body().collect()).await.unwrap();
        let body: Value = serde_json::from_slice(&body.to_bytes()).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("unknown widget"),
            "{body}"
        );
    }
    // A hostile `Last-Event-ID` is no cursor: the page starts afresh.
    let mut page = open(addr, "/sse?widget=load", Some("m1.!!!!")).await;
    assert_eq!(page.next().await.widget, "load");
}
