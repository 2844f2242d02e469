//! The chat example as a cluster: several nodes (separate servers, each with
//! its own hub and presence on Redis) behind no load balancer at all, a client
//! on each. Needs Redis; see `redis_support`.

#[path = "../../../crates/tower-sse-redis/tests/redis_support/mod.rs"]
mod redis_support;

use std::{net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use redis_support::{prefix, shared};
use serde_json::{json, Value};
use tokio::{net::TcpStream, task::JoinHandle};
use tower_sse::Shutdown;
use tower_sse_hub::{Hub, Presence};
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

const GUARD: Duration = Duration::from_secs(30);

/// A chat node on `urls` with key prefix `prefix`.
async fn node(urls: &str, prefix: &str, ttl: Duration) -> (SocketAddr, Hub, RedisPresence) {
    node_with(urls, prefix, ttl, chat::room::PRESENCE_FULL_MAX).await
}

/// A chat node whose Redis does not answer (a port nobody listens on).
async fn node_without_redis() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    node(&url, "down", Duration::from_secs(30)).await.0
}

/// A chat node whose rooms send counts above `full_max` members.
async fn node_with(
    urls: &str,
    prefix: &str,
    ttl: Duration,
    full_max: usize,
) -> (SocketAddr, Hub, RedisPresence) {
    // Generous: a loaded CI machine must not turn a slow answer into a 503.
    let config = RedisConfig::new(urls)
        .prefix(prefix)
        .timeout(Duration::from_secs(2));
    let store = RedisStore::new(config).unwrap();
    let presence = RedisPresence::new(&store, ttl);
    let hub = Hub::with_store(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared: Arc<dyn Presence> = Arc::new(presence.clone());
    // The members of nodes that died are announced every third of the TTL.
    let options = chat::Options {
        announce_expired: Some(ttl / 3),
        presence_full_max: full_max,
        ..chat::Options::new(Duration::from_secs(15))
    };
    let app = chat::app_with_options(&options, &Shutdown::new(), hub.clone(), shared);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hub, presence)
}

#[derive(Debug)]
struct Ev {
    kind: String,
    id: String,
    data: Value,
}

struct Client {
    events: Pin<Box<dyn Stream<Item = Ev> + Send>>,
    conn: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Client {
    async fn next(&mut self) -> Ev {
        tokio::time::timeout(GUARD, self.events.next())
            .await
            .expect("hang guard: no event")
            .expect("stream ended")
    }

    async fn expect(&mut self, kind: &str) -> Ev {
        let ev = self.next().await;
        assert_eq!(ev.kind, kind, "{ev:?}");
        ev
    }
}

async fn request(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> (hyper::Response<hyper::body::Incoming>, JoinHandle<()>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = tokio::time::timeout(GUARD, sender.send_request(req))
        .await
        .expect("hang guard")
        .unwrap();
    (res, conn)
}

async fn connect(addr: SocketAddr, path: &str, last: Option<&str>) -> Client {
    let mut req = Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    let (res, conn) = request(addr, req.body(Full::default()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    use eventsource_stream::Eventsource;
    let events = res.into_body().into_data_stream().eventsource().map(|e| {
        let e = e.expect("well-formed stream");
        Ev {
            kind: e.event,
            id: e.id,
            data: serde_json::from_str(&e.data).expect("JSON data"),
        }
    });
    Client {
        events: Box::pin(events),
        conn,
    }
}

async fn post(addr: SocketAddr, room: &str, name: &str, text: &str) -> (StatusCode, Value) {
    let body = json!({"room": room, "name": name, "text": text}).to_string();
    let req = Request::post("/send")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let (res, _conn) = request(addr, req).await;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_chat_resume_on_the_other_and_share_presence() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("chat");
    let ttl = Duration::from_secs(30);
    let (a, _, _) = node(&url, &prefix, ttl).await;
    let (b, _, _) = node(&url, &prefix, ttl).await;

    let mut alice = connect(a, "/sse?room=r&name=alice", None).await;
    let members = alice.expect("members").await;
    assert_eq!(members.data["names"], json!([]));
    alice.expect("join").await;
    let mut bob = connect(b, "/sse?room=r&name=bob", None).await;
    let members = bob.expect("members").await;
    assert_eq!(
        members.data["names"],
        json!(["alice"]),
        "alice is on the other node"
    );
    bob.expect("join").await;
    assert_eq!(alice.expect("join").await.data["name"], "bob");

    // Posted to B, delivered on A and B; acknowledged once stored.
    let (status, body) = post(b, "r", "bob", "hello").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let on_a = alice.expect("message").await;
    let on_b = bob.expect("message").await;
    assert_eq!(
        (on_a.id.as_str(), on_b.id.as_str()),
        (body["id"].as_str().unwrap(), body["id"].as_str().unwrap())
    );
    assert_eq!(
        on_a.data["id"], body["id"],
        "the id in the data is the real one"
    );

    // Alice's connection drops; she comes back through B with her last id.
    let last = on_a.id.clone();
    drop(alice);
    assert_eq!(bob.expect("leave").await.data["name"], "alice");
    let (status, missed) = post(a, "r", "bob", "while you were away").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    bob.expect("message").await;
    let mut alice = connect(b, "/sse?room=r&name=alice", Some(&last)).await;
    let leave = alice.expect("leave").await;
    assert_eq!(leave.data["name"], "alice");
    let got = alice.expect("message").await;
    assert_eq!(got.id, missed["id"].as_str().unwrap());
    let members = alice.expect("members").await;
    assert_eq!(members.data["names"], json!(["bob"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_has_its_members_leave() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("chatdies");
    let ttl = Duration::from_millis(300);
    let (b, hub_b, presence_b) = node(&url, &prefix, ttl).await;
    let mut bob = connect(b, "/sse?room=r&name=bob", None).await;
    bob.expect("members").await;
    bob.expect("join").await;
    {
        // Node A: its presence and hub, without a server; dropped without cleanup.
        let store = RedisStore::new(RedisConfig::new(&url).prefix(&prefix)).unwrap();
        let presence = RedisPresence::new(&store, ttl);
        presence.join("r", "ghost").await.unwrap();
    }
    // Node B's announcer takes the ghost's entry and announces its `leave`.
    let leave = bob.expect("leave").await;
    assert_eq!(leave.data["name"], "ghost");
    drop((hub_b, presence_b));
}

#[tokio::test]
async fn send_is_503_with_a_json_error_when_redis_is_unreachable() {
    let addr = node_without_redis().await;
    let (status, body) = post(addr, "r", "bob", "hello").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("unavailable"),
        "{body}"
    );
}

/// A big room spans nodes: its count covers every node's members, and every
/// member reads counts, not a `join` per member, once it is above the
/// threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_room_counts_the_members_of_every_node() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("chatbig");
    let ttl = Duration::from_secs(30);
    let (a, _hub_a, _pa) = node_with(&url, &prefix, ttl, 2).await;
    let (b, _hub_b, _pb) = node_with(&url, &prefix, ttl, 2).await;
    let mut alice = connect(a, "/sse?room=r&name=alice", None).await;
    alice.expect("members").await;
    alice.expect("join").await;
    let mut bob = connect(b, "/sse?room=r&name=bob", None).await;
    assert_eq!(bob.expect("members").await.data["names"], json!(["alice"]));
    assert_eq!(alice.expect("join").await.data["name"], "bob");
    assert_eq!(bob.expect("join").await.data["name"], "bob");
    let mut carol = connect(a, "/sse?room=r&name=carol", None).await;
    let snapshot = carol.expect("members").await.data;
    assert_eq!(snapshot["names"], json!(["alice", "bob"]));
    assert!(snapshot.get("count").is_none(), "{snapshot}");
    // Both nodes' members read the crossing instead of carol's join.
    for member in [&mut alice, &mut bob, &mut carol] {
        let crossing = member.expect("presence").await.data;
        assert_eq!(crossing["names"].as_array().unwrap().len(), 2, "{crossing}");
        assert_eq!(
            crossing,
            json!({"id": crossing["id"], "room": "r", "mode": "count", "count": 3,
                "names": crossing["names"]})
        );
    }
    // A newcomer on the other node: a count and two names, and counts up to
    // four for everyone (node B may announce the crossing once more).
    let mut dan = connect(b, "/sse?room=r&name=dan", None).await;
    let snapshot = dan.expect("members").await.data;
    assert_eq!(snapshot["count"], 3);
    assert_eq!(snapshot["names"].as_array().unwrap().len(), 2, "{snapshot}");
    for member in [&mut alice, &mut bob, &mut carol] {
        let mut count = 3;
        while count < 4 {
            let ev = member.next().await;
            assert!(
                ev.kind == "count" || (ev.kind == "presence" && ev.data["mode"] == "count"),
                "a big room sent {ev:?}"
            );
            count = ev.data["count"].as_u64().unwrap();
        }
        assert_eq!(count, 4);
    }
}

/// One stream of two rooms, resumed on the other node with its composite
/// cursor while messages are posted to both rooms through both nodes: each
/// room's missed messages once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_rooms_resume_on_another_node() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("chatmulti");
    let ttl = Duration::from_secs(30);
    let (a, _hub_a, _pa) = node(&url, &prefix, ttl).await;
    let (b, _hub_b, _pb) = node(&url, &prefix, ttl).await;
    let mut ann = connect(a, "/sse?room=x&room=y&name=ann", None).await;
    for _ in 0..2 {
        ann.expect("members").await;
    }
    let (status, first) = post(b, "y", "bob", "first").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cursor = loop {
        let ev = ann.next().await;
        if ev.kind == "message" {
            assert_eq!(ev.data["id"], first["id"]);
            break ev.id;
        }
    };
    assert!(cursor.starts_with("m1."), "{cursor}");
    drop(ann);
    let mut missed = Vec::new();
    for (n, (room, via)) in [("x", a), ("y", b), ("x", b), ("y", a)]
        .into_iter()
        .enumerate()
    {
        let (status, body) = post(via, room, "bob", &format!("missed {n}")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        missed.push((room.to_owned(), body["id"].as_str().unwrap().to_owned()));
    }
    let mut back = connect(b, "/sse?room=x&room=y&name=ann", Some(&cursor)).await;
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let ev = back.next().await;
        if ev.kind == "message" {
            let room = ev.data["room"].as_str().unwrap().to_owned();
            got.push((room, ev.data["id"].as_str().unwrap().to_owned()));
        }
    }
    got.sort();
    missed.sort();
    assert_eq!(got, missed);
}

/// An `EventSource` that cannot be served now is told to come back (a `503`
/// would end it for good): `200`, `unavailable`, a `retry:`, the end; a
/// client that does not read event streams gets the `503`.
#[tokio::test]
async fn an_event_source_is_told_to_come_back_when_redis_is_unreachable() {
    let addr = node_without_redis().await;
    let req = Request::get("/sse?room=r&name=ann")
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(Full::default())
        .unwrap();
    let (res, _conn) = request(addr, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = tokio::time::timeout(GUARD, res.into_body().collect())
        .await
        .expect("the stream ends")
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("retry: 2000\n"), "{text}");
    assert!(text.contains("event: unavailable\n"), "{text}");
    let req = Request::get("/sse?room=r&name=ann")
        .header("host", addr.to_string())
        .body(Full::default())
        .unwrap();
    let (res, _conn) = request(addr, req).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "2");
}
