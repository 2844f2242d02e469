//! A live dashboard: each widget is a topic of its own, and a page reads all of
//! them through one stream.
//!
//! ```text
//! cargo run --example dashboard
//! # then open http://127.0.0.1:3000
//! ```
//!
//! Widgets: `load` (a made-up signal to plot) and `uptime`, sampled every
//! `SAMPLE_MS` (default 1000); `viewers` (pages open now), published when it
//! changes; `started` (when the server started), published once. Each is the
//! hub topic `widget/NAME`, and the hub is told that these are **latest-value
//! topics** (`Hub::latest_value("widget/")`): a page that opens gets each
//! widget's latest event at once, so it shows every widget straight away,
//! even `started`, published long before, then live updates.
//!
//! - `GET /sse` streams every widget; `GET /sse?widget=load&widget=viewers`
//!   the ones named (an unknown widget or a bad query string: `400` with
//!   `{"error"}`). The events are named after their widget (`event: load`,
//!   `data: {"value": 57.3}`), so the page adds one listener per widget.
//! - The page opens ONE `EventSource` for all its widgets
//!   (`Hub::subscribe_many`). Every event's `id:` is a cursor over all of them
//!   (`m1.…`, opaque to the page): when the connection drops, the browser
//!   reconnects with it as `Last-Event-ID` and gets exactly what each widget
//!   published meanwhile.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `SAMPLE_MS`.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde_json::{json, Value};
use tokio::sync::watch;
use tower_sse::{EndHandle, Event, LastEventId, SseBody, SseLayer};
use tower_sse_hub::{Hub, HubConfig, HubError};

/// The widgets, each the topic `widget/NAME`.
pub const WIDGETS: [&str; 4] = ["load", "uptime", "viewers", "started"];

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let every = match std::env::var("SAMPLE_MS") {
        Ok(ms) => ms.parse().ok().filter(|&ms| ms > 0).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("SAMPLE_MS must be a positive number of milliseconds, not {ms:?}"),
            )
        })?,
        Err(_) => 1000,
    };
    let app = app(hub(), Duration::from_millis(every)).await;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// A hub whose widget topics are latest-value topics, their histories kept
/// however long nobody looks (a widget that rarely changes keeps its state).
pub fn hub() -> Hub {
    let config = HubConfig::new().history_ttl(Duration::MAX);
    Hub::with_config(config).latest_value("widget/")
}

/// Publishes `value` as the state of `widget`: `event: WIDGET`,
/// `data: {"value": VALUE}` on the topic `widget/WIDGET`.
pub async fn show(hub: &Hub, widget: &str, value: Value) -> Result<(), HubError> {
    let data = json!({ "value": value }).to_string();
    // Widget names are fixed words: a valid event name.
    let event = Event::default()
        .event(widget)
        .unwrap_or_default()
        .data(data);
    hub.publish(&format!("widget/{widget}"), event).await?;
    Ok(())
}

struct Dashboard {
    hub: Hub,
    /// Pages open now; the sampler publishes each change.
    viewers: watch::Sender<u64>,
}

/// The routes. Every widget has a state before this returns; then a task
/// (spawned on the current runtime) samples `load` and `uptime` every `every`
/// and publishes `viewers` when it changes, until the router is dropped.
pub async fn app(hub: Hub, every: Duration) -> Router {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let _ = show(&hub, "started", json!(started)).await;
    let _ = show(&hub, "viewers", json!(0)).await;
    sample_once(&hub, Duration::ZERO).await;
    let (viewers, watching) = watch::channel(0);
    tokio::spawn(sample(hub.clone(), watching, every));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/sse", get(widgets))
        .layer(SseLayer::new())
        .with_state(Arc::new(Dashboard { hub, viewers }))
}

/// The background task: `load` and `uptime` on each tick, `viewers` on each
/// change, until the router (the sender of `viewers`) is gone.
async fn sample(hub: Hub, mut viewers: watch::Receiver<u64>, every: Duration) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval_at((start + every).into(), every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => sample_once(&hub, start.elapsed()).await,
            changed = viewers.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = *viewers.borrow_and_update();
                let _ = show(&hub, "viewers", json!(now)).await;
            }
        }
    }
}

/// `load` and `uptime` after `uptime`.
async fn sample_once(hub: &Hub, uptime: Duration) {
    // Something to plot: a slow wave with a faster ripple on it.
    let t = uptime.as_secs_f64();
    let load = 50.0 + 30.0 * (t / 10.0).sin() + 10.0 * (t * 1.7).sin();
    let _ = show(hub, "load", json!((load * 10.0).round() / 10.0)).await;
    let _ = show(hub, "uptime", json!(uptime.as_secs())).await;
}

/// `GET /sse?widget=NAME...`: the named widgets (all by default) in one
/// stream, each starting with its latest state, or resuming from the cursor.
async fn widgets(
    State(dash): State<Arc<Dashboard>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    last: Option<LastEventId>,
    end: EndHandle,
) -> Result<impl IntoResponse, Response> {
    let Ok(Query(query)) = query else {
        return Err(error(StatusCode::BAD_REQUEST, "bad query string"));
    };
    let mut topics = Vec::new();
    for (_, name) in query.iter().filter(|(key, _)| key == "widget") {
        if !WIDGETS.contains(&name.as_str()) {
            let message = format!("unknown widget {name:?}: one of {}", WIDGETS.join(", "));
            return Err(error(StatusCode::BAD_REQUEST, &message));
        }
        topics.push(format!("widget/{name}"));
    }
    if topics.is_empty() {
        topics = WIDGETS.iter().map(|w| format!("widget/{w}")).collect();
    }
    let last = last.as_ref().map(LastEventId::as_str);
    let stream = match dash.hub.subscribe_many(&topics, last).await {
        Ok(stream) => stream,
        Err(err) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, &err.to_string())),
    };
    dash.viewers.send_modify(|n| *n += 1);
    let viewers = dash.viewers.clone();
    Ok(SseBody::from_events(stream)
        .with_end_handle(end)
        .on_end(move |_| viewers.send_modify(|n| *n -= 1)))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tower-sse dashboard</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(8rem, 1fr)); gap: .6rem; }
  .card { border: 1px solid #dde0e8; border-radius: 8px; padding: .6rem; }
  .card b { display: block; font-size: 1.6rem; }
  svg { width: 100%; height: 6rem; border: 1px solid #dde0e8; border-radius: 8px; margin-top: .6rem; }
  #state { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Live dashboard</h1>
<p id="state">connecting</p>
<div class="cards">
  <div class="card">load<b id="load">–</b></div>
  <div class="card">viewers<b id="viewers">–</b></div>
  <div class="card">uptime<b id="uptime">–</b></div>
  <div class="card">started<b id="started">–</b></div>
</div>
<svg viewBox="0 0 100 100" preserveAspectRatio="none"><polyline id="plot" fill="none" stroke="#3559e0" stroke-width="1.5" vector-effect="non-scaling-stroke"></polyline></svg>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
const history = [];
const show = {
  load: (v) => {
    $('load').textContent = v.toFixed(1);
    history.push(v);
    if (history.length > 60) history.shift();
    $('plot').setAttribute('points', history.map((v, i) => `${i * 100 / 59},${100 - v}`).join(' '));
  },
  viewers: (v) => { $('viewers').textContent = v; },
  uptime: (v) => { $('uptime').textContent = `${v} s`; },
  started: (v) => { $('started').textContent = new Date(v).toLocaleTimeString(); },
};
// One stream for every widget; each event is named after its widget.
const source = new EventSource('/sse?' + Object.keys(show).map((w) => 'widget=' + w).join('&'));
source.onopen = () => { $('state').textContent = 'live'; };
source.onerror = () => { $('state').textContent = 'reconnecting'; };
for (const [widget, update] of Object.entries(show)) {
  source.addEventListener(widget, (e) => update(JSON.parse(e.data).value));
}
</script>
</body>
</html>
"##;
