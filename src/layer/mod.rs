//! [`SseLayer`]: Tower middleware that makes any service's SSE responses
//! production-safe, whoever produced the stream: our [`SseBody`](crate::SseBody),
//! axum's `Sse`, warp's `sse::reply`, or a hand-made body.
//!
//! Add one layer to an existing stack and every response whose `content-type`
//! is `text/event-stream` (with or without parameters) gets:
//!
//! - **headers**: `cache-control: no-cache, no-transform` (configurable),
//!   `x-accel-buffering: no`; `content-length`, `connection`, `keep-alive` and
//!   `transfer-encoding` left by the inner service are removed (they break
//!   HTTP/2 responses);
//! - **heartbeats** while idle ([`KeepAlive`](crate::KeepAlive), 15 s by
//!   default), written only **between events**: the layer follows the bytes
//!   (a blank line ends an event; LF, CR or CRLF line endings, split across
//!   frames in any way) and never writes a comment inside an event; an
//!   [`SseBody`](crate::SseBody) inside writes them itself (see
//!   [the heartbeat rule](#one-heartbeat-rule));
//! - **disconnect reporting**: an [`EndReport`](crate::EndReport) (reason,
//!   events, heartbeats, bytes, duration, and the [request](crate::RequestInfo))
//!   to every [`SseLayer::on_end`] callback and to the request's
//!   [`EndHandle`](crate::EndHandle), exactly once, including when the client
//!   leaves (hyper drops the body; on HTTP/2, a reset stream);
//! - **graceful shutdown** ([`SseLayer::with_shutdown`]) and a **maximum
//!   lifetime** ([`SseLayer::max_lifetime`]): the stream ends cleanly at the next
//!   event boundary, after a last event or a `retry:` hint; a stream that cannot
//!   reach a boundary (its producer stalled mid-event) is cut off after the
//!   shutdown's [grace period](crate::Shutdown::grace).
//!
//! # One heartbeat rule
//!
//! A stream has one heartbeat writer, and its setting is, in this order:
//!
//! 1. none at all if the [`SseBody`](crate::SseBody) says
//!    [`SseBody::without_heartbeats`](crate::SseBody::without_heartbeats): the
//!    one way to turn heartbeats off for a stream under a layer too;
//! 2. the [`KeepAlive`](crate::KeepAlive) set on the body with
//!    [`SseBody::keep_alive`](crate::SseBody::keep_alive), if it sends
//!    heartbeats (its interval and text win over the layer's);
//! 3. else (the body set nothing, or set
//!    [`KeepAlive::disabled`](crate::KeepAlive::disabled), which means "this
//!    body sends none of its own") the layer's ([`SseLayer::keep_alive`], 15 s
//!    by default; `KeepAlive::disabled` there turns them off for every stream
//!    of the layer).
//!
//! Without a layer, a body that set nothing sends heartbeats every 15 s, and
//! `KeepAlive::disabled` on it means none.
//!
//! When the response's body is an `SseBody`, the body writes the heartbeats
//! (it is always between events); for any other body, the layer writes them at
//! event boundaries. The rule is the same whatever built the response:
//! `SseBody::into_response`, [`response`](crate::response()), or axum's
//! `IntoResponse`. The layer finds the body through a link made when the body is
//! created while the layer's service handles the request (in the handler), or
//! carried by the response of `into_response` (for a body made elsewhere, such
//! as another task). A body made outside the handler *and* wrapped with the
//! generic `response()` cannot be found: it keeps its own heartbeats, the
//! layer's come on top when the layer's interval is shorter, and its
//! `without_heartbeats` does not stop the layer's.
//!
//! Through the same link, the end report tells the truth from both sides: an
//! `SseBody` ended by the layer (shutdown, lifetime) reports the layer's reason,
//! not `ClientGone`, and the layer reports the body's reason (a failure, its own
//! shutdown) when the body ends.
//!
//! Every other response passes through untouched: its body is polled straight
//! through, and the only work is a look at its `content-type`. The layer never
//! changes the inner service's error type; a failing body fails the same way
//! (and the failure is reported).
//!
//! # The request side
//!
//! A request is a *stream request* when its `Accept` header lists
//! `text/event-stream` (every browser `EventSource` sends it; with curl, add
//! `-H 'accept: text/event-stream'`; `*/*` does not count). For every request the
//! layer inserts the [`LastEventId`](crate::LastEventId) into the extensions when
//! there is one (`Last-Event-ID` header, else the `lastEventId` query parameter;
//! hostile values — not UTF-8, over 1 KiB, control characters — are absent,
//! never a 500), and an [`EndHandle`](crate::EndHandle) that the handler (or the
//! task producing its events) can await: it learns how the stream ended. If the
//! answer is not a stream (an error, a `204`, a plain page), the handle resolves
//! at once with `Completed` and zero counts; if the response never comes (the
//! client left during a slow handler, an outer timeout dropped the future), with
//! `ClientGone`: nothing waits on it forever. (`text/event-stream;q=0` is a
//! refusal, not a stream request.)
//!
//! For stream requests it also removes `accept-encoding`, so a compression
//! layer *inside* this one cannot compress the stream (a compressor buffers
//! small events: the client would see nothing). A compression layer *outside*
//! this one sees the client's `accept-encoding`: keep its default predicate
//! (tower-http's skips `text/event-stream`), or put `SseLayer` outside it. (No
//! `content-encoding: identity` is sent: RFC 9110 reserves `identity` and says
//! not to send it in `Content-Encoding`.)
//!
//! An SSE response that arrives already compressed (only possible for a request
//! that was not a stream request) is passed through as is: nothing can be
//! written into a compressed stream.
//!
//! # Concurrency limit
//!
//! With [`SseLayer::max_streams`], the exact rule is:
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
//! A browser's `EventSource` does not reconnect after a `503`: page code should
//! retry after `retry-after` seconds. Clones of a layer share its slots, unless
//! a clone is configured differently: it then has slots of its own.
//!
//! # Bodies and errors
//!
//! As tower-http's middleware, the layer takes any response body whose data is
//! a `bytes::Buf` and whose error converts into a [`BoxError`](crate::BoxError);
//! its [`ResponseBody`] yields `Bytes` (zero-copy for `Bytes` data) and fails
//! with a [`BodyError`] whose source is the inner error, which is also the
//! [`EndReason::Failed`](crate::EndReason::Failed) of the report. The service's
//! own error type is never changed.
//!
//! # Which piece do I use?
//!
//! - **[`SseBody`](crate::SseBody) alone**: you write the handler and own the
//!   stream; you want heartbeats, end reports, shutdown and lifetime for that
//!   stream, with no middleware.
//! - **`SseLayer` alone**: the streams come from elsewhere (axum's `Sse`, warp,
//!   a proxy, a hand-made body) and you want them all made safe in one place:
//!   headers, heartbeats at boundaries, disconnect reports, compression off,
//!   shutdown, limits, `Last-Event-ID` for handlers.
//! - **Both**: the usual production setup. The body writes the events (typed,
//!   fallible, coalesced) and the heartbeats, at the layer's interval unless the
//!   body set one of its own ([the rule](#one-heartbeat-rule)); the layer adds what only a
//!   middleware can do: the concurrency limit, compression safety on the request,
//!   one `on_end`, one `Shutdown` and one lifetime for every route.
//!
//! # Compared with other Rust SSE support
//!
//! | | tower-sse (`SseLayer` + `SseBody`) | axum 0.8 `Sse` | warp 0.4 `sse` | actix-web-lab `sse` |
//! |---|---|---|---|---|
//! | headers | `no-cache, no-transform`, `x-accel-buffering: no`, hop-by-hop headers removed, for any producer | `no-cache` | `no-cache` | `no-cache`, `content-encoding: identity` |
//! | heartbeat | after idle time, reset by events, only at event boundaries, also for foreign bodies, never doubled | opt-in, idle-reset | opt-in, idle-reset | fixed cadence, never reset by traffic |
//! | disconnect reporting | `EndReport` (reason, events, bytes, duration) to a callback and awaitable handles | none | none | none |
//! | `Last-Event-ID` | header or `lastEventId` query, hostile values absent, in request extensions | none | filter; unparsable is a rejection | none |
//! | compression safety | `accept-encoding` removed for stream requests | relies on the compressor's predicate | relies on the compressor | `identity` header |
//! | graceful shutdown | `Shutdown` ends every stream at a boundary, with a last event, within a grace period | hangs (axum#2673) | hangs | manual |
//! | fallible events | typed `EventError`; stream errors end the body cleanly and are reported | panics on CR/LF in `id`/`event` | field injection possible | body error |
//! | limits | max concurrent streams (503 + `retry-after`), max lifetime with `retry:` | none | none | none |
//!
//! # Examples
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
//!
//! A handler that resumes after `Last-Event-ID` and learns when the client leaves:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::convert::Infallible;
//! use http::Request;
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_sse::{EndHandle, EndReason, Event, LastEventId, SseBody, SseLayer};
//!
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let svc = ServiceBuilder::new().layer(SseLayer::new()).service_fn(move |req: Request<()>| {
//!     let from = req.extensions().get::<LastEventId>().and_then(|id| id.as_u64()).unwrap_or(0);
//!     let handle = req.extensions().get::<EndHandle>().unwrap().clone();
//!     let events = futures_util::stream::iter([Event::message("next").id((from + 1).to_string())]);
//!     let body = SseBody::new(events).with_end_handle(handle.clone());
//!     let _ = tx.send(handle);
//!     async move { Ok::<_, Infallible>(body.into_response()) }
//! });
//! let req = Request::get("/sse?lastEventId=41")
//!     .header("accept", "text/event-stream")
//!     .body(())
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! let bytes = res.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"id: 42\ndata: next\n\n");
//! let report = rx.recv().await.unwrap().ended().await;
//! assert_eq!(report.reason, EndReason::Completed);
//! # }
//! ```
//!
//! With axum: a route returning axum's own `Sse` gets headers, heartbeats and
//! end reports; stack it with compression (see `examples/axum.rs`).
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use axum::{response::sse, routing::get, Router};
//! use tower_sse::{KeepAlive, Shutdown, SseLayer};
//!
//! let shutdown = Shutdown::new();
//! let app: Router = Router::new()
//!     .route("/sse", get(|| async {
//!         sse::Sse::new(futures_util::stream::pending::<Result<sse::Event, Infallible>>())
//!     }))
//!     .layer(
//!         SseLayer::new()
//!             .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
//!             .max_streams(5_000, Duration::from_secs(10))
//!             .with_shutdown(&shutdown),
//!     );
//! ```

mod body;
mod boundary;
mod config;
mod future;
#[allow(clippy::module_inception)] // tower-http's layout: `layer/layer.rs`
mod layer;
mod service;

pub(crate) use self::config::Permit;
pub use self::{
    body::{BodyError, ResponseBody},
    future::ResponseFuture,
    layer::SseLayer,
    service::Sse,
};
