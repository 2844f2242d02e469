//! Server-Sent Events for any HTTP stack built on `http` 1.x and Tower: hyper,
//! axum, warp, tonic.
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
//!   [`layer`] module for the details and a comparison with axum, warp and
//!   actix-web-lab.
//! - [`Hub`] is the broadcast hub: named topics, each event encoded once and
//!   shared with every [`Subscriber`], ids and a bounded history for
//!   `Last-Event-ID` replay with no gap and no duplicate, and bounded queues with
//!   a [`Lag`] policy so a slow client never holds up the rest.
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
//! - **[`Hub`]** when many clients watch the same events.
//! - **[`EventStream`]** to read a stream.
//!
//! # Example
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
//! - `serve`: `serve::Server` and `serve::TcpOptions`, the serving defaults
//!   long-lived streams need on hyper and axum: a vanished client reported
//!   within heartbeat + 30 s (`TCP_USER_TIMEOUT`, keepalive), a header read
//!   timeout, bounded buffers, a connection cap, graceful shutdown with a
//!   deadline.
//! - `tracing`: a span per stream (`sse_stream`, with the request's method,
//!   path, route and request id) and an event for its end report.
//! - `metrics`: stream (and hub) metrics through the `metrics` facade; the
//!   names are in [`metrics`], all in one place.
//! - `axum`: the route of [`RequestInfo`] from axum's `MatchedPath`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod coalesce;
pub mod decode;
mod encoded;
mod end;
mod event;
mod hub;
mod keep_alive;
mod last_event_id;
pub mod layer;
mod lifecycle;
mod link;
pub mod metrics;
mod request_info;
mod response;
#[cfg(feature = "serve")]
#[cfg_attr(docsrs, doc(cfg(feature = "serve")))]
pub mod serve;
mod shutdown;
pub mod timer;
mod trace;
mod tracker;

pub use body::{BoxError, Infallibly, SseBody};
pub use decode::{DecodeError, Decoder, EventStream, MessageEvent};
pub use encoded::EncodedEvent;
pub use end::{EndHandle, EndReason, EndReport, Ended};
pub use event::{Event, EventError};
pub use hub::{Hub, HubConfig, Lag, Subscriber};
pub use keep_alive::KeepAlive;
pub use last_event_id::{LastEventId, MAX_LAST_EVENT_ID_LEN};
pub use layer::SseLayer;
pub use request_info::RequestInfo;
pub use response::{
    is_event_stream, no_content, response, NO_CACHE, TEXT_EVENT_STREAM, X_ACCEL_BUFFERING,
};
pub use shutdown::{Drained, Shutdown, Triggered};
