//! The notifications example over real sockets: cookie sessions, one stream
//! for a user's topics, authorization by topic (a foreign topic refused
//! in-band, all foreign `403` before any stream opens), delivery, exact replay
//! with the composite `Last-Event-ID`, and CORS for credentialed
//! `EventSource`s from one allowed origin.

#[allow(dead_code)]
#[path = "../examples/notifications.rs"]
mod notifications;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tower_sse::{EventStream, MessageEvent};
use tower_sse_hub::{Cursor, EventId};

const GUARD: Duration = Duration::from_secs(60);
const ORIGIN: &str = "http://app.example";

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn server() -> SocketAddr {
    let app = notifications::app(Some(ORIGIN.to_owned()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One request on a new connection, which stays open while the response is read.
async fn send(
    addr: SocketAddr,
    req: http::request::Builder,
    body: Option<Value>,
) -> Response<Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = req.header("host", addr.to_string());
    let req = match body {
        Some(body) => req
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string()))),
        None => req.body(Full::default()),
    };
    guard("response", sender.send_request(req.unwrap()))
        .await
        .unwrap()
}

async fn json_body(res: Response<Incoming>) -> Value {
    let bytes = guard("body", res.into_body().collect()).await.unwrap();
    serde_json::from_slice(&bytes.to_bytes()).unwrap()
}

/// Logs in; the `cookie` header value for the session.
async fn login(addr: SocketAddr, user: &str) -> String {
    let res = send(addr, Request::post("/login"), Some(json!({ "user": user }))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let set = res.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

/// `GET /events` of `topics` (`user:alice&topic=announcements` for two).
fn events(topics: &str, cookie: &str) -> http::request::Builder {
    Request::get(format!("/events?topic={topics}"))
        .header("accept", "text/event-stream")
        .header("cookie", cookie)
}

/// Whether `event`'s id (a cursor over its stream's topics) positions `topic`
/// at `id`, the id `POST /notify` answered.
fn positions(event: &MessageEvent, topic: &str, id: &str) -> bool {
    let cursor: Cursor = event.id.parse().unwrap();
    cursor.get(topic) == Some(id.parse::<EventId>().unwrap())
}

fn text(event: &MessageEvent) -> Value {
    serde_json::from_str::<Value>(&event.data).unwrap()["text"].clone()
}

async fn notify(addr: SocketAddr, cookie: &str, to: &str, text: &str) -> String {
    let req = Request::post("/notify").header("cookie", cookie);
    let res = send(addr, req, Some(json!({ "to": to, "text": text }))).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    json_body(res).await["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_user_reads_their_own_topic_only() {
    let addr = server().await;
    let alice = login(addr, "alice").await;
    let bob = login(addr, "bob").await;

    // No session, a made-up session, another user's topic: refused up front.
    let res = send(
        addr,
        Request::get("/events?topic=user:alice").header("accept", "text/event-stream"),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send(addr, events("user:alice", "session=0123456789abcdef"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = send(addr, events("user:alice", &bob), None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_ne!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(json_body(res).await, json!({"error": "not your topic"}));
    let res = send(addr, events("users", &bob), None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Alice's own stream, and the announcements, with her cookie.
    let res = send(addr, events("user:alice", &alice), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut mine = EventStream::new(res.into_body());
    let res = send(addr, events("announcements", &alice), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut all = EventStream::new(res.into_body());

    let id = notify(addr, &bob, "alice", "lunch?").await;
    let event = guard("notification", mine.next()).await.unwrap().unwrap();
    assert_eq!(event.event, "notification");
    assert!(positions(&event, "user:alice", &id), "{}", event.id);
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data, json!({"from": "bob", "text": "lunch?"}));

    notify(addr, &bob, "*", "deploy at five").await;
    let event = guard("announcement", all.next()).await.unwrap().unwrap();
    assert_eq!(event.event, "announcement");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data, json!({"from": "bob", "text": "deploy at five"}));

    // A message for bob never reaches alice's stream: the next one she gets is hers.
    notify(addr, &alice, "bob", "for bob only").await;
    notify(addr, &bob, "alice", "second").await;
    let event = guard("notification", mine.next()).await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&event.data).unwrap()["text"],
        "second"
    );
}

#[tokio::test]
async fn one_stream_carries_all_of_a_users_topics() {
    let addr = server().await;
    let hana = login(addr, "hana").await;
    let res = send(addr, events("user:hana&topic=announcements", &hana), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut tab = EventStream::new(res.into_body());
    let personal = notify(addr, &hana, "hana", "for you").await;
    let event = guard("personal", tab.next()).await.unwrap().unwrap();
    assert_eq!(
        (event.event.as_str(), text(&event)),
        ("notification", json!("for you"))
    );
    let announced = notify(addr, &hana, "*", "for all").await;
    let event = guard("announcement", tab.next()).await.unwrap().unwrap();
    assert_eq!(
        (event.event.as_str(), text(&event)),
        ("announcement", json!("for all"))
    );
    // Its id positions both topics.
    assert!(positions(&event, "user:hana", &personal));
    assert!(positions(&event, "announcements", &announced));
}

#[tokio::test]
async fn a_foreign_topic_is_refused_and_the_others_open() {
    let addr = server().await;
    let ivan = login(addr, "ivan").await;
    let judy = login(addr, "judy").await;
    let req = events("user:ivan&topic=user:judy&topic=announcements", &ivan);
    let res = send(addr, req, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut tab = EventStream::new(res.into_body());
    // The stream says first which topics it refused, without an id.
    let event = guard("refused", tab.next()).await.unwrap().unwrap();
    assert_eq!(event.event, "refused");
    assert_eq!(event.id, "");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data, json!({"topics": ["user:judy"]}));
    // Judy's notifications never reach it; ivan's and the announcements do.
    notify(addr, &ivan, "judy", "not for ivan").await;
    notify(addr, &judy, "ivan", "for ivan").await;
    notify(addr, &judy, "*", "for all").await;
    let mut texts = Vec::new();
    for _ in 0..2 {
        let event = guard("allowed", tab.next()).await.unwrap().unwrap();
        texts.push(text(&event));
        let cursor: Cursor = event.id.parse().unwrap();
        assert_eq!(cursor.get("user:judy"), None);
    }
    texts.sort_by_key(|t| t.to_string());
    assert_eq!(texts, [json!("for all"), json!("for ivan")]);

    // Every topic foreign: 403 before any byte of a stream.
    let res = send(addr, events("user:judy&topic=user:kim", &ivan), None).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_ne!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(json_body(res).await, json!({"error": "not your topic"}));
}

#[tokio::test]
async fn a_reconnect_replays_what_was_missed() {
    let addr = server().await;
    let carol = login(addr, "carol").await;
    let both = "user:carol&topic=announcements";
    // Two tabs; the hub keeps a topic while it has subscribers.
    let res = send(addr, events(both, &carol), None).await;
    let mut first_tab = EventStream::new(res.into_body());
    let res = send(addr, events(both, &carol), None).await;
    let mut second_tab = EventStream::new(res.into_body());
    let first = notify(addr, &carol, "carol", "one").await;
    let event = guard("one", second_tab.next()).await.unwrap().unwrap();
    assert!(positions(&event, "user:carol", &first));
    let seen = event.id;
    drop(second_tab); // the second tab loses its connection...
    notify(addr, &carol, "carol", "two").await;
    notify(addr, &carol, "*", "three").await;
    notify(addr, &carol, "carol", "four").await;
    // ...and its EventSource reconnects with the last id it saw: exactly
    // what each topic got meanwhile, then live notifications.
    let req = events(both, &carol).header("last-event-id", &seen);
    let res = send(addr, req, None).await;
    let mut second_tab = EventStream::new(res.into_body());
    let mut missed = Vec::new();
    for _ in 0..3 {
        let event = guard("replay", second_tab.next()).await.unwrap().unwrap();
        let text = text(&event);
        missed.push((event.event, text));
    }
    let personal: Vec<_> = missed.iter().filter(|(k, _)| k == "notification").collect();
    assert_eq!(personal.len(), 2, "{missed:?}");
    assert_eq!(
        (&personal[0].1, &personal[1].1),
        (&json!("two"), &json!("four"))
    );
    assert!(missed.contains(&("announcement".to_owned(), json!("three"))));
    notify(addr, &carol, "carol", "five").await;
    let event = guard("live", second_tab.next()).await.unwrap().unwrap();
    assert_eq!(text(&event), "five");
    // The tab that stayed got everything, once, each topic in order.
    let (mut personal, mut announced) = (Vec::new(), Vec::new());
    while personal.len() + announced.len() < 5 {
        let event = guard("first tab", first_tab.next()).await.unwrap().unwrap();
        match event.event.as_str() {
            "notification" => personal.push(text(&event)),
            _ => announced.push(text(&event)),
        }
    }
    assert_eq!(personal, ["one", "two", "four", "five"]);
    assert_eq!(announced, ["three"]);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let addr = server().await;
    let dave = login(addr, "dave").await;
    let res = send(addr, Request::post("/logout").header("cookie", &dave), None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let res = send(addr, events("user:dave", &dave), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_input_is_refused() {
    let addr = server().await;
    for user in ["", "a b", "x/y", &"n".repeat(33)] {
        let res = send(addr, Request::post("/login"), Some(json!({ "user": user }))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{user:?}");
    }
    let erin = login(addr, "erin").await;
    for (to, text) in [
        ("bad name", "hi"),
        ("frank", ""),
        ("frank", &"t".repeat(2049)),
    ] {
        let req = Request::post("/notify").header("cookie", &erin);
        let res = send(addr, req, Some(json!({ "to": to, "text": text }))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{to:?}");
    }
    let res = send(
        addr,
        Request::post("/notify"),
        Some(json!({"to": "erin", "text": "hi"})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A stream request without `topic`, or with more than 64: a JSON error.
    let many = vec!["user:erin"; 65].join("&topic=");
    for path in ["/events".to_owned(), format!("/events?topic={many}")] {
        let res = send(addr, Request::get(&path).header("cookie", &erin), None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            json_body(res).await,
            json!({"error": "name 1 to 64 topics"})
        );
    }
}

#[tokio::test]
async fn credentialed_cors_for_the_allowed_origin_only() {
    let addr = server().await;
    let gina = login(addr, "gina").await;
    let res = send(
        addr,
        events("user:gina", &gina).header("origin", ORIGIN),
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["vary"], "origin");
    drop(res);
    let res = send(
        addr,
        events("user:gina", &gina).header("origin", "http://evil.example"),
        None,
    )
    .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert!(res
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}
