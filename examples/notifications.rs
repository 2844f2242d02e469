//! Per-user notifications: a cookie session, one topic per user, and ONE
//! stream per page for all the topics it reads, authorized in one place.
//!
//! ```text
//! cargo run --example notifications
//! # then open http://127.0.0.1:3000 in two browser profiles, log in as two users
//! ```
//!
//! - `POST /login` with `{"user": NAME}` sets the `session` cookie (`HttpOnly`,
//!   `SameSite=Lax`) and answers `204`. There is no password: put your real
//!   authentication here. `POST /logout` ends the session.
//! - `GET /events?topic=user:NAME&topic=announcements` is one stream of the
//!   topics named (1 to 64): NAME's notifications (`event: notification`,
//!   `{"from", "text"}`) and everyone's announcements (`event: announcement`).
//!   No session: `401`. Then `Hub::subscribe_authorized` asks `may_read` about
//!   each topic, the one authorization hook: a topic the user may not read
//!   (another user's) is refused, and the stream opens on the others and says
//!   so first (`event: refused`, `{"topics": [...]}`); when every topic is
//!   refused, `403` before any stream opens, so an `EventSource` stops retrying
//!   (its `onerror` sees `readyState === CLOSED`). No topic, or more than 64:
//!   `400` with `{"error"}`.
//! - Every event's `id:` is a cursor over all the stream's topics (`m1.…`,
//!   opaque to the page): a tab that reconnects with it as `Last-Event-ID`
//!   gets exactly what each topic got meanwhile.
//! - `POST /notify` with `{"to": NAME, "text"}` (logged in) notifies NAME, and
//!   `{"to": "*"}` posts an announcement: `202 {"id"}`. The hub keeps each
//!   topic's recent history for ten minutes after its last notification,
//!   whether or not a tab is open: a tab that reconnects, or opens within that
//!   time with the last id it saw, gets what it missed (an inbox that lasts
//!   longer belongs in your database).
//!
//! The page opens `new EventSource('/events?topic=user:' + me +
//! '&topic=announcements', { withCredentials: true })`: `EventSource` cannot
//! set headers, so the session travels in the cookie. `withCredentials`
//! matters when the page and the API are on different origins; then the API
//! must answer with `Access-Control-Allow-Origin` set to the page's exact
//! origin and `Access-Control-Allow-Credentials: true`, which this example does
//! for the origin in `ALLOWED_ORIGIN` (e.g. `ALLOWED_ORIGIN=http://localhost:8080`).
//! See `docs/guide.md`.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `ALLOWED_ORIGIN` (none).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    extract::{rejection::QueryRejection, Query, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Deserialize;
use serde_json::json;
use tower_sse::{Event, LastEventId, SseBody, SseLayer};
use tower_sse_hub::{Hub, HubError, MAX_TOPICS};

const MAX_NAME: usize = 32;
const MAX_TEXT: usize = 2048;
/// The topic every logged-in user may read.
const ANNOUNCEMENTS: &str = "announcements";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let allowed_origin = std::env::var("ALLOWED_ORIGIN").ok();
    let app = app(allowed_origin);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// The routes; `allowed_origin` is the one other origin whose pages may read
/// the streams with credentials.
pub fn app(allowed_origin: Option<String>) -> Router {
    let state = Arc::new(Notifications {
        hub: Hub::new(),
        sessions: Mutex::new(HashMap::new()),
    });
    let origin = allowed_origin.and_then(|o| HeaderValue::from_str(&o).ok());
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/notify", post(notify))
        .route("/events", get(events).layer(SseLayer::new()))
        .layer(axum::middleware::from_fn(move |req, next| {
            cors(origin.clone(), req, next)
        }))
        .with_state(state)
}

struct Notifications {
    hub: Hub,
    /// Session token -> user name.
    sessions: Mutex<HashMap<String, String>>,
}

impl Notifications {
    /// The user of the request's session cookie.
    fn user(&self, headers: &HeaderMap) -> Option<String> {
        let token = session_cookie(headers)?;
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get(token).cloned()
    }
}

/// Whether `user` may read `topic`: their own, and the announcements.
fn may_read(user: &str, topic: &str) -> bool {
    topic == ANNOUNCEMENTS || topic.strip_prefix("user:") == Some(user)
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// `POST /login`.
async fn login(State(state): State<Arc<Notifications>>, Json(login): Json<Login>) -> Response {
    let user = login.user.trim();
    if let Err(message) = check_name(user) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let Some(token) = new_token() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session",
        );
    };
    let cookie = format!("session={token}; Path=/; HttpOnly; SameSite=Lax");
    state
        .sessions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(token, user.to_owned());
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// `POST /logout`.
async fn logout(State(state): State<Arc<Notifications>>, headers: HeaderMap) -> Response {
    if let Some(token) = session_cookie(&headers) {
        let mut sessions = state
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.remove(token);
    }
    let expired = "session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0";
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}

/// `GET /events?topic=TOPIC...`: the session, then one stream of the topics
/// the user may read.
async fn events(
    State(state): State<Arc<Notifications>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    last: Option<LastEventId>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, Response> {
    let Some(user) = state.user(&headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "log in first"));
    };
    let Ok(Query(query)) = query else {
        return Err(error(StatusCode::BAD_REQUEST, "bad query string"));
    };
    let topics: Vec<&str> = query
        .iter()
        .filter(|(key, _)| key == "topic")
        .map(|(_, topic)| topic.as_str())
        .collect();
    if topics.is_empty() || topics.len() > MAX_TOPICS {
        return Err(error(StatusCode::BAD_REQUEST, "name 1 to 64 topics"));
    }
    let last = last.as_ref().map(LastEventId::as_str);
    let allow = |user: &String, topic: &str| may_read(user, topic);
    match state
        .hub
        .subscribe_authorized(&user, &topics, last, allow)
        .await
    {
        Ok(stream) => Ok(SseBody::from_events(stream)),
        Err(HubError::Refused) => Err(error(StatusCode::FORBIDDEN, "not your topic")),
        Err(err) => Err(error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())),
    }
}

#[derive(Deserialize)]
struct Notify {
    to: String,
    text: String,
}

/// `POST /notify`.
async fn notify(
    State(state): State<Arc<Notifications>>,
    headers: HeaderMap,
    Json(Notify { to, text }): Json<Notify>,
) -> Response {
    let Some(from) = state.user(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "log in first");
    };
    let (topic, kind) = if to == "*" {
        (ANNOUNCEMENTS.to_owned(), "announcement")
    } else if let Err(message) = check_name(&to) {
        return error(StatusCode::BAD_REQUEST, message);
    } else {
        (format!("user:{to}"), "notification")
    };
    if text.trim().is_empty() || text.len() > MAX_TEXT {
        return error(StatusCode::BAD_REQUEST, "`text` must be 1 to 2048 bytes");
    }
    let data = json!({"from": from, "text": text}).to_string();
    let event = Event::default().event(kind).map(|event| event.data(data));
    match event {
        Ok(event) => match state.hub.publish(&topic, event).await {
            Ok(id) => (StatusCode::ACCEPTED, Json(json!({ "id": id.to_string() }))).into_response(),
            Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string()),
        },
        Err(err) => err.into_response(),
    }
}

/// Lets the page of `origin` (and no other) read responses with credentials.
async fn cors(origin: Option<HeaderValue>, req: Request, next: Next) -> Response {
    let allowed = origin.filter(|o| req.headers().get(header::ORIGIN) == Some(o));
    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// The `session` cookie's value.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("session="))
        .filter(|token| !token.is_empty())
}

/// 128 random bits from the operating system, in hex.
fn new_token() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("a user name is 1 to 32 characters of A-Z, a-z, 0-9, _ and -")
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tower-sse notifications</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 1rem auto; padding: 0 1rem; }
  input, button { font: inherit; }
  #feed li { padding: .2rem 0; }
  #feed .from { font-weight: 600; margin-right: .4rem; }
  #status { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Notifications</h1>
<form id="login"><input id="user" placeholder="your name" required> <button>Log in</button></form>
<p id="status">logged out</p>
<form id="notify" hidden>
  <input id="to" placeholder="to (a name, or *)" required>
  <input id="text" placeholder="message" required> <button>Notify</button>
</form>
<ul id="feed" aria-live="polite"></ul>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
let source = null;
let me = '';

function show(kind, data) {
  const li = document.createElement('li');
  li.className = kind;
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = data.from;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = data.text;
  li.append(from, text);
  $('feed').append(li);
}

// One stream for all my topics; the session cookie goes with it.
function listen(topics) {
  const query = topics.map((t) => 'topic=' + encodeURIComponent(t)).join('&');
  source = new EventSource('/events?' + query, { withCredentials: true });
  source.addEventListener('notification', (e) => show('personal', JSON.parse(e.data)));
  source.addEventListener('announcement', (e) => show('announcement', JSON.parse(e.data)));
  source.addEventListener('refused', (e) => {
    $('status').textContent = `refused: ${JSON.parse(e.data).topics.join(', ')}`;
  });
  source.onopen = () => { $('status').textContent = `listening as ${me}`; };
  source.onerror = () => {
    // 401/403 close the stream for good; anything else is retried by the browser.
    if (source.readyState === EventSource.CLOSED) $('status').textContent = `refused: ${topics.join(', ')}`;
  };
}

$('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (source) source.close();
  me = $('user').value.trim();
  const res = await fetch('/login', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: me }),
  });
  if (!res.ok) { $('status').textContent = (await res.json()).error; return; }
  listen(['user:' + me, 'announcements']);
  $('notify').hidden = false;
});

$('notify').addEventListener('submit', async (e) => {
  e.preventDefault();
  const res = await fetch('/notify', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ to: $('to').value.trim(), text: $('text').value }),
  });
  if (res.ok) $('text').value = '';
  else $('status').textContent = (await res.json()).error;
});
</script>
</body>
</html>
"#;
