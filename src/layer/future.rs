use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::{
    config::{Config, Permit},
    ResponseBody,
};
use crate::{end::Tracker, EndHandle, EndReason};

pin_project! {
    /// Response future of [`Sse`](super::Sse).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            config: Arc<Config>,
            stream: Option<StreamRequest>,
        },
        Rejected {
            retry_after: Option<HeaderValue>,
        },
    }
}

/// What the service set up for a request that asked for a stream.
pub(crate) struct StreamRequest {
    pub(crate) handle: EndHandle,
    pub(crate) permit: Permit,
    /// The request offered compressed encodings, which the service took away.
    pub(crate) identity: bool,
}

impl StreamRequest {
    /// The response is no stream (or none came): the handle resolves at once, so
    /// that nothing waits on it forever.
    fn not_a_stream(self) {
        Tracker::new(self.handle).finish(EndReason::Completed);
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, config: Arc<Config>, stream: Option<StreamRequest>) -> Self {
        Self {
            kind: Kind::Called {
                future,
                config,
                stream,
            },
        }
    }

    pub(crate) fn rejected(config: &Config) -> Self {
        let retry_after = config.limit.as_ref().map(|l| l.retry_after.clone());
        Self {
            kind: Kind::Rejected { retry_after },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                config,
                stream,
            } => match ready!(future.poll(cx)) {
                Ok(res) => Poll::Ready(Ok(wrap(res, config, stream.take()))),
                Err(err) => {
                    if let Some(stream) = stream.take() {
                        stream.not_a_stream();
                    }
                    Poll::Ready(Err(err))
                }
            },
            KindProj::Rejected { retry_after } => Poll::Ready(Ok(unavailable(retry_after.take()))),
        }
    }
}

fn wrap<B>(
    res: Response<B>,
    config: &Config,
    stream: Option<StreamRequest>,
) -> Response<ResponseBody<B>> {
    let headers = res.headers();
    // A compressed stream cannot take a heartbeat; it can only be passed on.
    let compressed = || {
        headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v != "identity")
    };
    if !crate::is_event_stream(headers) || compressed() {
        if let Some(stream) = stream {
            stream.not_a_stream();
        }
        return res.map(ResponseBody::plain);
    }
    let (handle, permit, identity) = match stream {
        Some(s) => (s.handle, s.permit, s.identity),
        // The request did not say it wanted a stream: its slot is taken now.
        None => match config.try_acquire() {
            Some(permit) => (EndHandle::new(), permit, false),
            None => return unavailable(config.limit.as_ref().map(|l| l.retry_after.clone())),
        },
    };
    let (mut parts, body) = res.into_parts();
    crate::response::set_headers(&mut parts.headers, config.cache_control.clone());
    if identity && !parts.headers.contains_key(header::CONTENT_ENCODING) {
        // An outer compression layer saw the client's `accept-encoding`; this
        // tells it (tower-http's `CompressionLayer` and others) the body is final.
        parts.headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let own_heartbeat = parts
        .extensions
        .get::<crate::response::OwnHeartbeat>()
        .is_some();
    let body = ResponseBody::stream(body, config, handle, permit, own_heartbeat);
    Response::from_parts(parts, body)
}

/// `503 Service Unavailable` with `retry-after`.
fn unavailable<B>(retry_after: Option<HeaderValue>) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    if let Some(value) = retry_after {
        res.headers_mut().insert(header::RETRY_AFTER, value);
    }
    res
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rejected = matches!(self.kind, Kind::Rejected { .. });
        f.debug_struct("ResponseFuture")
            .field("rejected", &rejected)
            .finish_non_exhaustive()
    }
}
