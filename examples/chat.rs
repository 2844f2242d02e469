//! A chat over Server-Sent Events: rooms, presence, replay on reconnect.
//!
//! ```text
//! cargo run --example chat
//! # then open http://127.0.0.1:3000 in two browser windows
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `HEARTBEAT_MS` (default
//! `15000`), and `TLS=1` to serve HTTPS with HTTP/2 on the same address (ALPN
//! `h2` and `http/1.1`), so that a browser can keep more than six streams open to
//! it: with a certificate generated at start (self-signed for `localhost` and the
//! address), or the PEM files `TLS_CERT` and `TLS_KEY`.
//!
//! Several nodes: built with `--features redis`, `REDIS_URL` (one URL, or
//! several separated by commas over which rooms are spread) makes this process
//! one node of a cluster, behind any load balancer and without sticky sessions:
//! a message posted to any node reaches every member on every node, and a
//! client resumes with `Last-Event-ID` on any node. Presence is shared too; the
//! members of a node that dies are announced as `leave` by a surviving node
//! after `PRESENCE_TTL_MS` (default `30000`), and those of a node that was only
//! cut off from Redis (or paused) that long are announced as `join` again by it
//! when it is back. Without `REDIS_URL` everything stays in this process.
//!
//! ```text
//! ADDR=127.0.0.1:3001 REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example chat
//! ADDR=127.0.0.1:3002 REDIS_URL=redis://127.0.0.1:6379 cargo run --features redis --example chat
//! ```
//!
//! - `GET /`: the page (`examples/chat/index.html`, no CDN, no build step).
//! - `GET /sse?room=ROOM&name=NAME`: the event stream, both parameters optional
//!   (room `lobby`, a generated guest name). Events: `members` (a snapshot for
//!   this connection, `{"room","you","names","as_of"}`, whose `id:` is the room's
//!   last id so a reconnect resumes from it), then `message`, `join`, `leave`,
//!   and the hub's `reset`/`gap` notices, each with the room's `id:`. Ids are
//!   opaque strings (`42-0fk3m9vq`: the room's offset and epoch). A reconnect
//!   with `Last-Event-ID` (or `?lastEventId=`) gets what it missed first, then a
//!   fresh `members` snapshot that supersedes the presence events before it. The
//!   room's history outlives its members for ten minutes.
//! - `POST /send` with `{"room", "name", "text"}` and `Content-Type:
//!   application/json`: `202 {"id": "..."}` once the message is stored; another
//!   content type gets `415` (a foreign page cannot post JSON without a CORS
//!   preflight, which this server does not answer), bad input `400` (or `413`),
//!   a body not complete within 10 s `408`, each with `{"error": "..."}`, and
//!   nothing is broadcast; `503` `{"error": "..."}` with `retry-after` when the
//!   hub cannot store it (Redis unreachable, paused or too slow): not stored,
//!   unless the connection to Redis lost the answer of a publish that ran. An
//!   `Idempotency-Key` header (1 to 128 visible ASCII characters) makes a
//!   retry exact: a `/send` with a key already used in the room within five
//!   minutes is answered `202` with the first message's id and stores nothing,
//!   so a client retries a `503` or a lost answer with the same key. The page
//!   sends one per message.
//! - A subscribe that cannot be served (Redis unreachable, or this node holds
//!   as many rooms as it may, all in use) answers `503` with `retry-after`.
//! - `GET /metrics`: Prometheus text (`chat_messages_posted_total`, and the
//!   crate's own metrics when it is built with its `metrics` feature).
//! - `GET /favicon.ico`: the icon.
//!
//! Limits: 10 000 concurrent streams (`503` with `retry-after` past it); over
//! plain HTTP, [`tower_sse::serve::Server`]'s defaults (a 10 s header read
//! timeout, a 30 s write timeout that cuts off a member that stopped reading,
//! and so its `leave`, 100 HTTP/2 streams per connection).
//!
//! Only the crate's public API is used: [`Hub`] for rooms and replay,
//! [`SseLayer`] for heartbeats and `Last-Event-ID`, [`SseBody::on_end`] for
//! presence (a `leave` as soon as the connection closes, or at the first failed
//! heartbeat when the client vanished without closing it).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::{Query, State},
    http::{header, Request, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use tower_sse::{
    hub::{MemoryPresence, Presence},
    EncodedEvent, Event, EventId, Hub, HubConfig, HubError, KeepAlive, LastEventId, Shutdown,
    SseBody, SseLayer, Subscriber,
};

/// The page, compiled into the binary.
const INDEX: &str = include_str!("chat/index.html");
/// Limits of the contract.
const MAX_TEXT: usize = 4096;
const MAX_NAME: usize = 64;
const MAX_ROOM: usize = 64;
/// Request bodies above this are refused with 413 before being parsed. Generous,
/// so that 4096 bytes of text survive JSON escaping.
const MAX_BODY: usize = 64 * 1024;
/// A `/send` body must arrive whole within this (a body that never finishes,
/// or is shorter than its `Content-Length`, gets `408`).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent event streams; past it, `503` with `retry-after: 5`.
const MAX_STREAMS: usize = 10_000;
/// The longest `Idempotency-Key` taken.
const MAX_KEY: usize = 128;
/// `retry-after` of a `503` when the hub cannot store or subscribe now.
const RETRY_AFTER_S: &str = "2";

/// jemalloc, with its background purging thread (turned on in `main`), gives
/// freed memory back to the system within seconds once connections leave;
/// glibc's allocator kept it (BENCHMARKS.md, "Memory given back").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let heartbeat = match std::env::var("HEARTBEAT_MS") {
        Ok(ms) => ms.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("HEARTBEAT_MS must be a number of milliseconds, not {ms:?}"),
            )
        })?,
        Err(_) => 15_000,
    };
    // Pages freed for `dirty_decay_ms` (10 s) are returned by a background
    // thread, even while the server is idle. Best effort.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    let tls = tls_wanted()?;
    let (hub, presence) = cluster()?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let app = app_with(Duration::from_millis(heartbeat), &shutdown, hub, presence);
    tokio::spawn(metrics_upkeep());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Ends the open streams, so that graceful shutdown can complete; a
        // connection still open after the grace period (10 s) is closed.
        stop.trigger();
    });
    if tls {
        let config = tls_config(local)?;
        println!("listening on https://{local}");
        serve_tls(listener, app, config, &shutdown).await
    } else {
        println!("listening on http://{local}");
        server(&shutdown).serve(listener, app).await
    }
}

/// The crate's serving defaults, over plain TCP and over TLS alike: a vanished
/// member's `leave` within the heartbeat plus 30 s, a frozen reader's within
/// 30 s, a header read timeout, bounded buffers.
fn server(shutdown: &Shutdown) -> tower_sse::serve::Server {
    tower_sse::serve::Server::new()
        // Frames queued, not copied into one buffer per connection: in the
        // 5 000-member join storm (`benches/storm.sh`) that was 18 KiB per
        // member instead of 43, and with the snapshots' shared member list
        // (which queued frames keep shared) 14.8 KiB.
        .writev(true)
        .with_shutdown(shutdown)
}

fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

/// The hub and presence: in this process, or on Redis when `REDIS_URL` is set
/// (then a task announces the `leave` of members of nodes that died, and the
/// `join` of this node's members announced gone while it was cut off).
fn cluster() -> std::io::Result<(Hub, Arc<dyn Presence>)> {
    let Ok(urls) = std::env::var("REDIS_URL") else {
        return Ok((
            Hub::with_config(hub_config()),
            Arc::new(MemoryPresence::new()),
        ));
    };
    let ttl = match std::env::var("PRESENCE_TTL_MS") {
        Ok(ms) => ms.parse().map_err(|_| {
            invalid_input(format!(
                "PRESENCE_TTL_MS must be a number of milliseconds, not {ms:?}"
            ))
        })?,
        Err(_) => 30_000,
    };
    redis_cluster(&urls, Duration::from_millis(ttl))
}

#[cfg(feature = "redis")]
fn redis_cluster(urls: &str, ttl: Duration) -> std::io::Result<(Hub, Arc<dyn Presence>)> {
    use tower_sse::hub::{RedisConfig, RedisPresence, RedisStore};
    let config = RedisConfig::new(urls).prefix("chat").hub(hub_config());
    let store = RedisStore::new(config).map_err(|e| invalid_input(format!("REDIS_URL: {e}")))?;
    let presence = RedisPresence::new(&store, ttl);
    let hub = Hub::with_store(store);
    tokio::spawn(announce_expired(
        hub.clone(),
        Arc::new(presence.clone()),
        ttl / 3,
    ));
    Ok((hub, Arc::new(presence)))
}

#[cfg(not(feature = "redis"))]
fn redis_cluster(_: &str, _: Duration) -> std::io::Result<(Hub, Arc<dyn Presence>)> {
    Err(invalid_input(
        "REDIS_URL is set but the chat was built without Redis: add `--features redis`".to_owned(),
    ))
}

/// Every `every`: publishes the `leave` of the members of nodes that died (or
/// were cut off from Redis past `PRESENCE_TTL_MS`), and the `join` of this
/// node's members that were announced as gone that way and are still here.
pub async fn announce_expired(hub: Hub, presence: Arc<dyn Presence>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Redis unreachable: the entries stay queued for the next round.
        let expired = presence.expired().await.unwrap_or_default();
        for (room, name) in expired {
            let _ = hub
                .publish_with(&room, |id| presence_event("leave", id, &room, &name))
                .await;
        }
        let restored = presence.restored().await.unwrap_or_default();
        for (room, name) in restored {
            let _ = hub
                .publish_with(&room, |id| presence_event("join", id, &room, &name))
                .await;
        }
    }
}

/// The chat's routes, in this process, with heartbeats every `heartbeat`.
pub fn app(heartbeat: Duration, shutdown: &Shutdown) -> Router {
    let hub = Hub::with_config(hub_config());
    app_with(heartbeat, shutdown, hub, Arc::new(MemoryPresence::new()))
}

/// The chat's routes on `hub` and `presence` (one node of a cluster when they
/// are on Redis).
pub fn app_with(
    heartbeat: Duration,
    shutdown: &Shutdown,
    hub: Hub,
    presence: Arc<dyn Presence>,
) -> Router {
    let chat = Arc::new(Chat {
        hub,
        presence,
        rooms: Mutex::new(HashMap::new()),
        guests: AtomicU64::new(0),
    });
    let sse = SseLayer::new()
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .max_streams(MAX_STREAMS, Duration::from_secs(5))
        .with_shutdown(shutdown);
    let prometheus = prometheus();
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/favicon.ico", get(favicon))
        .route("/metrics", get(move || metrics(prometheus)))
        .route("/sse", get(subscribe).layer(sse))
        .route(
            "/send",
            post(send).layer(axum::middleware::map_response(count_posted)),
        )
        .with_state(chat)
}

/// Room-sized history: a join storm of 5 000 members is 5 000 `join` events,
/// which a member that connected first reads from the shared history at its own
/// pace (a cursor each, no copy), so the lag bound is the history, 16 384
/// events or 8 MiB per room, shared by all its members.
fn hub_config() -> HubConfig {
    HubConfig::new()
        .history_len(16 * 1024)
        .history_bytes(8 * 1024 * 1024)
        .queue_capacity(16 * 1024)
}

struct Chat {
    hub: Hub,
    /// Who is in each room (on every node when it is on Redis).
    presence: Arc<dyn Presence>,
    /// The rooms with someone connected to this node.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    guests: AtomicU64,
}

/// How long joins and leaves wait to be published together: in a join storm a
/// member is woken once per batch instead of once per join. Each join and leave
/// is still its own event, with its own id.
const PRESENCE_BATCH: Duration = Duration::from_millis(50);

/// A room on this node. A join (its subscription and snapshot), a leave and a
/// batch's publication run one at a time per room, so on one node a snapshot and
/// the events that follow it never disagree: the snapshot lists what
/// `Presence` holds, which changes only with the batch that publishes the
/// events. Across nodes, a join or leave on another node at the same moment may
/// show in both the snapshot and an event that follows it (or in neither).
#[derive(Default)]
struct Room {
    members: tokio::sync::Mutex<Members>,
}

#[derive(Default)]
pub struct Members {
    /// This node's connections to the room.
    connections: usize,
    /// Joins (`true`) and leaves not yet published, in order.
    pending: Vec<(String, bool)>,
    /// A batch is scheduled.
    scheduled: bool,
    /// Removed from `Chat::rooms`: a join that finds it looks the room up again.
    gone: bool,
    /// The member list of the last snapshot, and its JSON: one buffer shared by
    /// the snapshots of everyone who joins while the list stays the same.
    list: Option<(Vec<String>, Bytes)>,
}

impl Members {
    /// The `members` snapshot of a member joining at `position`, when the room
    /// holds `names`: `{"room","you","names","as_of"}`, with the id `position`.
    ///
    /// Its own bytes are the head (up to `"names":`) and the tail; the list
    /// between them is shared with every other snapshot of the same list (in a
    /// join storm, everyone who joins within one presence batch). So a room
    /// of N members whose members all stop reading holds one list per batch,
    /// not one per member: O(N) in total, not O(N²).
    pub fn snapshot(
        &mut self,
        room: &str,
        you: &str,
        position: EventId,
        names: Vec<String>,
    ) -> EncodedEvent {
        let list = match &self.list {
            Some((cached, list)) if *cached == names => list.clone(),
            _ => {
                let list =
                    Bytes::from(serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned()));
                self.list = Some((names, list.clone()));
                list
            }
        };
        // JSON strings escape line breaks, so the event is one `data:` line.
        let head = format!(
            "event: members\nid: {position}\ndata: {{\"room\":{},\"you\":{},\"names\":",
            Value::from(room),
            Value::from(you),
        );
        let tail = format!(",\"as_of\":\"{position}\"}}\n\n");
        // Strings, ending with a blank line: `from_parts` cannot refuse them.
        EncodedEvent::from_parts([Bytes::from(head), list, Bytes::from(tail)])
            .unwrap_or_else(|_| EncodedEvent::comment("members: unavailable"))
    }
}

impl Chat {
    fn room(&self, room: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.entry(room.to_owned()).or_default().clone()
    }

    /// Subscribes after `last` and queues the member's `join`. The stream
    /// replays what the client missed, then this connection's `members`
    /// snapshot (as of the end of the replay, with that id), then live events,
    /// its own `join` among them.
    async fn join(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        last: Option<&str>,
    ) -> Result<Subscriber, HubError> {
        loop {
            let entry = self.room(room);
            let mut members = entry.members.lock().await;
            if members.gone {
                continue;
            }
            let subscriber = self.hub.subscribe(room, last).await?;
            let names = self.presence.members(room).await?;
            let snapshot = members.snapshot(room, name, subscriber.position(), names);
            members.connections += 1;
            members.pending.push((name.to_owned(), true));
            self.schedule(&mut members, room);
            return Ok(subscriber.then(snapshot));
        }
    }

    /// Queues the member's `leave`.
    async fn leave(self: &Arc<Self>, room: &str, name: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.connections = members.connections.saturating_sub(1);
        members.pending.push((name.to_owned(), false));
        self.schedule(&mut members, room);
    }

    fn schedule(self: &Arc<Self>, members: &mut Members, room: &str) {
        if !members.scheduled {
            members.scheduled = true;
            let (chat, room) = (self.clone(), room.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(PRESENCE_BATCH).await;
                chat.announce(&room).await;
            });
        }
    }

    /// Publishes the queued joins and leaves of `room`, each its own event, and
    /// records them in `Presence`.
    async fn announce(&self, room: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.scheduled = false;
        for (name, joined) in std::mem::take(&mut members.pending) {
            let kind = if joined { "join" } else { "leave" };
            // The history keeps it even when nobody is left to hear it now. A
            // store that cannot be reached loses presence events, never
            // messages; `Presence` counts the change even when it cannot write
            // it, and writes it at its next renewal.
            let _ = self
                .hub
                .publish_with(room, |id| presence_event(kind, id, room, &name))
                .await;
            let _ = if joined {
                self.presence.join(room, &name).await
            } else {
                self.presence.leave(room, &name).await
            };
        }
        if members.connections == 0 && members.pending.is_empty() {
            members.gone = true;
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if rooms.get(room).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                rooms.remove(room);
            }
        }
    }
}

/// An event of type `kind` (a fixed name, never a line break).
fn named(kind: &str) -> Event {
    Event::default().event(kind).unwrap_or_default()
}

/// A `join` or `leave` event.
fn presence_event(kind: &str, id: &EventId, room: &str, name: &str) -> Event {
    named(kind).data(json!({"id": id.to_string(), "room": room, "name": name}).to_string())
}

/// `GET /sse?room=ROOM&name=NAME`.
async fn subscribe(
    State(chat): State<Arc<Chat>>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    req: Request<Body>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "the query string is malformed");
    };
    let room = match query.get("room") {
        None => "lobby".to_owned(),
        Some(room) => match check_room(room) {
            Ok(()) => room.clone(),
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        },
    };
    let name = match query
        .get("name")
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
    {
        None => format!("guest-{}", chat.guests.fetch_add(1, Ordering::Relaxed) + 1),
        Some(name) => match check_name(name) {
            Ok(()) => name.to_owned(),
            Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
        },
    };
    // The layer has put it there; read it directly when the request did not ask
    // for `text/event-stream` (curl without `-H accept:...`).
    let last = req
        .extensions()
        .get::<LastEventId>()
        .cloned()
        .or_else(|| LastEventId::from_request(&req));
    let subscriber = match chat.join(&room, &name, last.as_deref()).await {
        Ok(subscriber) => subscriber,
        Err(err) => return unavailable(&err),
    };
    // No heartbeat set here: the body sends the layer's (`HEARTBEAT_MS`).
    SseBody::from_events(subscriber)
        .on_end(move |_| {
            // Presence is published from a task: the body is being dropped.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { chat.leave(&room, &name).await });
            }
        })
        .into_response()
        .map(Body::new)
}

/// `POST /send` with `{"room", "name", "text"}`.
async fn send(State(chat): State<Arc<Chat>>, req: Request<Body>) -> Response {
    // Only `application/json`: a foreign page can post `text/plain` or a form
    // without a preflight, but not JSON.
    if !is_json(req.headers()) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be `application/json`",
        );
    }
    let key = match idempotency_key(req.headers()) {
        Ok(key) => key,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let read = Limited::new(req.into_body(), MAX_BODY).collect();
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            )
        }
        Ok(Err(_)) => return error(StatusCode::BAD_REQUEST, "the body could not be read"),
        Err(_) => {
            let mut res = error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
            // The rest of the body may still come: do not read it as a request.
            res.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return res;
        }
    };
    let message = match parse_message(&bytes) {
        Ok(message) => message,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let Message { room, name, text } = message;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let make = |id: &EventId| {
        let id = id.to_string();
        let data = json!({"id": id, "room": room, "name": name, "text": text, "ts": ts});
        named("message").data(data.to_string())
    };
    let published = match &key {
        Some(key) => chat.hub.publish_once(&room, key, make).await,
        None => chat.hub.publish_with(&room, make).await,
    };
    match published {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id.to_string() }))).into_response(),
        Err(err) => unavailable(&err),
    }
}

/// The `Idempotency-Key` of a `/send`: 1 to 128 visible ASCII characters.
/// `Ok(None)` when absent.
fn idempotency_key(headers: &header::HeaderMap) -> Result<Option<String>, &'static str> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let valid = (1..=MAX_KEY).contains(&value.len())
        && value.as_bytes().iter().all(|b| b.is_ascii_graphic());
    match value.to_str() {
        Ok(key) if valid => Ok(Some(key.to_owned())),
        _ => Err("`Idempotency-Key` must be 1 to 128 visible ASCII characters"),
    }
}

/// `503` for a hub that cannot store or subscribe now, with `retry-after`.
fn unavailable(err: &HubError) -> Response {
    let mut res = error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string());
    res.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(RETRY_AFTER_S),
    );
    res
}

/// Whether the request says its body is `application/json` (parameters such
/// as `charset` allowed).
fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

struct Message {
    room: String,
    name: String,
    text: String,
}

/// Checks a `/send` body; the error is the message for the client.
fn parse_message(bytes: &[u8]) -> Result<Message, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("the body must be a JSON object".to_owned());
    };
    let room = match object.get("room") {
        None | Some(Value::Null) => "lobby".to_owned(),
        Some(Value::String(room)) => {
            check_room(room)?;
            room.clone()
        }
        Some(_) => return Err("`room` must be a string".to_owned()),
    };
    let field = |key: &str| match object.get(key) {
        None | Some(Value::Null) => Err(format!("`{key}` is missing")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("`{key}` is blank")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("`{key}` must be a string")),
    };
    let name = field("name")?.trim().to_owned();
    check_name(&name)?;
    let text = field("text")?;
    if text.len() > MAX_TEXT {
        return Err(format!("`text` is longer than {MAX_TEXT} bytes"));
    }
    Ok(Message { room, name, text })
}

fn check_room(room: &str) -> Result<(), &'static str> {
    let ok = (1..=MAX_ROOM).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("`room` must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_NAME {
        Err("`name` is longer than 64 bytes")
    } else if name.chars().any(char::is_control) {
        Err("`name` must not contain control characters")
    } else {
        Ok(())
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let mut res = (status, Json(json!({ "error": message }))).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

// Operations: the icon, metrics, and HTTPS with HTTP/2.

/// `GET /favicon.ico`.
async fn favicon() -> Response {
    const ICON: &[u8] = include_bytes!("chat/favicon.ico");
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
        .into_response()
}

/// The process's Prometheus recorder, installed on first use. When another
/// recorder is installed already, a private one renders nothing but its own.
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::PrometheusBuilder;
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
}

/// Histograms' buckets are drained by upkeep; the exporter leaves its schedule
/// to the application.
async fn metrics_upkeep() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        prometheus().run_upkeep();
    }
}

/// `GET /metrics`: everything recorded through the `metrics` facade, in the
/// Prometheus text format.
async fn metrics(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        handle.render(),
    )
        .into_response()
}

/// Counts the messages `/send` accepted.
async fn count_posted(res: Response) -> Response {
    if res.status() == StatusCode::ACCEPTED {
        metrics::counter!("chat_messages_posted_total").increment(1);
    }
    res
}

/// `TLS=1` turns HTTPS on; unset, empty or `0` leaves it off.
fn tls_wanted() -> std::io::Result<bool> {
    match std::env::var("TLS").as_deref() {
        Err(_) | Ok("" | "0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(other) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("TLS must be 1 or 0, not {other:?}"),
        )),
    }
}

type CertChain = Vec<rustls::pki_types::CertificateDer<'static>>;
type PrivateKey = rustls::pki_types::PrivateKeyDer<'static>;

/// The TLS settings from `TLS_CERT` and `TLS_KEY` (PEM files), or a self-signed
/// certificate for `localhost` and `addr` made now.
fn tls_config(addr: std::net::SocketAddr) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let invalid = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
    };
    let (certs, key) = match (std::env::var_os("TLS_CERT"), std::env::var_os("TLS_KEY")) {
        (Some(cert), Some(key)) => pem_files(cert.as_ref(), key.as_ref())?,
        (None, None) => self_signed(addr.ip()).map_err(|e| invalid(&e))?,
        _ => return Err(invalid(&"set both TLS_CERT and TLS_KEY, or neither")),
    };
    tls_server_config(certs, key)
}

/// A certificate chain and its private key from PEM files.
pub fn pem_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<(CertChain, PrivateKey)> {
    use rustls::pki_types::pem::PemObject;
    let invalid = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        let message = format!("{what} {}: {e}", path.display());
        std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<CertChain, _>>())
        .map_err(|e| invalid("TLS_CERT", cert, &e))?;
    if certs.is_empty() {
        return Err(invalid("TLS_CERT", cert, &"no certificate in the file"));
    }
    let key = PrivateKey::from_pem_file(key).map_err(|e| invalid("TLS_KEY", key, &e))?;
    Ok((certs, key))
}

/// A certificate for `localhost`, `127.0.0.1`, `::1` and `ip`, signed by itself.
pub fn self_signed(ip: std::net::IpAddr) -> Result<(CertChain, PrivateKey), rcgen::Error> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(signing_key.serialize_der());
    Ok((vec![cert.der().clone()], key.into()))
}

/// Server settings offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_server_config(
    certs: CertChain,
    key: PrivateKey,
) -> std::io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` over TLS, HTTP/2 or HTTP/1.1 as each client chooses, on the
/// same serving defaults as plain HTTP (write and header timeouts included; a
/// handshake counts against the header timeout), until `shutdown` is
/// triggered and its grace period has passed.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(config);
    server(shutdown)
        .serve_with(listener, app, move |tcp| tls.accept(tcp))
        .await
}
