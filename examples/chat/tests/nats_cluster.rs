//! The chat on NATS JetStream, as users run it: two chat processes with
//! `NATS_URL`, clients on each, over real sockets. Messages posted on one node
//! reach members on the other, a member resumes with `Last-Event-ID` on the
//! other node, and presence (`join`, `leave`, the `members` snapshot) is
//! shared. Needs `nats-server -js` at `NATS_URL` (default `127.0.0.1:4222`):
//! `SKIP` without one, a failure when `CI` is set (`.ci/run` starts one).

#[allow(dead_code)]
mod campaign;
#[path = "../../../crates/tower-sse-nats/tests/support/mod.rs"]
mod nats_support;

use std::time::Duration;

use campaign::{
    client::probe,
    history::Answer,
    http::{open_sse, post, Stream},
    node::{chat_binary, Node, TempDir},
    redis::free_port,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower_sse::{decode::Frame, Decoder};

const GUARD: Duration = Duration::from_secs(20);

/// One member's stream, read event by event.
struct Member {
    stream: Stream,
    decoder: Decoder,
}

impl Member {
    async fn open(port: u16, room: &str, name: &str, last: Option<&str>) -> Self {
        let stream = open_sse(port, room, name, last).await.unwrap();
        Self {
            stream,
            decoder: Decoder::new(),
        }
    }

    /// The next event (kind, id, data), heartbeats skipped.
    async fn next(&mut self) -> (String, String, Value) {
        let read = async {
            loop {
                if let Some(Frame::Event(ev)) = self.decoder.next_frame().unwrap() {
                    let data = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                    return (ev.event, ev.id, data);
                }
                let frame = self
                    .stream
                    .body
                    .frame()
                    .await
                    .expect("stream open")
                    .unwrap();
                if let Some(bytes) = frame.data_ref() {
                    self.decoder.push(bytes);
                }
            }
        };
        tokio::time::timeout(GUARD, read)
            .await
            .expect("hang guard: no event")
    }

    /// The next event of `kind`, skipping others (presence of this member's
    /// own earlier connection, say).
    async fn until(&mut self, kind: &str) -> (String, Value) {
        loop {
            let (got, id, data) = self.next().await;
            if got == kind {
                return (id, data);
            }
        }
    }

    /// The next event, which must be of `kind`.
    async fn expect(&mut self, kind: &str) -> (String, Value) {
        let (got, id, data) = self.next().await;
        assert_eq!(got, kind, "{id} {data}");
        (id, data)
    }
}

fn accepted(answer: Answer) -> String {
    match answer {
        Answer::Accepted(id) => id,
        other => panic!("POST /send not accepted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chat_nodes_on_nats_share_rooms_resume_and_presence() {
    let Some(url) = nats_support::server().await else {
        return;
    };
    let binary = chat_binary().unwrap();
    let dir = TempDir::new();
    let mut nodes = Vec::new();
    for index in 0..2 {
        let port = free_port().unwrap();
        let broker = ("NATS_URL", url.clone());
        let mut node = Node::new(index, port, binary.clone(), broker, (500, 3_000), &dir.0);
        node.start().await.unwrap();
        nodes.push(node);
    }
    let (a, b) = (nodes[0].port, nodes[1].port);
    // A room of this run's own on the shared server.
    let room = format!("nats-{}-{}", std::process::id(), free_port().unwrap());

    // A snapshot lists the others; each member then sees its own `join`.
    let mut alice = Member::open(a, &room, "alice", None).await;
    let (_, members) = alice.expect("members").await;
    assert_eq!(members["names"], json!([]));
    alice.expect("join").await;

    // Bob joins on the other node: each sees the other.
    let mut bob = Member::open(b, &room, "bob", None).await;
    let (_, members) = bob.expect("members").await;
    assert_eq!(
        members["names"],
        json!(["alice"]),
        "alice is on the other node"
    );
    let (join_id, join) = alice.expect("join").await;
    assert_eq!(
        (join["room"].as_str(), join["name"].as_str()),
        (Some(&room[..]), Some("bob"))
    );

    // Posted on B, read on A, with the id /send answered.
    let message = json!({"room": room, "name": "bob", "text": "hello over NATS"});
    let id = accepted(post(b, &message, "nats-key-1").await);
    let (got, data) = alice.expect("message").await;
    assert_eq!(
        (got.as_str(), data["text"].as_str()),
        (id.as_str(), Some("hello over NATS"))
    );
    // The same key again, on the other node, stores nothing and answers the
    // first id.
    assert_eq!(accepted(post(a, &message, "nats-key-1").await), id);

    // Alice leaves (bob, on the other node, sees it), then resumes on node B
    // after bob's join: the message first, her own `leave`, then a fresh
    // snapshot with bob in it.
    drop(alice);
    let (_, leave) = bob.until("leave").await;
    assert_eq!(leave["name"].as_str(), Some("alice"));
    let mut alice = Member::open(b, &room, "alice", Some(&join_id)).await;
    let (replayed, data) = alice.expect("message").await;
    assert_eq!(
        (replayed, data["text"].as_str()),
        (id, Some("hello over NATS"))
    );
    let (_, leave) = alice.expect("leave").await;
    assert_eq!(leave["name"].as_str(), Some("alice"));
    let (_, members) = alice.expect("members").await;
    assert_eq!(members["names"], json!(["bob"]));

    // Bob leaves: alice sees his `leave`; a newcomer on A sees only alice.
    drop(bob);
    let (_, leave) = alice.until("leave").await;
    assert_eq!(leave["name"].as_str(), Some("bob"));
    let mut names = Vec::new();
    for _ in 0..50 {
        names = probe(a, &room, "carol").await.unwrap();
        if names == ["alice"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names, ["alice"]);
}
