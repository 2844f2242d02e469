//! [`SseLayer`]: Tower middleware that makes any service's SSE responses
//! production-safe, whoever produced the stream: our [`SseBody`](crate::SseBody),
//! axum's `Sse`, warp's `sse::reply`, or a hand-made body.
//!
//! Every response whose `content-type` is `text/event-stream` gets the SSE
//! headers (hop-by-hop headers and `content-length` removed), heartbeats while
//! idle written only between events, an [`EndReport`](crate::EndReport) to
//! [`SseLayer::on_end`] and the request's [`EndHandle`](crate::EndHandle),
//! graceful shutdown ([`SseLayer::with_shutdown`]) and a maximum lifetime
//! ([`SseLayer::max_lifetime`]). Every request gets its
//! [`LastEventId`](crate::LastEventId) in its extensions; a *stream request*
//! (`Accept: text/event-stream`) and one resuming a stream (with a
//! `Last-Event-ID`) get an `EndHandle` there too, and any other request's
//! handler gets one from the `EndHandle` extractor (with the `axum` feature),
//! made when it asks, so a plain request costs no handle. A stream request
//! loses its `accept-encoding`, so nothing inside compresses the stream. Other
//! responses pass through untouched.
//! The full account, and a comparison with other Rust SSE support, is in the
//! [guide](https://github.com/tower-sse/tower-sse/blob/main/docs/guide.md#the-layer-in-depth).
//!
//! # The moving parts
//!
//! - [`SseLayer`] (`sse_layer.rs`): the builder, holding the layer's
//!   configuration (`config.rs`), shared by every service it makes;
//! - [`Sse`] (`service.rs`): the service; it reads the request, takes a slot of
//!   [`max_streams`](SseLayer::max_streams) for a stream request, and listens for
//!   an [`SseBody`](crate::SseBody) made by the handler;
//! - [`ResponseFuture`] (`future.rs`): turns the inner response into a stream (or
//!   passes it through, or answers `503`);
//! - [`ResponseBody`] (`body.rs`): drives the stream's lifecycle (heartbeats,
//!   shutdown, lifetime, end report) around the inner body, finding event
//!   boundaries in its bytes (`boundary.rs`).
//!
//! # One heartbeat rule
//!
//! A stream has one heartbeat writer, and its setting is, in this order:
//!
//! 1. none if the body says
//!    [`SseBody::without_heartbeats`](crate::SseBody::without_heartbeats) (the
//!    one way to turn them off under a layer too);
//! 2. the body's own [`SseBody::keep_alive`](crate::SseBody::keep_alive), if it
//!    sends heartbeats;
//! 3. else the layer's ([`SseLayer::keep_alive`], 15 s by default). Without a
//!    layer, a body that set nothing sends them every 15 s, and
//!    [`KeepAlive::disabled`](crate::KeepAlive::disabled) on it means none.
//!
//! An [`SseBody`](crate::SseBody) writes the heartbeats itself (it is always
//! between events); for any other body the layer writes them. The layer finds the
//! body when it is made in the handler or answered with
//! [`SseBody::into_response`](crate::SseBody::into_response); see the
//! [guide](https://github.com/tower-sse/tower-sse/blob/main/docs/guide.md#the-layer-in-depth) for the other cases.
//!
//! # Concurrency limit
//!
//! With [`SseLayer::max_streams`]:
//!
//! 1. a stream request takes a slot **before the inner service is called**; if
//!    none is free, the answer is `503 Service Unavailable` with `retry-after`
//!    and the inner service never sees the request;
//! 2. an SSE response to a request that was not a stream request takes its slot
//!    when the response arrives; if none is free, it is replaced by the same
//!    `503` (its body is dropped unread);
//! 3. a slot is freed when its stream ends or its body is dropped, or at once
//!    when the answer to a stream request is not a stream.
//!
//! Clones of a layer share its slots, unless a clone is configured differently.
//!
//! # Example
//!
//! Any service: the layer works on plain `tower` services and `http` types.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_sse::SseLayer;
//!
//! // A stream made by hand, with headers the layer fixes.
//! let svc = ServiceBuilder::new().layer(SseLayer::new()).service_fn(|_req: Request<()>| async {
//!     let res = Response::builder()
//!         .header("content-type", "text/event-stream")
//!         .header("content-length", "9")
//!         .body(Full::new(Bytes::from_static(b"data: a\n\n")))
//!         .unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//! let req = Request::get("/sse").header("accept", "text/event-stream").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["cache-control"], "no-cache, no-transform");
//! assert!(res.headers().get("content-length").is_none());
//! let bytes = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"data: a\n\n");
//! # }
//! ```

mod body;
mod boundary;
mod config;
mod future;
mod service;
mod sse_layer;

pub use self::{
    body::{BodyError, ResponseBody},
    future::ResponseFuture,
    service::{accepts_event_stream, Sse},
    sse_layer::SseLayer,
};
