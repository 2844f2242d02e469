//! SSE responses: the headers that keep a stream flowing through caches and proxies.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// `text/event-stream`, the SSE media type.
pub const TEXT_EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");

/// The default `cache-control` of SSE responses: never cached, never transformed
/// (`no-transform` forbids proxies from recompressing or rewriting it).
pub const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache, no-transform");

/// The `x-accel-buffering` header, honoured by nginx and others to stop buffering.
pub const X_ACCEL_BUFFERING: header::HeaderName =
    header::HeaderName::from_static("x-accel-buffering");

/// Wraps an SSE body in a `200 OK` response with the headers a stream needs:
///
/// - `content-type: text/event-stream`;
/// - `cache-control: no-cache, no-transform`;
/// - `x-accel-buffering: no`, so nginx-style proxies pass each event on at once.
///
/// It sets no `content-length` (the length is unknown) and no `connection` or
/// `keep-alive` header, which are forbidden on HTTP/2 (hyper strips them with a
/// warning, other servers pass them on and some browsers then drop the stream).
///
/// Works with any body, and the result is a plain `http::Response`, which hyper
/// serves as is and axum 0.8 accepts as a handler's return value.
///
/// # Example
///
/// ```
/// use tower_sse::{response, Event, SseBody};
///
/// let body = SseBody::from_events(futures_util::stream::iter([Event::message("hi")]));
/// let res = response(body);
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
/// assert_eq!(res.headers()["cache-control"], "no-cache, no-transform");
/// assert_eq!(res.headers()["x-accel-buffering"], "no");
/// ```
pub fn response<B>(body: B) -> Response<B> {
    let mut res = Response::new(body);
    set_headers(res.headers_mut(), NO_CACHE);
    res.headers_mut()
        .insert(header::CONTENT_TYPE, TEXT_EVENT_STREAM);
    res
}

/// A `204 No Content` response: the one answer that tells a browser's
/// `EventSource` to stop reconnecting (an error status or another content type
/// does too, but is logged as an error in the browser console).
///
/// ```
/// let res = tower_sse::no_content::<String>();
/// assert_eq!(res.status(), 204);
/// ```
pub fn no_content<B: Default>() -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

/// Sets the stream headers on an SSE response and removes those that break it.
pub(crate) fn set_headers(headers: &mut HeaderMap, cache_control: HeaderValue) {
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    for name in [
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::HeaderName::from_static("keep-alive"),
    ] {
        headers.remove(name);
    }
}

/// Whether a response's `content-type` is `text/event-stream`, with or without
/// parameters, in any letter case.
#[inline]
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    // A response has few headers: a pass over them costs less than hashing
    // the name for a look-up.
    let content_type = headers
        .iter()
        .find_map(|(name, value)| (*name == header::CONTENT_TYPE).then_some(value));
    content_type.is_some_and(|v| {
        // Every response through the layer comes this way: one whose type does
        // not start with a `t` (`application/json`, `image/png`) is ruled out
        // before the exact check.
        let bytes = v.as_bytes();
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        first.is_some_and(|b| b.eq_ignore_ascii_case(&b't'))
            && v.to_str().is_ok_and(is_event_stream_type)
    })
}

/// Whether a media type (or an `Accept` media range) is `text/event-stream`,
/// parameters and letter case aside.
pub(crate) fn is_event_stream_type(media_type: &str) -> bool {
    media_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_event_stream() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        for (v, yes) in [
            ("text/event-stream", true),
            ("Text/Event-Stream", true),
            ("text/event-stream; charset=utf-8", true),
            (" text/event-stream ;x=1", true),
            ("text/event-streams", false),
            ("text/plain", false),
            ("application/json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_event_stream(&h), yes, "{v}");
        }
    }

    #[test]
    fn strips_connection_headers() {
        let mut res = Response::new(());
        for (k, v) in [
            ("content-length", "10"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
        ] {
            res.headers_mut().insert(k, HeaderValue::from_static(v));
        }
        set_headers(res.headers_mut(), NO_CACHE);
        let mut names: Vec<_> = res.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["cache-control", "x-accel-buffering"]);
    }
}
