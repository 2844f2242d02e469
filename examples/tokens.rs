//! LLM-style token streaming: a `POST` answered with a stream of tokens.
//!
//! ```text
//! cargo run --example tokens
//! # then open http://127.0.0.1:3000, or:
//! curl -N http://127.0.0.1:3000/generate -d '{"prompt": "hello"}' -H 'content-type: application/json'
//! ```
//!
//! `POST /generate` with `{"prompt": "...", "max_tokens": N}` (`max_tokens`
//! optional, 1 to 512, default 256) answers `200 text/event-stream`: one
//! `event: token` per token (its text in `data`, leading spaces kept), then one
//! `event: done` with `{"tokens": N, "finish": "stop" | "length"}`, and the
//! response ends. Bad input is a `400` (or axum's `415`/`422`) before any stream
//! starts. The "model" here echoes the prompt word by word; a real one sits
//! behind the same stream.
//!
//! `EventSource` cannot send a `POST`, so the page (`GET /`) reads the response
//! with `fetch` and a stream reader; a Rust client reads it with
//! `tower_sse::EventStream` (see `tests/tokens.rs`). When the client goes away
//! (the page's Stop button aborts the fetch), the body is dropped and generation
//! stops with it: no token is computed for nobody.
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `TOKEN_MS` (delay per token,
//! default 40).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::rejection::JsonRejection,
    http::StatusCode,
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tower_sse::{EndReport, Event, EventError, SseBody, SseLayer};

/// The longest prompt accepted, in bytes.
const MAX_PROMPT: usize = 8 * 1024;
/// The most tokens one request may ask for.
const MAX_TOKENS: usize = 512;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let delay = match std::env::var("TOKEN_MS") {
        Ok(ms) => ms.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("TOKEN_MS must be a number of milliseconds, not {ms:?}"),
            )
        })?,
        Err(_) => 40,
    };
    let on_end = |report: EndReport| {
        println!(
            "generation ended: {} after {} events",
            report.reason, report.events
        )
    };
    let app = app(Duration::from_millis(delay), Arc::new(on_end));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}

/// Called once per generation with how it ended (completed, or `client gone`
/// when the client stopped reading).
pub type OnEnd = Arc<dyn Fn(EndReport) + Send + Sync>;

/// The routes, with `delay` between tokens.
pub fn app(delay: Duration, on_end: OnEnd) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/generate", post(move |body| generate(body, delay, on_end)))
        // Headers, compression off; the body has its own heartbeats.
        .layer(SseLayer::new())
}

#[derive(Deserialize)]
struct Request {
    prompt: String,
    max_tokens: Option<usize>,
}

/// `POST /generate`.
async fn generate(
    body: Result<Json<Request>, JsonRejection>,
    delay: Duration,
    on_end: OnEnd,
) -> Result<impl IntoResponse, Response> {
    let Json(Request { prompt, max_tokens }) = body.map_err(IntoResponse::into_response)?;
    let max_tokens = max_tokens.unwrap_or(256);
    if prompt.trim().is_empty() || prompt.len() > MAX_PROMPT {
        return Err(bad_request(&format!(
            "`prompt` must be 1 to {MAX_PROMPT} bytes"
        )));
    }
    if !(1..=MAX_TOKENS).contains(&max_tokens) {
        return Err(bad_request(&format!(
            "`max_tokens` must be 1 to {MAX_TOKENS}"
        )));
    }
    let tokens = model(&prompt);
    let finish = if tokens.len() > max_tokens {
        "length"
    } else {
        "stop"
    };
    let tokens: Vec<String> = tokens.into_iter().take(max_tokens).collect();
    let count = tokens.len();
    // One token per `delay`, computed only when the body asks for the next one:
    // a dropped body stops the generation.
    let generated = stream::iter(tokens).then(move |token| async move {
        tokio::time::sleep(delay).await;
        named("token").map(|event| event.data(token))
    });
    let done = stream::once(async move {
        named("done")
            .map(|event| event.data(json!({"tokens": count, "finish": finish}).to_string()))
    });
    Ok(SseBody::new(generated.chain(done)).on_end(move |report| on_end(report)))
}

/// An event of type `kind`.
fn named(kind: &str) -> Result<Event, EventError> {
    Event::default().event(kind)
}

/// The stand-in model: answers with the prompt, one word per token, each token
/// after the first with its leading space (as LLM tokenizers do).
fn model(prompt: &str) -> Vec<String> {
    let words = ["You", " said:"]
        .into_iter()
        .map(str::to_owned)
        .chain(prompt.split_whitespace().map(|word| format!(" {word}")));
    words.collect()
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// The page: `fetch`, a stream reader, and a small SSE parser (enough for this
/// server's events: `event`, `data`, blank-line dispatch).
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tower-sse token streaming</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 1rem auto; padding: 0 1rem; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; }
  #out { white-space: pre-wrap; border: 1px solid #ccc; border-radius: 6px; padding: .6rem; min-height: 4rem; }
  #status { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>Token streaming</h1>
<form id="form">
  <textarea id="prompt" rows="3">Server-Sent Events stream tokens as they are made</textarea>
  <button id="go" type="submit">Generate</button> <button id="stop" type="button" disabled>Stop</button>
</form>
<p id="status"></p>
<div id="out" aria-live="polite"></div>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
let controller = null;

// Reads an SSE response body and calls `onEvent(type, data)` for each event.
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '', type = '', data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = ''; data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'event') type = val;
      else if (field === 'data') data.push(val);
    }
  }
}

$('form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('out').textContent = '';
  $('status').textContent = 'generating…';
  controller = new AbortController();
  $('go').disabled = true; $('stop').disabled = false;
  try {
    const res = await fetch('/generate', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ prompt: $('prompt').value }),
      signal: controller.signal,
    });
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    await readEvents(res.body, (type, data) => {
      if (type === 'token') $('out').textContent += data;
      if (type === 'done') $('status').textContent = `done: ${JSON.parse(data).tokens} tokens`;
    });
  } catch (err) {
    $('status').textContent = err.name === 'AbortError' ? 'stopped' : `error: ${err.message}`;
  } finally {
    $('go').disabled = false; $('stop').disabled = true;
  }
});
$('stop').addEventListener('click', () => controller && controller.abort());
</script>
</body>
</html>
"#;
