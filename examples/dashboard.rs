//! A live dashboard: a background task samples figures and every open page
//! shows them as they change.
//!
//! ```text
//! cargo run --example dashboard
//! # then open http://127.0.0.1:3000
//! ```
//!
//! One task computes a snapshot every `SAMPLE_MS` (default 1000) and puts it in a
//! `tokio::sync::watch` channel; `GET /sse` streams `event: stats` frames from
//! it. A dashboard wants the latest state, not every intermediate one, so `watch`
//! is the right channel: a new page gets the current snapshot at once, and a
//! page that reads slowly skips straight to the newest snapshot instead of
//! queueing old ones (compare the chat, where every message matters and the
//! `Hub` keeps them all). Each snapshot is encoded once and shared by every page.
//! Figures: `tick`, `uptime_ms`, `viewers` (pages open now, counted with the
//! streams' end reports), `load` (a made-up signal to plot).
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `SAMPLE_MS`.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    response::{Html, IntoResponse},
    routing::get,
    Router,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tower_sse::{EncodedEvent, EndHandle, Event, EventError, SseBody, SseLayer};

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
    let app = app(Duration::from_millis(every));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// The routes, and the sampling task (spawned on the current runtime), which
/// takes a snapshot every `every` and stops when the router is dropped.
pub fn app(every: Duration) -> Router {
    let viewers = Arc::new(AtomicU64::new(0));
    let (tx, rx) = watch::channel(snapshot(0, Duration::ZERO, 0));
    tokio::spawn(sample(tx, every, viewers.clone()));
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/sse",
            get(move |end| stats(rx.clone(), viewers.clone(), end)),
        )
        .layer(SseLayer::new())
}

/// The background task: one snapshot per tick, until no page can ever read
/// one again (every receiver, the router's included, is gone).
async fn sample(tx: watch::Sender<EncodedEvent>, every: Duration, viewers: Arc<AtomicU64>) {
    let start = Instant::now();
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for tick in 1.. {
        ticks.tick().await;
        let event = snapshot(tick, start.elapsed(), viewers.load(Ordering::Relaxed));
        if tx.send(event).is_err() {
            return;
        }
    }
}

/// One snapshot, encoded once for every page.
fn snapshot(tick: u64, uptime: Duration, viewers: u64) -> EncodedEvent {
    // Something to plot: a slow wave with a faster ripple on it.
    let t = uptime.as_secs_f64();
    let load = 50.0 + 30.0 * (t / 10.0).sin() + 10.0 * (t * 1.7).sin();
    let data = json!({
        "tick": tick,
        "uptime_ms": uptime.as_millis() as u64,
        "viewers": viewers,
        "load": (load * 10.0).round() / 10.0,
    });
    let event = || -> Result<Event, EventError> {
        Ok(Event::default()
            .event("stats")?
            .id(tick.to_string())?
            .data(data.to_string()))
    };
    // A fixed name and a numeric id cannot fail; an empty event would be harmless.
    event().unwrap_or_default().encode()
}

/// `GET /sse`: the current snapshot at once, then each new one.
async fn stats(
    rx: watch::Receiver<EncodedEvent>,
    viewers: Arc<AtomicU64>,
    end: EndHandle,
) -> impl IntoResponse {
    viewers.fetch_add(1, Ordering::Relaxed);
    SseBody::from_events(WatchStream::new(rx))
        .with_end_handle(end)
        .on_end(move |_| {
            viewers.fetch_sub(1, Ordering::Relaxed);
        })
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
  <div class="card">tick<b id="tick">–</b></div>
</div>
<svg viewBox="0 0 100 100" preserveAspectRatio="none"><polyline id="plot" fill="none" stroke="#3559e0" stroke-width="1.5" vector-effect="non-scaling-stroke"></polyline></svg>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
const history = [];
const source = new EventSource('/sse');
source.onopen = () => { $('state').textContent = 'live'; };
source.onerror = () => { $('state').textContent = 'reconnecting'; };
source.addEventListener('stats', (e) => {
  const s = JSON.parse(e.data);
  $('load').textContent = s.load.toFixed(1);
  $('viewers').textContent = s.viewers;
  $('uptime').textContent = `${Math.floor(s.uptime_ms / 1000)} s`;
  $('tick').textContent = s.tick;
  history.push(s.load);
  if (history.length > 60) history.shift();
  $('plot').setAttribute('points', history.map((v, i) => `${i * 100 / 59},${100 - v}`).join(' '));
});
</script>
</body>
</html>
"##;
