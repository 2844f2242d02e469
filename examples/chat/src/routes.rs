//! The chat's HTTP routes and their input checks.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
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
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use tower_sse::{KeepAlive, LastEventId, Shutdown, SseBody, SseLayer};
use tower_sse_hub::{EventId, Hub, HubError, MemoryPresence, Presence, MAX_TOPICS};

use crate::{
    cluster::announce_expired,
    metrics::{count_posted, metrics, prometheus},
    room::{hub_config, named, Chat, PRESENCE_FULL_MAX},
};

/// The page, compiled into the binary.
pub(crate) const INDEX: &str = include_str!("index.html");
/// Limits of the contract.
pub(crate) const MAX_TEXT: usize = 4096;
pub(crate) const MAX_NAME: usize = 64;
pub(crate) const MAX_ROOM: usize = 64;
/// Request bodies above this are refused with 413 before being parsed. Generous,
/// so that 4096 bytes of text survive JSON escaping.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// A `/send` body must arrive whole within this (a body that never finishes,
/// or is shorter than its `Content-Length`, gets `408`).
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent event streams by default (`MAX_STREAMS`); past it, `503`
/// with `retry-after: 5`.
pub const MAX_STREAMS: usize = 10_000;
/// The longest `Idempotency-Key` taken.
pub(crate) const MAX_KEY: usize = 128;
/// How long a client waits before trying again when the hub cannot store or
/// subscribe now: `retry-after` of a `503`, `retry:` of an `EventSource`.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How a chat is set up, besides its hub and presence.
#[derive(Clone, Debug)]
pub struct Options {
    /// The heartbeat of idle streams (`HEARTBEAT_MS`).
    pub heartbeat: Duration,
    /// The largest room with a `join` and a `leave` per member
    /// (`PRESENCE_FULL_MAX`, default [`PRESENCE_FULL_MAX`]); above it,
    /// counts (see [`room`](crate::room)).
    pub presence_full_max: usize,
    /// Concurrent event streams on this node (`MAX_STREAMS`, default
    /// 10 000); past it, `503` with `retry-after: 5`.
    pub max_streams: usize,
    /// How often to announce the members of nodes that died (their `leave`)
    /// and this node's members announced gone while it was cut off (their
    /// `join`): `Some` for a presence shared with other nodes, whose entries
    /// expire (a third of `PRESENCE_TTL_MS`). `None` in one process.
    pub announce_expired: Option<Duration>,
}

impl Options {
    /// One process, heartbeats every `heartbeat`, the default threshold.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            presence_full_max: PRESENCE_FULL_MAX,
            max_streams: MAX_STREAMS,
            announce_expired: None,
        }
    }
}

/// The chat's routes, in this process, with heartbeats every `heartbeat`.
pub fn app(heartbeat: Duration, shutdown: &Shutdown) -> Router {
    // The recorder first: the hub looks up its counters when it is made.
    prometheus();
    let hub = Hub::with_config(hub_config());
    app_with(heartbeat, shutdown, hub, Arc::new(MemoryPresence::new()))
}

/// The chat's routes on `hub` and `presence`, with the default
/// [`Options`] but the heartbeat.
pub fn app_with(
    heartbeat: Duration,
    shutdown: &Shutdown,
    hub: Hub,
    presence: Arc<dyn Presence>,
) -> Router {
    app_with_options(&Options::new(heartbeat), shutdown, hub, presence)
}

/// The chat's routes on `hub` and `presence` (one node of a cluster when they
/// are on Redis or NATS). With [`Options::announce_expired`], spawns the task
/// that announces the members of nodes that died, which ends with the app.
pub fn app_with_options(
    options: &Options,
    shutdown: &Shutdown,
    hub: Hub,
    presence: Arc<dyn Presence>,
) -> Router {
    let chat = Arc::new(Chat {
        hub,
        presence,
        rooms: Mutex::new(HashMap::new()),
        guests: AtomicU64::new(0),
        full_max: options.presence_full_max,
    });
    if let Some(every) = options.announce_expired {
        tokio::spawn(announce_expired(Arc::downgrade(&chat), every));
    }
    let sse = SseLayer::new()
        .keep_alive(KeepAlive::new().interval(options.heartbeat))
        .max_streams(options.max_streams, Duration::from_secs(5))
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

/// `POST /send` with `{"room", "name", "text"}`.
pub(crate) async fn send(State(chat): State<Arc<Chat>>, req: Request<Body>) -> Response {
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
        Err(err) => service_unavailable(&err),
    }
}

/// The `Idempotency-Key` of a `/send`: 1 to 128 visible ASCII characters.
/// `Ok(None)` when absent.
pub(crate) fn idempotency_key(headers: &header::HeaderMap) -> Result<Option<String>, &'static str> {
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
pub(crate) fn service_unavailable(err: &HubError) -> Response {
    let mut res = error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string());
    res.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(RETRY_AFTER.as_secs()),
    );
    res
}

/// A subscribe the hub cannot serve now (its store unreachable, or full), for
/// an `EventSource`: a `503` would end it for good, so the answer is a stream
/// that says `unavailable` (`{"error"}`), sets the reconnection time to
/// [`RETRY_AFTER`] and ends; the browser comes back then, with the same
/// `Last-Event-ID`.
pub(crate) fn come_back_later(err: &HubError) -> Response {
    let notice = named("unavailable").data(json!({ "error": err.to_string() }).to_string());
    let notice = futures_util::stream::iter([notice]);
    SseBody::from_events(notice)
        .retry(RETRY_AFTER)
        .into_response()
        .map(Body::new)
}

/// Whether the request says its body is `application/json` (parameters such
/// as `charset` allowed).
pub(crate) fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

pub(crate) struct Message {
    room: String,
    name: String,
    text: String,
}

/// Checks a `/send` body; the error is the message for the client.
pub(crate) fn parse_message(bytes: &[u8]) -> Result<Message, String> {
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

pub(crate) fn check_room(room: &str) -> Result<(), &'static str> {
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

pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_NAME {
        Err("`name` is longer than 64 bytes")
    } else if name.chars().any(char::is_control) {
        Err("`name` must not contain control characters")
    } else {
        Ok(())
    }
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let mut res = (status, Json(json!({ "error": message }))).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res
}

// Operations: the icon, metrics, and HTTPS with HTTP/2.

/// `GET /favicon.ico`.
pub(crate) async fn favicon() -> Response {
    const ICON: &[u8] = include_bytes!("favicon.ico");
    (
        [
            (header::CONTENT_TYPE, "image/x-icon"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        ICON,
    )
        .into_response()
}

/// `GET /sse?room=ROOM&name=NAME`, `room` repeated for several rooms over
/// one stream (at most [`MAX_TOPICS`], repeats ignored).
pub(crate) async fn subscribe(
    State(chat): State<Arc<Chat>>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
    req: Request<Body>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "the query string is malformed");
    };
    let mut rooms: Vec<String> = Vec::new();
    for (_, room) in query.iter().filter(|(key, _)| key == "room") {
        if let Err(msg) = check_room(room) {
            return error(StatusCode::BAD_REQUEST, msg);
        }
        if !rooms.contains(room) {
            rooms.push(room.clone());
        }
    }
    if rooms.len() > MAX_TOPICS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_TOPICS} rooms in one stream"),
        );
    }
    if rooms.is_empty() {
        rooms.push("lobby".to_owned());
    }
    let name = match query
        .iter()
        .rev()
        .find(|(key, _)| key == "name")
        .map(|(_, n)| n.trim())
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
    let events = match chat.join(&rooms, &name, last.as_deref()).await {
        Ok(events) => events,
        Err(err) if tower_sse::accepts_event_stream(req.headers()) => return come_back_later(&err),
        Err(err) => return service_unavailable(&err),
    };
    // No heartbeat set here: the body sends the layer's (`HEARTBEAT_MS`).
    SseBody::from_events(events)
        .on_end(move |_| {
            // Presence is published from a task: the body is being dropped.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    for room in &rooms {
                        chat.leave(room, &name).await;
                    }
                });
            }
        })
        .into_response()
        .map(Body::new)
}
