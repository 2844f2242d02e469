//! Server-Sent Events for any HTTP stack built on `http` 1.x and Tower: hyper,
//! axum, warp, tonic.
//!
//! # Example
//!
//! An axum handler (with the `axum` feature) that streams events, resumes after
//! the client's `Last-Event-ID`, and learns when the client leaves; `SseLayer`
//! adds heartbeats, a concurrency limit and keeps compression off the stream:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use std::time::Duration;
//!
//! use axum::{response::IntoResponse, routing::get, Router};
//! use futures_util::StreamExt;
//! use tokio_stream::wrappers::IntervalStream;
//! use tower_sse::{EndHandle, Event, LastEventId, SseBody, SseLayer};
//!
//! async fn sse_handler(last: Option<LastEventId>, end: EndHandle) -> impl IntoResponse {
//!     // `Last-Event-ID` (or `?lastEventId=`) from a reconnecting client.
//!     let after = last.and_then(|id| id.as_u64()).unwrap_or(0);
//!     let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
//!         .zip(futures_util::stream::iter(after + 1..))
//!         .map(|(_, n)| Event::message(format!("tick {n}")).id(n.to_string()));
//!     let watcher = end.clone();
//!     tokio::spawn(async move {
//!         let report = watcher.ended().await; // client gone, shut down...
//!         println!("{} after {} events", report.reason, report.events);
//!     });
//!     SseBody::new(ticks).with_end_handle(end)
//! }
//!
//! let app: Router = Router::new()
//!     .route("/sse", get(sse_handler))
//!     .layer(SseLayer::new().max_streams(10_000, Duration::from_secs(5)));
//! # }
//! ```
//!
//! `Event::id` and `Event::event` return `Result<Event, EventError>`; with the
//! `axum` feature `EventError` is a response too (`500`), so `?` works in a
//! handler. The same body is an `http::Response` for hyper, warp or tonic
//! ([`SseBody::into_response`]). Browsers, proxies, authentication and HTTP/2:
//! see the [guide](https://github.com/tower-sse/tower-sse/blob/main/docs/guide.md).
//!
//! # The moving parts
//!
//! Data flows one way: **stream → encoder → body → layer → connection**.
//!
//! - [`Event`] is one event, checked when built: a field that could break the
//!   stream is a typed [`EventError`], never a panic and never a malformed stream.
//!   [`Event::encode`] writes it once into an [`EncodedEvent`], shared by reference
//!   count with as many streams as need it.
//! - [`SseBody`] turns any `Stream` of events into an `http_body::Body`:
//!   heartbeats while idle ([`KeepAlive`]), a `retry:` hint, coalescing of ready
//!   events, clean ends on errors, disconnect detection ([`EndHandle`],
//!   [`EndReport`]), graceful shutdown ([`Shutdown`]) and a maximum lifetime.
//!   [`response`] (or [`SseBody::into_response`]) adds the headers a stream needs.
//! - [`SseLayer`] is Tower middleware that makes *any* service's SSE responses
//!   production-safe, whoever made them (this crate, axum's `Sse`, warp, a
//!   hand-made body): headers, heartbeats injected only between events,
//!   disconnect reports, compression kept off, shutdown, limits, and
//!   [`LastEventId`] plus an [`EndHandle`] in the request's extensions. See the
//!   [`layer`] module for the details, and the
//!   [guide](https://github.com/tower-sse/tower-sse/blob/main/docs/guide.md#the-layer-in-depth)
//!   for the full account and a comparison with axum, warp and actix-web-lab.
//! - `Hub` (the `tower-sse-hub` crate) is the broadcast hub: named topics, each event encoded once and
//!   shared with every `Subscriber`; per-topic `EventId`s with an epoch and a
//!   bounded history that outlives subscribers, for `Last-Event-ID` replay with
//!   no gap, no duplicate and never from the wrong place; every subscriber a
//!   cursor into that history, with a `Lag` policy so a slow client never
//!   holds up the rest. Where history lives is a `Store`: in memory by
//!   default.
//! - [`Decoder`] and [`EventStream`] are the reading side: a WHATWG-exact parser
//!   with bounded memory, for clients, relays and tests (see [`decode`]).
//!
//! `cargo run --example chat` shows it all in a browser.
//!
//! # Which piece do I use?
//!
//! - **[`SseBody`] alone** when you write the handler and own the stream.
//! - **[`SseLayer`] alone** when the streams come from elsewhere (axum's `Sse`,
//!   warp, a proxy) and you want them all made safe in one place.
//! - **Both**, the usual production setup: the body writes typed, coalesced events
//!   and the heartbeats ([one rule](layer#one-heartbeat-rule): the body's
//!   setting, else the layer's); the layer adds
//!   the concurrency limit, compression safety, and one `on_end`, `Shutdown` and
//!   lifetime for every route.
//! - **`Hub`** (`tower-sse-hub`) when many clients watch the same events.
//! - **[`EventStream`]** to read a stream.
//!
//! # Encoding and decoding, without a server
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use futures_util::StreamExt;
//! use http_body_util::BodyExt;
//! use tower_sse::{EndReason, Event, EventStream, SseBody};
//!
//! // Any stream of events: a channel, a database feed, a timer...
//! let events = futures_util::stream::iter(1..=2).map(|n| {
//!     Event::message(format!("tick {n}")).id(n.to_string())
//! });
//! let body = SseBody::new(events);
//! let handle = body.end_handle(); // learns when the client goes away
//! let response = body.into_response(); // 200, text/event-stream, no-cache...
//! assert_eq!(response.headers()["content-type"], "text/event-stream");
//!
//! // hyper or axum would now write the body to the connection:
//! let bytes = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"id: 1\ndata: tick 1\n\nid: 2\ndata: tick 2\n\n");
//! assert_eq!(handle.report().unwrap().reason, EndReason::Completed);
//!
//! // ...and a client reads it back with the decoder.
//! let body = http_body_util::Full::new(bytes);
//! let decoded: Vec<_> = EventStream::new(body).map(Result::unwrap).collect().await;
//! assert_eq!((decoded[1].id.as_str(), decoded[1].data.as_str()), ("2", "tick 2"));
//! # }
//! ```
//!
//! # How this differs from axum's `Sse`
//!
//! - A line break in an `id` or `event` is an `Err`, not a panic; `"a\r\nb"` is
//!   one line break, not two; empty data is sent (`data:`) and so dispatched.
//! - The body reports how it ended (client gone, completed, failed, shut down,
//!   lifetime), exactly once, to a callback and to awaitable handles.
//! - A [`Shutdown`] ends open streams so graceful shutdown completes.
//! - `x-accel-buffering: no` and `no-transform` keep proxies from buffering or
//!   compressing the stream; the layer keeps compression layers off it.
//! - Ready events are coalesced into fewer frames; an event is encoded once and can
//!   be shared by many streams.
//!
//! # Features
//!
//! - `tokio` (default): heartbeats and lifetimes use `tokio::time`. Without it,
//!   give a [`timer::Timer`] to the body or layer, or heartbeats are off.
//! - `json`: `Event::json_data`, from any `serde::Serialize`.
//! - `axum`: axum 0.8 support: [`SseBody`] and [`EventError`] are
//!   `IntoResponse`, [`LastEventId`] (`Option<LastEventId>`) and [`EndHandle`]
//!   are extractors (see `MissingLastEventId`), and the route of
//!   [`RequestInfo`] comes from axum's `MatchedPath`.
//! - `serve`: `serve::Server` and `serve::TcpOptions`, the serving defaults
//!   long-lived streams need on hyper and axum: a vanished client reported
//!   within heartbeat + 30 s (`TCP_USER_TIMEOUT`, keepalive), a header read
//!   timeout, bounded buffers, a connection cap, graceful shutdown with a
//!   deadline.
//! - `tracing`: a span per stream (`sse_stream`, with the request's method,
//!   path, route and request id) and an event for its end report.
//! - `metrics`: stream (and hub) metrics through the `metrics` facade; the
//!   names are in [`metrics`], all in one place.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

#[cfg(feature = "axum")]
mod axum;
mod body;
pub mod decode;
mod error;
mod event;
pub mod layer;
pub mod metrics;
mod request_info;
mod response;
mod stream;
mod sync;
pub mod timer;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::axum::MissingLastEventId;
pub use body::{OkEvents, SseBody};
pub use decode::{DecodeError, Decoder, EventStream, MessageEvent};
pub use error::BoxError;
pub use event::{EncodedEvent, Event, EventError, LastEventId, MAX_LAST_EVENT_ID_LEN};
pub use layer::{accepts_event_stream, SseLayer};
pub use request_info::RequestInfo;
pub use response::{
    is_event_stream, no_content, response, NO_CACHE, TEXT_EVENT_STREAM, X_ACCEL_BUFFERING,
};
pub use stream::{
    drop_stalled, Drained, EndHandle, EndReason, EndReport, Ended, KeepAlive, Shutdown, Triggered,
};

/// The README's Rust snippets, compiled and run as doctests.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
