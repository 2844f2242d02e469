//! The chat example's contract, over real sockets.
//!
//! The example's source is compiled into this test (`#[path]`), and each test
//! serves it on its own `127.0.0.1:0` listener: no separate build step, so the
//! tests work in a clean clone under `cargo test --all-features`.

use std::{net::SocketAddr, pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use tower_sse::Shutdown;
use tower_sse_hub::EventId;

/// Hang guard for anything awaited: generous, never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

async fn server(heartbeat: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chat::app(heartbeat, &Shutdown::new());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A chat in this process with `options`.
async fn server_with(options: chat::Options) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let presence = std::sync::Arc::new(tower_sse_hub::MemoryPresence::new());
    let hub = tower_sse_hub::Hub::new();
    let app = chat::app_with_options(&options, &Shutdown::new(), hub, presence);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One event as the test sees it.
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    kind: String,
    id: String,
    data: Value,
}

type Events = Pin<Box<dyn Stream<Item = Ev> + Send>>;

/// An SSE connection; dropping it closes the socket.
struct Client {
    events: Events,
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

    /// The next event, which must be of `kind`.
    async fn expect(&mut self, kind: &str) -> Ev {
        let ev = self.next().await;
        assert_eq!(ev.kind, kind, "{ev:?}");
        ev
    }

    /// The next `message` event, skipping presence.
    async fn next_message(&mut self) -> Ev {
        loop {
            let ev = self.next().await;
            if ev.kind == "message" {
                return ev;
            }
        }
    }
}

async fn send(
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

/// Opens `GET path` as an `EventSource` would.
async fn open(addr: SocketAddr, path: &str, last_event_id: Option<&[u8]>) -> (StatusCode, Client) {
    let mut req = Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header(
            "last-event-id",
            hyper::header::HeaderValue::from_bytes(id).unwrap(),
        );
    }
    let (res, conn) = send(addr, req.body(Full::default()).unwrap()).await;
    let status = res.status();
    use eventsource_stream::Eventsource;
    let events = res.into_body().into_data_stream().eventsource().map(|e| {
        let e = e.expect("well-formed stream");
        Ev {
            kind: e.event,
            id: e.id,
            data: serde_json::from_str(&e.data).expect("JSON data"),
        }
    });
    (
        status,
        Client {
            events: Box::pin(events),
            conn,
        },
    )
}

async fn connect(addr: SocketAddr, path: &str) -> Client {
    let (status, client) = open(addr, path, None).await;
    assert_eq!(status, StatusCode::OK);
    client
}

/// A request and its JSON answer.
async fn call(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let (res, _conn) = send(addr, req).await;
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn post(addr: SocketAddr, body: impl Into<Bytes>) -> (StatusCode, Value) {
    let req = Request::post("/send")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap();
    call(addr, req).await
}

/// Posts a valid message and returns its id.
async fn say(addr: SocketAddr, room: &str, name: &str, text: &str) -> String {
    let (status, body) = post(
        addr,
        json!({"room": room, "name": name, "text": text}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The offset of an id (ids are `OFFSET-EPOCH`, per room).
fn off(id: &str) -> u64 {
    id.parse::<EventId>().unwrap().offset()
}

/// The id at offset `n` in the epoch of `like`.
fn nth(like: &str, n: u64) -> String {
    EventId::new(n, like.parse::<EventId>().unwrap().epoch()).to_string()
}

fn presence(kind: &str, id: &str, room: &str, name: &str) -> Ev {
    Ev {
        kind: kind.into(),
        id: id.to_owned(),
        data: json!({"id": id, "room": room, "name": name}),
    }
}

/// Checks a message event and returns its id.
fn check_message(ev: &Ev, room: &str, name: &str, text: &str) -> String {
    assert_eq!(ev.kind, "message");
    let id = ev.data["id"].as_str().unwrap().to_owned();
    assert_eq!(ev.id, id);
    assert_eq!(ev.data["room"], room);
    assert_eq!(ev.data["name"], name);
    assert_eq!(ev.data["text"], text);
    assert!(ev.data["ts"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(ev.data.as_object().unwrap().len(), 5, "{:?}", ev.data);
    id
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn page_is_self_contained() {
    let addr = server(HOUR).await;
    let (res, _conn) = send(
        addr,
        Request::get("/")
            .header("host", "x")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let html =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for needle in [
        "new EventSource('/sse?'",
        "source.onmessage",
        "addEventListener('join'",
        "addEventListener('leave'",
        "source.close()",
        "fetch('/send'",
        "textContent",
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(!html.contains("innerHTML"));
}

#[tokio::test]
async fn two_subscribers_and_a_poster() {
    let addr = server(HOUR).await;
    let mut alice = connect(addr, "/sse?room=r1&name=alice").await;
    // The snapshot carries the room's position as its id, so that even a
    // client that has seen nothing else can resume exactly.
    let snapshot = alice.expect("members").await;
    let e = snapshot.id.clone();
    assert_eq!(off(&e), 0);
    assert_eq!(
        snapshot.data,
        json!({"room": "r1", "you": "alice", "names": [], "as_of": e})
    );
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 1), "r1", "alice")
    );

    let mut bob = connect(addr, "/sse?room=r1&name=bob").await;
    let snapshot = bob.expect("members").await;
    assert_eq!(snapshot.id, nth(&e, 1));
    assert_eq!(
        snapshot.data,
        json!({"room": "r1", "you": "bob", "names": ["alice"], "as_of": nth(&e, 1)})
    );
    assert_eq!(bob.next().await, presence("join", &nth(&e, 2), "r1", "bob"));
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 2), "r1", "bob")
    );

    // Someone in another room sees nothing of r1; ids count per room.
    let mut other = connect(addr, "/sse?room=r2&name=zed").await;
    let z = other.expect("members").await.id;
    assert_ne!(
        z.split('-').nth(1),
        e.split('-').nth(1),
        "another room, another epoch"
    );
    assert_eq!(
        other.next().await,
        presence("join", &nth(&z, 1), "r2", "zed")
    );

    let id = say(addr, "r1", "carol", "hello <b>world</b> ✓").await;
    assert_eq!(id, nth(&e, 3));
    for client in [&mut alice, &mut bob] {
        let ev = client.next().await;
        check_message(&ev, "r1", "carol", "hello <b>world</b> ✓");
        assert_eq!(ev.data["id"], nth(&e, 3));
    }
    let id = say(addr, "r2", "zed", "only r2").await;
    assert_eq!(id, nth(&z, 2));
    check_message(&other.next().await, "r2", "zed", "only r2");
    // Room defaults to lobby.
    let mut lobby = connect(addr, "/sse?name=lou").await;
    lobby.expect("members").await;
    lobby.expect("join").await;
    let (status, body) = post(addr, r#"{"name":"lou","text":"in the lobby"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ev = lobby.next().await;
    let id = check_message(&ev, "lobby", "lou", "in the lobby");
    assert_eq!(id, body["id"].as_str().unwrap());
}

#[tokio::test]
async fn bare_sse_joins_the_lobby_as_a_guest() {
    let addr = server(HOUR).await;
    let mut first = connect(addr, "/sse").await;
    let snapshot = first.expect("members").await;
    assert_eq!(snapshot.data["room"], "lobby");
    assert_eq!(snapshot.data["you"], "guest-1");
    let e = snapshot.id;
    assert_eq!(
        first.next().await,
        presence("join", &nth(&e, 1), "lobby", "guest-1")
    );
    let mut second = connect(addr, "/sse?name=%20%20").await;
    assert_eq!(
        second.expect("members").await.data["names"],
        json!(["guest-1"])
    );
    assert_eq!(
        second.next().await,
        presence("join", &nth(&e, 2), "lobby", "guest-2")
    );
}

/// The chat's heartbeats (`HEARTBEAT_MS`, the layer's `KeepAlive`) reach a
/// quiet room's stream. They used to be silenced: the body said
/// `KeepAlive::disabled()` to leave them to the layer, and the rule then gave
/// the stream none (issue 17).
#[tokio::test]
async fn a_quiet_room_gets_heartbeats() {
    let addr = server(Duration::from_millis(300)).await;
    let req = Request::get("/sse?room=quiet&name=alone")
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(Full::default())
        .unwrap();
    let (res, _conn) = send(addr, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut got = Vec::new();
    // A count over a window, not a speed: about six are due in it.
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(frame)) = tokio::time::timeout_at(end, body.frame()).await {
        if let Ok(data) = frame.expect("a frame").into_data() {
            got.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(got).expect("UTF-8");
    let comments = text.lines().filter(|line| line.starts_with(':')).count();
    assert!(comments >= 3, "{comments} heartbeats in:\n{text}");
    // Nothing else than the snapshot and this member's own `join`.
    let events: Vec<_> = text
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(events, ["members", "join"], "{text}");
}

#[tokio::test]
async fn leave_follows_the_connection() {
    let addr = server(HOUR).await;
    let mut alice = connect(addr, "/sse?room=p&name=alice").await;
    let e = alice.expect("members").await.id;
    alice.expect("join").await;
    let mut bob = connect(addr, "/sse?room=p&name=bob").await;
    bob.expect("members").await;
    bob.expect("join").await;
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 2), "p", "bob")
    );

    // Closing the connection (what `eventSource.close()` does) is a leave at once:
    // the heartbeat here is an hour, so only the closed socket can have told.
    drop(bob);
    assert_eq!(
        alice.next().await,
        presence("leave", &nth(&e, 3), "p", "bob")
    );

    // Twice the same name: one leave per connection, the snapshot counts both.
    let mut a2 = connect(addr, "/sse?room=p&name=alice").await;
    assert_eq!(a2.expect("members").await.data["names"], json!(["alice"]));
    assert_eq!(a2.next().await, presence("join", &nth(&e, 4), "p", "alice"));
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 4), "p", "alice")
    );
    drop(a2);
    assert_eq!(
        alice.next().await,
        presence("leave", &nth(&e, 5), "p", "alice")
    );
}

#[tokio::test]
async fn an_aborted_connection_is_a_leave() {
    // The client's kernel resets the connection (no orderly close).
    let addr = server(Duration::from_millis(200)).await;
    let mut alice = connect(addr, "/sse?room=h&name=alice").await;
    let e = alice.expect("members").await.id;
    alice.expect("join").await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(
        b"GET /sse?room=h&name=ghost HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 2), "h", "ghost")
    );
    // Linger zero makes the close a reset, and does not block.
    #[allow(deprecated)]
    raw.set_linger(Some(Duration::ZERO)).unwrap();
    drop(raw);
    assert_eq!(
        alice.next().await,
        presence("leave", &nth(&e, 3), "h", "ghost")
    );
}

#[tokio::test]
async fn reconnect_with_last_event_id_replays_what_was_missed() {
    let addr = server(HOUR).await;
    let mut alice = connect(addr, "/sse?room=r&name=alice").await;
    let e = alice.expect("members").await.id;
    alice.expect("join").await;
    let mut bob = connect(addr, "/sse?room=r&name=bob").await;
    bob.expect("members").await;
    bob.expect("join").await;
    let first = say(addr, "r", "alice", "one").await;
    check_message(&bob.next().await, "r", "alice", "one");
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 2), "r", "bob")
    );
    check_message(&alice.next().await, "r", "alice", "one");
    drop(bob);
    let left = nth(&e, off(&first) + 1);
    assert_eq!(alice.next().await, presence("leave", &left, "r", "bob"));
    let two = say(addr, "r", "alice", "two").await;
    let three = say(addr, "r", "alice", "three").await;

    let (status, mut bob) = open(addr, "/sse?room=r&name=bob", Some(first.as_bytes())).await;
    assert_eq!(status, StatusCode::OK);
    // Exactly what was missed, in order; then the snapshot as of the end of the
    // replay (superseding the presence events before it); then live.
    assert_eq!(bob.next().await, presence("leave", &left, "r", "bob"));
    assert_eq!(check_message(&bob.next().await, "r", "alice", "two"), two);
    assert_eq!(
        check_message(&bob.next().await, "r", "alice", "three"),
        three
    );
    let snapshot = bob.expect("members").await;
    assert_eq!(snapshot.data["names"], json!(["alice"]));
    assert_eq!(snapshot.data["as_of"], three);
    assert_eq!(snapshot.id, three);
    let joined = nth(&e, off(&three) + 1);
    assert_eq!(bob.next().await, presence("join", &joined, "r", "bob"));
    let four = say(addr, "r", "alice", "four").await;
    assert_eq!(check_message(&bob.next().await, "r", "alice", "four"), four);

    // The query fallback works the same (a page reopening after Disconnect).
    let path = format!("/sse?room=r&name=carol&lastEventId={three}");
    let mut carol = connect(addr, &path).await;
    assert_eq!(carol.next().await, presence("join", &joined, "r", "bob"));
    assert_eq!(
        check_message(&carol.next().await, "r", "alice", "four"),
        four
    );
    let names = carol.expect("members").await.data["names"].clone();
    assert_eq!(names, json!(["alice", "bob"]));
    carol.expect("join").await;
}

#[tokio::test]
async fn a_room_that_emptied_still_replays_exactly() {
    let addr = server(HOUR).await;
    let mut alice = connect(addr, "/sse?room=solo&name=alice").await;
    alice.expect("members").await;
    alice.expect("join").await;
    let seen = say(addr, "solo", "alice", "seen").await;
    check_message(&alice.next().await, "solo", "alice", "seen");
    // Her connection blips: the room is empty while a message is posted.
    drop(alice);
    let missed = say(addr, "solo", "bob", "posted while nobody was there").await;
    let (_, mut back) = open(addr, "/sse?room=solo&name=alice", Some(seen.as_bytes())).await;
    // Her `leave` is published when her old stream's end is noticed, before or
    // after the message: both are replayed, once each.
    let mut replayed = Vec::new();
    loop {
        let ev = back.next().await;
        if ev.kind == "members" {
            break;
        }
        replayed.push(ev);
    }
    assert!(replayed.iter().all(|ev| ev.kind != "reset"), "{replayed:?}");
    let text = "posted while nobody was there";
    let messages: Vec<_> = replayed.iter().filter(|ev| ev.kind == "message").collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(check_message(messages[0], "solo", "bob", text), missed);
    assert!(replayed.len() <= 2);
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_gets_a_reset_not_a_wrong_replay() {
    // Two servers stand for one process before and after a restart.
    let before = server(HOUR).await;
    let after = server(HOUR).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(say(before, "x", "a", &format!("old {n}")).await);
        say(after, "x", "a", &format!("new {n}")).await;
    }
    // Offset 2 exists after the restart too, but counts other events.
    let (_, mut c) = open(after, "/sse?room=x&name=c", Some(ids[1].as_bytes())).await;
    let reset = c.expect("reset").await;
    assert_eq!(off(&reset.id), 0);
    assert_eq!(reset.data, json!({"after": reset.id}));
    // Then everything the new history holds, from its start.
    assert_eq!(c.next().await.data["text"], "new 0");
}

#[tokio::test]
async fn stale_or_hostile_cursors_get_a_reset_and_a_working_stream() {
    let addr = server(HOUR).await;
    let mut back = connect(addr, "/sse?room=s&name=alice").await;
    let e = back.expect("members").await.id;
    back.expect("join").await;
    say(addr, "s", "alice", "before").await;
    back.expect("message").await;
    let epoch = e.split('-').nth(1).unwrap().to_owned();

    // Cursors that are not this room's: a reset (the history is complete after
    // offset 0), then the history, then the snapshot, then live.
    let mut last = 2;
    let other = if epoch == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let foreign = format!("1-{other}");
    let max = format!("18446744073709551615-{epoch}");
    let future = nth(&e, 1000);
    for cursor in [
        "999999",
        "abc",
        "-1",
        "1.5",
        "18446744073709551616",
        foreign.as_str(),
        max.as_str(),
        future.as_str(),
    ] {
        let (status, mut c) = open(addr, "/sse?room=s&name=x", Some(cursor.as_bytes())).await;
        assert_eq!(status, StatusCode::OK);
        let reset = c.expect("reset").await;
        assert_eq!(reset.id, nth(&e, 0), "{cursor}");
        assert_eq!(reset.data, json!({"after": nth(&e, 0)}));
        assert_eq!(c.next().await, presence("join", &nth(&e, 1), "s", "alice"));
        c.expect("message").await;
        // Earlier rounds' presence, then the snapshot, then x's own join.
        while c.next().await.kind != "members" {}
        let own = c.next().await;
        assert_eq!(own, presence("join", &nth(&e, last + 1), "s", "x"));
        drop(c);
        assert_eq!(
            back.next().await,
            presence("join", &nth(&e, last + 1), "s", "x")
        );
        assert_eq!(
            back.next().await,
            presence("leave", &nth(&e, last + 2), "s", "x")
        );
        last += 2;
    }
    // Values the server treats as absent: live only, no replay.
    let long = vec![b'7'; 5000];
    for cursor in [&b"\xff\xfe"[..], b"a\tb", &long] {
        let (status, mut c) = open(addr, "/sse?room=s&name=y", Some(cursor)).await;
        assert_eq!(status, StatusCode::OK);
        c.expect("members").await;
        assert_eq!(c.expect("join").await.data["name"], "y");
        drop(c);
        back.expect("join").await;
        back.expect("leave").await;
    }
    let (status, mut c) = open(addr, "/sse?room=s&name=z&lastEventId=%0A%00", None).await;
    assert_eq!(status, StatusCode::OK);
    c.expect("members").await;
    assert_eq!(c.expect("join").await.data["name"], "z");
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_broadcast() {
    let addr = server(HOUR).await;
    let mut watcher = connect(addr, "/sse?room=b&name=watcher").await;
    watcher.expect("members").await;
    let join = watcher.expect("join").await;

    let long_name = "n".repeat(65);
    let long_text = "t".repeat(4097);
    let long_room = "r".repeat(65);
    let cases: Vec<(String, u16, String)> = vec![
        (
            "{".into(),
            400,
            "the body is not valid JSON: EOF while parsing an object at line 1 column 1".into(),
        ),
        (
            "".into(),
            400,
            "the body is not valid JSON: EOF while parsing a value at line 1 column 0".into(),
        ),
        ("[1]".into(), 400, "the body must be a JSON object".into()),
        (
            r#""text""#.into(),
            400,
            "the body must be a JSON object".into(),
        ),
        (
            r#"{"room":"b","text":"x"}"#.into(),
            400,
            "`name` is missing".into(),
        ),
        (
            r#"{"room":"b","name":null,"text":"x"}"#.into(),
            400,
            "`name` is missing".into(),
        ),
        (
            r#"{"room":"b","name":"  ","text":"x"}"#.into(),
            400,
            "`name` is blank".into(),
        ),
        (
            r#"{"room":"b","name":7,"text":"x"}"#.into(),
            400,
            "`name` must be a string".into(),
        ),
        (
            r#"{"room":"b","name":["a"],"text":"x"}"#.into(),
            400,
            "`name` must be a string".into(),
        ),
        (
            r#"{"room":"b","name":"a"}"#.into(),
            400,
            "`text` is missing".into(),
        ),
        (
            r#"{"room":"b","name":"a","text":""}"#.into(),
            400,
            "`text` is blank".into(),
        ),
        (
            r#"{"room":"b","name":"a","text":" \n\t"}"#.into(),
            400,
            "`text` is blank".into(),
        ),
        (
            r#"{"room":"b","name":"a","text":{"x":1}}"#.into(),
            400,
            "`text` must be a string".into(),
        ),
        (
            r#"{"room":"b","name":"a","text":true}"#.into(),
            400,
            "`text` must be a string".into(),
        ),
        (
            json!({"room":"b","name":"a","text":long_text}).to_string(),
            400,
            "`text` is longer than 4096 bytes".into(),
        ),
        (
            json!({"room":"b","name":long_name,"text":"x"}).to_string(),
            400,
            "`name` is longer than 64 bytes".into(),
        ),
        (
            json!({"room":"b","name":"a\u{7}b","text":"x"}).to_string(),
            400,
            "`name` must not contain control characters".into(),
        ),
        (
            json!({"room":long_room,"name":"a","text":"x"}).to_string(),
            400,
            ROOM_ERROR.into(),
        ),
        (
            r#"{"room":"","name":"a","text":"x"}"#.into(),
            400,
            ROOM_ERROR.into(),
        ),
        (
            r#"{"room":"a b","name":"a","text":"x"}"#.into(),
            400,
            ROOM_ERROR.into(),
        ),
        (
            r#"{"room":"b/../c","name":"a","text":"x"}"#.into(),
            400,
            ROOM_ERROR.into(),
        ),
        (
            r#"{"room":"é","name":"a","text":"x"}"#.into(),
            400,
            ROOM_ERROR.into(),
        ),
        (
            r#"{"room":5,"name":"a","text":"x"}"#.into(),
            400,
            "`room` must be a string".into(),
        ),
        (
            "x".repeat(64 * 1024 + 1),
            413,
            "the body is larger than 65536 bytes".into(),
        ),
    ];
    for (body, status, message) in &cases {
        let (got, answer) = post(addr, body.clone()).await;
        assert_eq!(got.as_u16(), *status, "{body:.80}");
        assert_eq!(answer, json!({ "error": message }), "{body:.80}");
    }
    // Limits are inclusive: 4096 bytes of text (in 2-byte characters) and a
    // 64-byte name are fine.
    let text = "é".repeat(2048);
    let name = "n".repeat(64);
    let id = say(addr, "b", &name, &text).await;

    for (path, message) in [
        ("/sse?room=", ROOM_ERROR),
        ("/sse?room=a%20b", ROOM_ERROR),
        ("/sse?room=x;y", ROOM_ERROR),
        (
            "/sse?room=ok&name=%07",
            "`name` must not contain control characters",
        ),
    ] {
        let req = Request::get(path)
            .header("host", "x")
            .header("accept", "text/event-stream");
        let (status, answer) = call(addr, req.body(Full::default()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(answer, json!({ "error": message }), "{path}");
    }
    let path = format!("/sse?room={}", "r".repeat(65));
    let req = Request::get(path)
        .header("host", "x")
        .body(Full::default())
        .unwrap();
    assert_eq!(call(addr, req).await.0, StatusCode::BAD_REQUEST);
    let path = format!("/sse?name={}", "n".repeat(65));
    let req = Request::get(path)
        .header("host", "x")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        call(addr, req).await.1,
        json!({"error": "`name` is longer than 64 bytes"})
    );

    // Nothing was broadcast before the one good message: it is the very next event.
    let ev = watcher.next().await;
    assert_eq!(check_message(&ev, "b", &name, &text), id);
    assert_eq!(off(&id), off(join.data["id"].as_str().unwrap()) + 1);
}

const ROOM_ERROR: &str = "`room` must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_block_the_others() {
    let addr = server(HOUR).await;
    // It asks for the stream and then does not read: a small receive buffer
    // (no autotuning) makes the server's writes back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /sse?room=slow&name=stuck HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut reader = connect(addr, "/sse?room=slow&name=reader").await;
    reader.expect("members").await;
    reader.expect("join").await;

    // 4 000 messages of 4 000 bytes: 16 MB, more than the stuck client's socket
    // buffers and the room's history (8 MiB) can hold, so its cursor falls out
    // of the history.
    const COUNT: usize = 4000;
    let text = "x".repeat(4000);
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < COUNT {
            let ev = reader.next_message().await;
            ids.push(ev.data["id"].as_str().unwrap().to_owned());
        }
        ids
    });
    let mut sent = Vec::new();
    for _ in 0..COUNT {
        sent.push(say(addr, "slow", "poster", &text).await);
    }
    let got = tokio::time::timeout(GUARD, reading)
        .await
        .expect("hang guard")
        .unwrap();
    assert_eq!(got, sent);

    // The stuck client was cut off by the lag policy: when it reads at last, its
    // response ends with the hint to come back with its Last-Event-ID.
    let mut tail = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let end = b": lagged\nretry: 1000\n\n\r\n0\r\n\r\n";
    while !tail.ends_with(end) {
        let n = tokio::time::timeout(GUARD, stuck.read(&mut buf))
            .await
            .expect("hang guard")
            .unwrap();
        assert!(n > 0, "connection closed before the end of the response");
        tail.extend_from_slice(&buf[..n]);
        let keep = tail.len().saturating_sub(end.len());
        tail.drain(..keep);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_get_fifty_messages_once_in_order() {
    const CLIENTS: usize = 1000;
    const MESSAGES: usize = 50;
    check_fd_limit(2 * CLIENTS + 100);
    let addr = server(HOUR).await;

    // Each client reads all the time (a client that stopped reading would be
    // disconnected by the lag policy), and says when it is subscribed.
    let (ready, mut subscribed) = tokio::sync::mpsc::channel(CLIENTS);
    let readers: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut c = connect(addr, &format!("/sse?room=big&name=c{n}")).await;
                c.expect("members").await;
                ready.send(()).await.unwrap();
                let mut got = Vec::new();
                while got.len() < MESSAGES {
                    let ev = c.next_message().await;
                    let text = ev.data["text"].as_str().unwrap().to_owned();
                    got.push((ev.data["id"].as_str().unwrap().to_owned(), text));
                }
                got
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        tokio::time::timeout(GUARD, subscribed.recv())
            .await
            .expect("hang guard")
            .unwrap();
    }
    let mut want = Vec::new();
    for n in 0..MESSAGES {
        let text = format!("m{n}");
        want.push((say(addr, "big", "poster", &text).await, text));
    }
    for r in readers {
        let got = tokio::time::timeout(GUARD * 3, r)
            .await
            .expect("hang guard")
            .unwrap();
        assert_eq!(got, want);
    }
}

/// Fails with a clear message when this process may not open `needed` sockets.
fn check_fd_limit(needed: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        assert!(
            soft >= needed,
            "this test opens {needed} sockets but the open-file limit is {soft}: \
             run `ulimit -n 65536` first (.ci/run does)"
        );
    }
}

/// A `/send` with an `Idempotency-Key`.
async fn post_keyed(addr: SocketAddr, key: &[u8], body: Value) -> (StatusCode, Value) {
    let req = Request::post("/send")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header(
            "idempotency-key",
            hyper::header::HeaderValue::from_bytes(key).unwrap(),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    call(addr, req).await
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_is_stored_once() {
    let addr = server(HOUR).await;
    let mut alice = connect(addr, "/sse?room=once&name=alice").await;
    let e = alice.expect("members").await.id;
    assert_eq!(
        alice.next().await,
        presence("join", &nth(&e, 1), "once", "alice")
    );
    let body = json!({"room": "once", "name": "bob", "text": "hello"});
    let (status, first) = post_keyed(addr, b"msg-1", body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    // The client did not get the answer and retries: the same id, nothing new.
    let (status, retry) = post_keyed(addr, b"msg-1", body.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retry}");
    assert_eq!(retry, first);
    // Another key in another room is another message; the key is per room.
    let other_room = json!({"room": "twice", "name": "bob", "text": "hello"});
    let (status, _) = post_keyed(addr, b"msg-1", other_room).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, second) = post_keyed(addr, b"msg-2", body.clone()).await;
    let id = check_message(&alice.next().await, "once", "bob", "hello");
    assert_eq!(json!({ "id": id }), first);
    let id = check_message(&alice.next().await, "once", "bob", "hello");
    assert_eq!(json!({ "id": id }), second);
    assert_eq!(off(&id), 3, "the retry stored nothing");
    // Keys that are empty, too long or not visible ASCII are refused.
    for bad in [&b""[..], &[b'k'; 129][..], b"a b", b"caf\xc3\xa9"] {
        let (status, err) = post_keyed(addr, bad, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(err["error"].as_str().unwrap().contains("Idempotency-Key"));
    }
}

/// Above `PRESENCE_FULL_MAX` members a room sends counts instead of a `join`
/// and a `leave` per member, announces the crossing either way, and its
/// snapshot carries `count` and at most the threshold's worth of names.
#[tokio::test]
async fn a_room_above_the_threshold_sends_counts_and_announces_the_crossings() {
    let addr = server_with(chat::Options {
        presence_full_max: 3,
        ..chat::Options::new(Duration::from_secs(15))
    })
    .await;
    let mut alice = connect(addr, "/sse?room=big&name=alice").await;
    assert_eq!(alice.expect("members").await.data["names"], json!([]));
    assert_eq!(alice.expect("join").await.data["name"], "alice");
    let mut others = Vec::new();
    for (name, before) in [
        ("bob", json!(["alice"])),
        ("carol", json!(["alice", "bob"])),
    ] {
        let mut client = connect(addr, &format!("/sse?room=big&name={name}")).await;
        let snapshot = client.expect("members").await.data;
        assert_eq!(snapshot["names"], before);
        assert!(snapshot.get("count").is_none(), "{snapshot}");
        assert_eq!(alice.expect("join").await.data["name"], name);
        others.push(client);
    }
    // The fourth is still listed in full (the room had three), then the room
    // turns big: alice reads the crossing instead of dave's `join`.
    let mut dave = connect(addr, "/sse?room=big&name=dave").await;
    let snapshot = dave.expect("members").await.data;
    assert_eq!(snapshot["names"], json!(["alice", "bob", "carol"]));
    let crossing = alice.expect("presence").await;
    assert_eq!(crossing.data["mode"], "count");
    assert_eq!(crossing.data["count"], 4);
    assert_eq!(crossing.data["names"].as_array().unwrap().len(), 3);
    assert_eq!(crossing.data["id"], crossing.id);
    // A newcomer to the big room: a count and three names, no `join` for it.
    let mut eve = connect(addr, "/sse?room=big&name=eve").await;
    let snapshot = eve.expect("members").await.data;
    assert_eq!(snapshot["count"], 4);
    assert_eq!(snapshot["names"].as_array().unwrap().len(), 3);
    let count = alice.expect("count").await;
    assert_eq!(
        count.data,
        json!({"id": count.id, "room": "big", "count": 5})
    );
    // Messages still flow, and their ids follow the counts'.
    let id = say(addr, "big", "eve", "hello").await;
    assert_eq!(
        check_message(&alice.expect("message").await, "big", "eve", "hello"),
        id
    );
    // Back to three: the whole list again, then a `leave` per member.
    drop((dave, eve));
    let back = loop {
        let ev = alice.next().await;
        match ev.kind.as_str() {
            "count" => continue,
            "presence" => break ev,
            _ => panic!("a big room sent {ev:?}"),
        }
    };
    assert_eq!(
        back.data,
        json!({"id": back.id, "room": "big", "mode": "full", "count": 3,
            "names": ["alice", "bob", "carol"]})
    );
    drop(others.pop());
    let leave = alice.expect("leave").await;
    assert_eq!(leave.data["name"], "carol");
}

/// `room` repeated: one stream for several rooms, a `members` snapshot per
/// room, every room's events (their data carries `room`), composite ids that
/// resume every room exactly; a single room keeps the room's own ids.
#[tokio::test]
async fn one_stream_for_several_rooms_resumes_each_exactly() {
    let addr = server(Duration::from_secs(15)).await;
    let mut ann = connect(addr, "/sse?room=r1&room=r2&room=r3&name=ann").await;
    let mut snapshots = Vec::new();
    for _ in 0..3 {
        let ev = ann.expect("members").await;
        assert!(ev.id.starts_with("m1."), "{ev:?}");
        snapshots.push(ev.data["room"].as_str().unwrap().to_owned());
    }
    assert_eq!(snapshots, ["r1", "r2", "r3"]);
    let mut joins = Vec::new();
    for _ in 0..3 {
        let ev = ann.expect("join").await;
        assert_eq!(ev.data["name"], "ann");
        joins.push(ev.data["room"].as_str().unwrap().to_owned());
    }
    joins.sort();
    assert_eq!(joins, ["r1", "r2", "r3"]);
    let id = say(addr, "r2", "bob", "to r2").await;
    let ev = ann.next_message().await;
    assert_eq!(
        (
            &ev.data["room"],
            &ev.data["name"],
            &ev.data["text"],
            &ev.data["id"]
        ),
        (&json!("r2"), &json!("bob"), &json!("to r2"), &json!(id))
    );
    let cursor = ev.id.clone();
    let parsed: tower_sse_hub::Cursor = cursor.parse().unwrap();
    assert_eq!(parsed.get("r2").unwrap().to_string(), id);
    drop(ann);
    // Missed while away: two messages in each room.
    let mut missed = Vec::new();
    for room in ["r1", "r2", "r3"] {
        for n in 0..2 {
            missed.push((
                room.to_owned(),
                say(addr, room, "bob", &format!("{room} {n}")).await,
            ));
        }
    }
    let (status, mut back) = open(
        addr,
        "/sse?room=r1&room=r2&room=r3&name=ann",
        Some(cursor.as_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let ev = back.next().await;
        match ev.kind.as_str() {
            "message" => {
                let room = ev.data["room"].as_str().unwrap().to_owned();
                got.push((room, ev.data["id"].as_str().unwrap().to_owned()));
            }
            "leave" | "join" | "members" => {}
            other => panic!("unexpected {other}: {ev:?}"),
        }
    }
    got.sort();
    missed.sort();
    assert_eq!(got, missed, "each room's missed messages, once");
    // A single room keeps the room's own ids, and a composite cursor
    // positions it.
    let (_, mut one) = open(addr, "/sse?room=r2&name=cy", Some(cursor.as_bytes())).await;
    let mut replayed = Vec::new();
    loop {
        let ev = one.next().await;
        if ev.kind == "members" {
            assert!(!ev.id.starts_with("m1."), "{ev:?}");
            break;
        }
        if ev.kind == "message" {
            replayed.push(ev.data["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(replayed, ["r2 0", "r2 1"]);
    let (status, _) = open(addr, &format!("/sse?{}", "room=x&".repeat(65)), None).await;
    assert_eq!(status, StatusCode::OK, "repeats count once");
    let many: String = (0..65).map(|i| format!("room=r{i}&")).collect();
    let (status, _) = open(addr, &format!("/sse?{many}"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
