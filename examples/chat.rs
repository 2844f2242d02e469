//! A chat over Server-Sent Events: rooms, presence, replay on reconnect.
//!
//! ```text
//! cargo run --example chat
//! # then open http://127.0.0.1:3000 in two browser windows
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`) and `HEARTBEAT_MS` (default
//! `15000`).
//!
//! - `GET /`: the page (`examples/chat/index.html`, no CDN, no build step).
//! - `GET /sse?room=ROOM&name=NAME`: the event stream, both parameters optional
//!   (room `lobby`, a generated guest name). Events: `members` (a snapshot for
//!   this connection, no id), then `message`, `join`, `leave`, and the hub's
//!   `reset`/`gap` notices, each with the topic's `id:`. A reconnect with
//!   `Last-Event-ID` (or `?lastEventId=`) gets what it missed first.
//! - `POST /send` with `{"room", "name", "text"}`: `202 {"id": N}`; bad input gets
//!   `400` (or `413`) `{"error": "..."}` and nothing is broadcast.
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
use futures_util::{stream, StreamExt};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use tower_sse::{
    EncodedEvent, Event, Hub, HubConfig, KeepAlive, LastEventId, Shutdown, SseBody, SseLayer,
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
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let shutdown = Shutdown::new();
    let app = app(Duration::from_millis(heartbeat), &shutdown);
    println!("listening on http://{}", listener.local_addr()?);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Ends the open streams, so that graceful shutdown can complete; a
        // connection still open after the grace period (10 s) is closed.
        stop.trigger();
    });
    // A vanished member's `leave` within heartbeat + 30 s, a header read
    // timeout, bounded buffers: the crate's serving defaults.
    tower_sse::serve::Server::new()
        .with_shutdown(&shutdown)
        .serve(listener, app)
        .await
}

/// The chat's routes, with heartbeats every `heartbeat`.
pub fn app(heartbeat: Duration, shutdown: &Shutdown) -> Router {
    let chat = Arc::new(Chat {
        // Room-sized queues: a join storm of a thousand members fits.
        hub: Hub::with_config(HubConfig::new().queue_capacity(1024)),
        rooms: Mutex::new(HashMap::new()),
        guests: AtomicU64::new(0),
    });
    let sse = SseLayer::new()
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .with_shutdown(shutdown);
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/sse", get(subscribe).layer(sse))
        .route("/send", post(send))
        .with_state(chat)
}

struct Chat {
    hub: Hub,
    /// Members of each room: name -> open connections under that name. Joins and
    /// leaves are published under this lock, so a snapshot and the events that
    /// follow it never disagree.
    rooms: Mutex<HashMap<String, HashMap<String, usize>>>,
    guests: AtomicU64,
}

impl Chat {
    /// Subscribes, and announces the member: returns this connection's `members`
    /// snapshot and its stream of room events.
    fn join(
        &self,
        room: &str,
        name: &str,
        last: Option<&str>,
    ) -> (EncodedEvent, tower_sse::Subscriber) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let subscriber = self.hub.subscribe_after(room, last);
        let members = rooms.entry(room.to_owned()).or_default();
        let mut names: Vec<&str> = members
            .iter()
            .flat_map(|(name, n)| std::iter::repeat_n(name.as_str(), *n))
            .collect();
        names.sort_unstable();
        // Presence events up to this id are already in the snapshot.
        let snapshot = json!({
            "room": room, "you": name, "names": names, "as_of": self.hub.last_id(),
        });
        *members.entry(name.to_owned()).or_insert(0) += 1;
        self.hub.publish_with(room, |id| {
            named("join").data(json!({"id": id, "room": room, "name": name}).to_string())
        });
        (
            named("members").data(snapshot.to_string()).encode(),
            subscriber,
        )
    }

    fn leave(&self, room: &str, name: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(members) = rooms.get_mut(room) {
            if let Some(n) = members.get_mut(name) {
                *n -= 1;
                if *n == 0 {
                    members.remove(name);
                }
            }
            if members.is_empty() {
                rooms.remove(room);
            }
        }
        self.hub.publish_with(room, |id| {
            named("leave").data(json!({"id": id, "room": room, "name": name}).to_string())
        });
    }
}

/// An event of type `kind` (a fixed name, never a line break).
fn named(kind: &str) -> Event {
    Event::default().event(kind).unwrap_or_default()
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
    let (members, subscriber) = chat.join(&room, &name, last.as_deref());
    let events = stream::once(async move { members }).chain(subscriber);
    SseBody::from_events(events)
        // The layer sends the heartbeats.
        .keep_alive(KeepAlive::disabled())
        .on_end(move |_| chat.leave(&room, &name))
        .into_response()
        .map(Body::new)
}

/// `POST /send` with `{"room", "name", "text"}`.
async fn send(State(chat): State<Arc<Chat>>, body: Body) -> Response {
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            )
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "the body could not be read"),
    };
    let message = match parse_message(&bytes) {
        Ok(message) => message,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let Message { room, name, text } = message;
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let id = chat.hub.publish_with(&room, |id| {
        let data = json!({"id": id, "room": room, "name": name, "text": text, "ts": ts});
        named("message").data(data.to_string())
    });
    (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()
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
