//! [`RequestInfo`]: which request a stream answers, for end reports, logs and spans.

use std::sync::Arc;

use http::{request::Parts, HeaderValue, Method, Request};

/// The request a stream answers: carried by its [`EndReport`](crate::EndReport)
/// and its tracing span, so a layer-wide `on_end` can tell streams apart.
///
/// [`SseLayer`](crate::SseLayer) fills it for every stream; give it to an
/// [`SseBody`](crate::SseBody) used alone with
/// [`SseBody::request_info`](crate::SseBody::request_info).
///
/// The path never includes the query string, which often carries tokens. The
/// route is the pattern that matched (`/rooms/{id}`, low-cardinality, fit for a
/// metric label): read from axum's `MatchedPath` when the `axum` feature is on
/// and axum routed the request before the layer saw it (a layer added with
/// `Router::layer` does), else set by hand with [`with_route`](Self::with_route).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestInfo {
    /// The request method.
    pub method: Method,
    /// The request path, without the query.
    pub path: String,
    /// The route pattern that matched, when known.
    pub route: Option<Arc<str>>,
    /// The `x-request-id` header, when present (as set by tower-http's
    /// `SetRequestIdLayer` or a proxy).
    pub request_id: Option<HeaderValue>,
}

impl RequestInfo {
    /// The context of `req`, copied out of it (nothing shares the request's
    /// buffers).
    pub fn new<B>(req: &Request<B>) -> Self {
        Self::from_parts_ref(req.method(), req.uri(), req.headers(), req.extensions())
    }

    /// The context of a request's parts.
    pub fn from_parts(parts: &Parts) -> Self {
        Self::from_parts_ref(&parts.method, &parts.uri, &parts.headers, &parts.extensions)
    }

    fn from_parts_ref(
        method: &Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        let request_id = headers.get(X_REQUEST_ID).and_then(owned);
        Self::of(method, uri, extensions, request_id)
    }

    /// Everything is copied out of the request: a server such as hyper parses
    /// the path and header values as slices of its connection's read buffer,
    /// and a slice kept while the stream lasts would keep that buffer shared,
    /// so the server would allocate another one for its next read.
    fn of(
        method: &Method,
        uri: &http::Uri,
        extensions: &http::Extensions,
        request_id: Option<HeaderValue>,
    ) -> Self {
        Self {
            method: method.clone(),
            path: uri.path().to_owned(),
            route: route(extensions),
            request_id,
        }
    }

    /// Sets the route pattern.
    pub fn with_route(mut self, route: impl Into<Arc<str>>) -> Self {
        self.route = Some(route.into());
        self
    }
}

/// Made once: a `&str` name would be parsed on every lookup.
pub(crate) const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

impl RequestInfo {
    /// What the layer keeps of a stream request, whose `x-request-id` (found
    /// by the caller's one pass over the headers, and copied with [`owned`])
    /// is `request_id`.
    pub(crate) fn seed<B>(req: &Request<B>, request_id: Option<HeaderValue>) -> Self {
        Self::of(req.method(), req.uri(), req.extensions(), request_id)
    }
}

/// A header value in a buffer of its own.
pub(crate) fn owned(value: &HeaderValue) -> Option<HeaderValue> {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).ok()?;
    copy.set_sensitive(value.is_sensitive());
    Some(copy)
}

#[cfg(feature = "axum")]
fn route(extensions: &http::Extensions) -> Option<Arc<str>> {
    extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| Arc::from(m.as_str()))
}

#[cfg(not(feature = "axum"))]
fn route(_: &http::Extensions) -> Option<Arc<str>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_without_query_and_request_id() {
        let req = Request::get("/rooms/7?token=secret")
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        let info = RequestInfo::new(&req).with_route("/rooms/{id}");
        assert_eq!(info.method, Method::GET);
        assert_eq!(info.path, "/rooms/7");
        assert_eq!(info.route.as_deref(), Some("/rooms/{id}"));
        assert_eq!(info.request_id.unwrap(), "abc");
    }

    #[test]
    fn new_copies_the_request_id_too() {
        let buffer = bytes::Bytes::from_static(b"x-request-id: abc\r\n");
        let value = HeaderValue::from_maybe_shared(buffer.slice(14..17)).unwrap();
        let req = Request::get("/")
            .header(X_REQUEST_ID, value.clone())
            .body(())
            .unwrap();
        let copied = RequestInfo::new(&req).request_id.unwrap();
        assert_eq!(copied, "abc");
        assert_ne!(copied.as_bytes().as_ptr(), value.as_bytes().as_ptr());
    }

    #[test]
    fn seed_shares_nothing_with_the_request() {
        // As hyper parses them: the value is a slice of the connection's buffer.
        let buffer =
            bytes::Bytes::from_static(b"GET /rooms/7?x=1 HTTP/1.1\r\nx-request-id: abc\r\n");
        let mut value = HeaderValue::from_maybe_shared(buffer.slice(41..44)).unwrap();
        value.set_sensitive(true);
        let req = Request::get("/rooms/7?x=1").body(()).unwrap();
        let info = RequestInfo::seed(&req, owned(&value));
        let copied = info.request_id.unwrap();
        assert_eq!(copied, "abc");
        assert!(copied.is_sensitive());
        assert_ne!(copied.as_bytes().as_ptr(), value.as_bytes().as_ptr());
        assert_eq!(info.path, "/rooms/7");
        assert_eq!(info.method, Method::GET);
    }
}
