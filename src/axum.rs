//! axum 0.8 support (the `axum` feature): responses and extractors.
//!
//! Built on `axum-core` for the responses and extractors; the feature also
//! pulls in `axum` itself (without its default features) for `MatchedPath`,
//! the route reported in [`EndReport::request`](crate::EndReport::request).
//!
//! - [`SseBody`] is an `IntoResponse`: a handler declared `-> impl IntoResponse`
//!   returns it as is (the headers of [`SseBody::into_response`], and the marker
//!   that tells an `SseLayer` the body sends its own heartbeats). Method syntax
//!   finds the inherent `body.into_response()` first, which returns an
//!   `http::Response<SseBody<_>>`; where axum's `Response` is needed, write
//!   `IntoResponse::into_response(body)`, or return `Result<impl IntoResponse,
//!   Response>`.
//! - [`EventError`] is an `IntoResponse` (`500`, a one-line `text/plain` body
//!   naming the fault, never the event's data), so `?` works in a handler.
//!   [`DecodeError`] is one too (`502`: a relay's upstream stream was bad).
//! - [`LastEventId`] is an extractor: `Option<LastEventId>` is `None` when the
//!   client sent no usable id (never a rejection); a bare `LastEventId` rejects a
//!   request without one with [`MissingLastEventId`] (`400`). The `SseLayer` has
//!   usually read it already; without the layer it is read from the request.
//! - [`EndHandle`] is an extractor that never rejects: the layer's handle when
//!   the layer runs (for any request: one that did not ask for a stream gets
//!   its handle made when the extractor asks), otherwise a new detached
//!   handle, which reports the end once given to
//!   [`SseBody::with_end_handle`]. `Option<EndHandle>` is `Some` only for the
//!   layer's handle.

use std::{convert::Infallible, fmt};

use axum_core::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, StatusCode};

use crate::{
    body::SseBody, decode::DecodeError, event::EventError, event::LastEventId,
    stream::end::EndHandle,
};

impl<S> IntoResponse for SseBody<S>
where
    SseBody<S>: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    fn into_response(self) -> Response {
        SseBody::into_response(self).map(Body::new)
    }
}

impl IntoResponse for EventError {
    /// `500 Internal Server Error` with the error's message as `text/plain`; for
    /// [`EventError::Json`] only "event data could not be serialized to JSON",
    /// since the serializer's message may quote the data.
    fn into_response(self) -> Response {
        let message = match self {
            EventError::Json(_) => "event data could not be serialized to JSON".to_owned(),
            other => other.to_string(),
        };
        plain(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for DecodeError {
    /// `502 Bad Gateway` with the error's message as `text/plain`: the decoder
    /// reads streams from elsewhere, so a failure is the upstream's.
    fn into_response(self) -> Response {
        plain(StatusCode::BAD_GATEWAY, self.to_string())
    }
}

fn plain(status: StatusCode, message: String) -> Response {
    let mut res = Response::new(Body::from(message));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// The id of a request, from the layer's extension or read from the request.
fn last_event_id(parts: &Parts) -> Option<LastEventId> {
    parts
        .extensions
        .get::<LastEventId>()
        .cloned()
        .or_else(|| LastEventId::from_request_parts(parts))
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(last_event_id(parts))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = MissingLastEventId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        last_event_id(parts).ok_or(MissingLastEventId)
    }
}

/// The rejection of a `LastEventId` extractor when the request has no usable id
/// (none sent, or a hostile one: see [`LastEventId`]). It answers `400 Bad
/// Request`. A browser's first connection never sends an id, so most handlers
/// want `Option<LastEventId>`, which never rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissingLastEventId;

impl fmt::Display for MissingLastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("missing or invalid last-event-id")
    }
}

impl std::error::Error for MissingLastEventId {}

impl IntoResponse for MissingLastEventId {
    fn into_response(self) -> Response {
        plain(StatusCode::BAD_REQUEST, self.to_string())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for EndHandle {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(layer_handle(parts).unwrap_or_default())
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for EndHandle {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(layer_handle(parts))
    }
}

/// The layer's handle of this request: in its extensions (a stream request),
/// or made now by the layer handling it on this thread (any other request).
fn layer_handle(parts: &Parts) -> Option<EndHandle> {
    parts
        .extensions
        .get::<EndHandle>()
        .cloned()
        .or_else(crate::stream::link::claim_handle)
}
