//! The anchor for the join-storm benchmark: the chat a team writes with plain
//! axum 0.8 and `tokio::sync::broadcast`, no tower-sse, built to the same wire
//! contract as the chat (`examples/chat`), so `tools/src/bin/loadgen/` and
//! `tools/storm.sh` can drive both with the same clients.
//!
//! ```text
//! cargo run --release -p tower-sse-tools --bin anchor_chat
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `HEARTBEAT_MS` (default
//! `15000`), `CAPACITY` (the broadcast channel's capacity, default 4096).
//!
//! - `GET /sse?room=ROOM&name=NAME`: a `members` snapshot
//!   (`{"room","you","names","as_of"}`, no id), then `message`, `join` and
//!   `leave` events, data `{"id","room","name",...}`, with the room's `id:`.
//!   A member joins when it subscribes and leaves when its stream is dropped.
//!   Heartbeats are axum's `KeepAlive` comments.
//! - `POST /send` with `{"room", "name", "text"}`: `202 {"id": N}`, `400
//!   {"error": "..."}` for a body that is not such an object.
//!
//! What a naive chat does, on purpose: every subscriber encodes every event
//! itself (axum's `Event`), a receiver that falls more than the channel's
//! capacity behind silently skips what it missed (`BroadcastStream`'s `Lagged`
//! errors are dropped), and `Last-Event-ID` is ignored (no history, no replay).

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Json, Router,
};
use futures_util::{stream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let number = |name: &str, default: u64| match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name} must be a number, not {v:?}"),
            )
        }),
        Err(_) => Ok(default),
    };
    let heartbeat = Duration::from_millis(number("HEARTBEAT_MS", 15_000)?);
    let capacity = usize::try_from(number("CAPACITY", 4096)?.max(1)).unwrap_or(4096);
    let chat = Arc::new(Chat {
        rooms: Mutex::new(HashMap::new()),
        capacity,
        heartbeat,
    });
    let app = Router::new()
        .route("/sse", get(subscribe))
        .route("/send", post(send))
        .with_state(chat);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

struct Chat {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    capacity: usize,
    heartbeat: Duration,
}

/// One room: its channel, and under one lock its next id and members, so that a
/// snapshot and the events sent after it never disagree.
struct Room {
    tx: broadcast::Sender<Arc<Posted>>,
    state: Mutex<RoomState>,
}

#[derive(Default)]
struct RoomState {
    last_id: u64,
    /// Name -> open connections under that name.
    members: HashMap<String, usize>,
}

/// An event as it travels through the channel.
struct Posted {
    id: u64,
    kind: &'static str,
    data: String,
}

impl Chat {
    fn room(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Room {
                    tx: broadcast::channel(self.capacity).0,
                    state: Mutex::new(RoomState::default()),
                })
            })
            .clone()
    }
}

impl Room {
    /// Sends an event made from its id; the caller holds the state lock.
    fn send(
        &self,
        state: &mut RoomState,
        kind: &'static str,
        data: impl FnOnce(u64) -> String,
    ) -> u64 {
        state.last_id += 1;
        let id = state.last_id;
        // No receiver is not an error for a chat.
        let _ = self.tx.send(Arc::new(Posted {
            id,
            kind,
            data: data(id),
        }));
        id
    }
}

/// Announces the member's leave when its stream is dropped.
struct Presence {
    room: Arc<Room>,
    room_name: String,
    name: String,
}

impl Drop for Presence {
    fn drop(&mut self) {
        let mut state = self
            .room
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = state.members.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                state.members.remove(&self.name);
            }
        }
        let (room, name) = (&self.room_name, &self.name);
        self.room.send(&mut state, "leave", |id| {
            json!({"id": id, "room": room, "name": name}).to_string()
        });
    }
}

#[derive(Deserialize)]
struct Params {
    room: Option<String>,
    name: Option<String>,
}

async fn subscribe(
    State(chat): State<Arc<Chat>>,
    Query(params): Query<Params>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let room_name = params.room.unwrap_or_else(|| "lobby".to_owned());
    let name = params.name.unwrap_or_else(|| "guest".to_owned());
    let room = chat.room(&room_name);
    let (snapshot, rx) = {
        let mut state = room.state.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = room.tx.subscribe();
        let mut names: Vec<&str> = state
            .members
            .iter()
            .flat_map(|(name, n)| std::iter::repeat_n(name.as_str(), *n))
            .collect();
        names.sort_unstable();
        let snapshot = json!({
            "room": room_name, "you": name, "names": names, "as_of": state.last_id,
        })
        .to_string();
        *state.members.entry(name.clone()).or_insert(0) += 1;
        room.send(&mut state, "join", |id| {
            json!({"id": id, "room": room_name, "name": name}).to_string()
        });
        (snapshot, rx)
    };
    let presence = Presence {
        room,
        room_name,
        name,
    };
    let live = BroadcastStream::new(rx).filter_map(move |posted| {
        // Moved into the stream: dropped, and the leave sent, with it.
        let _presence = &presence;
        let event = posted.ok().map(|p| {
            Ok(Event::default()
                .event(p.kind)
                .id(p.id.to_string())
                .data(&p.data))
        });
        async move { event }
    });
    let first = stream::once(async move { Ok(Event::default().event("members").data(snapshot)) });
    Sse::new(first.chain(live)).keep_alive(KeepAlive::new().interval(chat.heartbeat))
}

#[derive(Deserialize)]
struct Message {
    room: Option<String>,
    name: String,
    text: String,
}

async fn send(State(chat): State<Arc<Chat>>, body: axum::body::Bytes) -> Response {
    let Ok(Message { room, name, text }) = serde_json::from_slice::<Message>(&body) else {
        let error = json!({"error": "the body must be {\"room\", \"name\", \"text\"}"});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    };
    let room_name = room.unwrap_or_else(|| "lobby".to_owned());
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let room = chat.room(&room_name);
    let id = {
        let mut state = room.state.lock().unwrap_or_else(PoisonError::into_inner);
        room.send(&mut state, "message", |id| {
            json!({"id": id, "room": room_name, "name": name, "text": text, "ts": ts}).to_string()
        })
    };
    (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response()
}
