use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, HeaderMap, HeaderValue, Request, Response};
use tower_service::Service;

use super::{config::Config, future::StreamRequest, ResponseBody, ResponseFuture, SseLayer};
use crate::{
    event::LastEventId,
    request_info::{owned, RequestInfo, X_REQUEST_ID},
    stream::end::EndHandle,
    stream::end::Outcome,
    stream::link::{HandleOffer, Link},
};

/// Middleware that makes the SSE responses of the inner service production-safe;
/// see the [module docs](crate::layer). Made by [`SseLayer`].
///
/// It never changes the inner service's error type; a failing response body
/// fails the same way through it.
///
/// A handler that resumes after `Last-Event-ID` and learns when the client leaves:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::convert::Infallible;
/// use http::Request;
/// use http_body_util::BodyExt;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_sse::{EndHandle, EndReason, Event, LastEventId, SseBody, SseLayer};
///
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let svc = ServiceBuilder::new().layer(SseLayer::new()).service_fn(move |req: Request<()>| {
///     let from = req.extensions().get::<LastEventId>().and_then(|id| id.as_u64()).unwrap_or(0);
///     let handle = req.extensions().get::<EndHandle>().unwrap().clone();
///     let events = futures_util::stream::iter([Event::message("next").id((from + 1).to_string())]);
///     let body = SseBody::new(events).with_end_handle(handle.clone());
///     let _ = tx.send(handle);
///     async move { Ok::<_, Infallible>(body.into_response()) }
/// });
/// let req = Request::get("/sse?lastEventId=41")
///     .header("accept", "text/event-stream")
///     .body(())
///     .unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// let bytes = res.into_body().collect().await.unwrap().to_bytes();
/// assert_eq!(&bytes[..], b"id: 42\ndata: next\n\n");
/// let report = rx.recv().await.unwrap().ended().await;
/// assert_eq!(report.reason, EndReason::Completed);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Sse<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Sse<S> {
    /// Wraps `inner` with the default configuration; see [`SseLayer`] for the rest.
    pub fn new(inner: S) -> Self {
        Self::from_config(inner, Arc::default())
    }

    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// A layer with the default configuration, same as [`SseLayer::new`].
    pub fn layer() -> SseLayer {
        SseLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Sse<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // Inlined into its caller: for a plain request the whole call is a scan
    // of the headers and a listen around the inner call.
    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let seen = Seen::scan(req.headers());
        let id = LastEventId::from_header_or_query(seen.last_event_id, seen.repeated_id, req.uri());
        if seen.stream || id.is_some() {
            // Copied: the request's own value may share the server's read buffer.
            let (stream, request_id) = (seen.stream, seen.request_id.and_then(owned));
            return self.call_stream(req, stream, id, request_id);
        }
        // Most requests: plain pages and API calls. No handle is made unless
        // the handler asks (the `EndHandle` extractor, through the thread's
        // offer), and no context is kept: most answers are no stream.
        // Listens for the `SseBody` the handler makes, whatever builds the response.
        let mut link = None;
        let mut handle = HandleOffer::Open;
        let future = Link::listen(&mut link, &mut handle, || self.inner.call(req));
        ResponseFuture::plain(future, self.config.clone(), link, handle)
    }
}

impl<S> Sse<S> {
    /// A stream request (`stream`), or one resuming a stream (`id`): it gets
    /// its handle in its extensions, and its context is kept for the end
    /// report.
    #[inline(never)]
    fn call_stream<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
        stream_request: bool,
        id: Option<LastEventId>,
        request_id: Option<HeaderValue>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let info = Arc::new(RequestInfo::seed(&req, request_id));
        let handle = EndHandle::new();
        req.extensions_mut().insert(handle.clone());
        let handle = HandleOffer::Claimed(handle);
        if let Some(id) = id {
            req.extensions_mut().insert(id);
        }
        let mut link = None;
        if !stream_request {
            // Resuming without asking for a stream: the answer may be one.
            let mut stream = StreamRequest::new(handle, Some(info), None, None);
            let future = Link::listen(&mut link, &mut stream.handle, || self.inner.call(req));
            stream.link = link;
            return ResponseFuture::called(future, self.config.clone(), stream);
        }
        // Decided before the inner service runs, so a refused stream costs it nothing.
        let Some(permit) = self.config.try_acquire() else {
            if let HandleOffer::Claimed(handle) = handle {
                handle.resolve_empty(Outcome::NoStream);
            }
            return ResponseFuture::rejected(&self.config);
        };
        req.headers_mut().remove(header::ACCEPT_ENCODING);
        let mut stream = StreamRequest::new(handle, Some(info), Some(permit), None);
        let future = Link::listen(&mut link, &mut stream.handle, || self.inner.call(req));
        stream.link = link;
        ResponseFuture::called(future, self.config.clone(), stream)
    }
}

/// What the layer reads of a request's headers, in one pass over them (three
/// look-ups by name would hash each name).
#[derive(Default)]
struct Seen<'a> {
    /// The `Accept` header lists `text/event-stream`: a stream request.
    stream: bool,
    last_event_id: Option<&'a HeaderValue>,
    /// `Last-Event-ID` was sent more than once (then it counts as absent).
    repeated_id: bool,
    request_id: Option<&'a HeaderValue>,
}

impl<'a> Seen<'a> {
    #[inline]
    fn scan(headers: &'a HeaderMap) -> Self {
        let mut seen = Self::default();
        for (name, value) in headers {
            if *name == header::ACCEPT {
                seen.stream = seen.stream || accepts_value(value);
            } else if *name == LastEventId::NAME {
                seen.repeated_id = seen.last_event_id.is_some();
                seen.last_event_id = Some(value);
            } else if *name == X_REQUEST_ID && seen.request_id.is_none() {
                seen.request_id = Some(value);
            }
        }
        seen
    }
}

/// Whether a request's `Accept` header lists `text/event-stream` (parameters
/// and letter case aside) with a weight above zero: what the layer calls a
/// stream request, and what every `EventSource` sends. `*/*` does not count:
/// every browser request sends it.
///
/// ```
/// use http::{header::ACCEPT, HeaderMap, HeaderValue};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
/// assert!(tower_sse::accepts_event_stream(&headers));
/// headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream;q=0, */*"));
/// assert!(!tower_sse::accepts_event_stream(&headers));
/// ```
pub fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(accepts_value)
}

/// Whether one `Accept` value lists `text/event-stream` with a weight above zero.
#[inline]
fn accepts_value(value: &HeaderValue) -> bool {
    // Every request comes this way and most do not ask for a stream: a value
    // too short to hold it (`application/json`) is ruled out here, inlined.
    value.as_bytes().len() >= "text/event-stream".len() && accepts_long_value(value)
}

#[inline(never)]
fn accepts_long_value(value: &HeaderValue) -> bool {
    // A value none of whose few `/` is followed by `event-stream` is ruled
    // out before the exact parse.
    let bytes = value.as_bytes();
    let mentioned = memchr::memchr_iter(b'/', bytes).any(|at| {
        bytes
            .get(at + 1..at + 13)
            .is_some_and(|s| s.eq_ignore_ascii_case(b"event-stream"))
    });
    mentioned
        && value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|range| crate::response::is_event_stream_type(range) && !refused(range))
        })
}

/// Whether a media range has `q=0` (RFC 9110 §12.4.2: "not acceptable").
fn refused(range: &str) -> bool {
    range.split(';').skip(1).any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        let value = value.trim();
        name.trim().eq_ignore_ascii_case("q")
            && value.starts_with('0')
            && value.len() <= 5
            && value[1..]
                .strip_prefix('.')
                .unwrap_or(&value[1..])
                .bytes()
                .all(|b| b == b'0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn accept_header() {
        for (values, yes) in [
            (&["text/event-stream"][..], true),
            (&["Text/Event-Stream;q=0.9"][..], true),
            (&["application/json, text/event-stream"][..], true),
            (&["text/html", " text/event-stream ; q=1"][..], true),
            (&["*/*"][..], false),
            (&["text/*"][..], false),
            (&["text/event-streams"][..], false),
            (&["text/html,application/xhtml+xml,*/*;q=0.8"][..], false),
            (&["application/json"][..], false),
            (&["text/event-stream/"][..], false),
            (&["x;a=text/event-stream"][..], false),
            (&["image/webp", "TEXT/EVENT-STREAM"][..], true),
            // q=0 means "not acceptable" (used to count as accepting).
            (&["text/event-stream;q=0"][..], false),
            (&["text/event-stream; Q=0.000"][..], false),
            (&["text/event-stream;q=0.001"][..], true),
            (&["text/event-stream;q=0, text/event-stream;q=1"][..], true),
            (&[][..], false),
        ] {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT, HeaderValue::from_static(v));
            }
            assert_eq!(accepts_event_stream(&h), yes, "{values:?}");
        }
    }
}
