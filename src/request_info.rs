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
    /// The context of `req`.
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
        Self {
            method: method.clone(),
            path: uri.path().to_owned(),
            route: route(extensions),
            request_id: headers.get(X_REQUEST_ID).cloned(),
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

/// What the layer keeps of every request (clones of shared parts, no
/// allocation), made into a [`RequestInfo`] only if the answer is a stream.
#[derive(Debug)]
pub(crate) struct RequestSeed {
    method: Method,
    uri: http::Uri,
    request_id: Option<HeaderValue>,
    route: Option<Arc<str>>,
}

impl RequestSeed {
    /// What to keep of `req`, whose `x-request-id` (found by the caller's one
    /// pass over the headers) is `request_id`.
    pub(crate) fn new<B>(req: &Request<B>, request_id: Option<HeaderValue>) -> Self {
        Self {
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_id,
            route: route(req.extensions()),
        }
    }

    pub(crate) fn into_info(self) -> RequestInfo {
        RequestInfo {
            method: self.method,
            path: self.uri.path().to_owned(),
            route: self.route,
            request_id: self.request_id,
        }
    }
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
}
