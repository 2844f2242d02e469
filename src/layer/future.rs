use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{header, HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::{config::Config, ResponseBody};
use crate::{
    request_info::RequestInfo,
    stream::end::EndHandle,
    stream::end::Outcome,
    stream::link::{HandleOffer, Link, LinkExt},
    stream::permit::Permit,
    stream::report::Reporter,
};

pin_project! {
    /// Response future of [`Sse`](super::Sse).
    ///
    /// Dropped before the inner service answered (the client left during a slow
    /// handler, an outer timeout), it reports `ClientGone` to the request's
    /// [`EndHandle`](crate::EndHandle), so nothing waits on it forever.
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
            request: Held,
        },
        Rejected {
            retry_after: Option<HeaderValue>,
        },
    }
}

/// What a called future holds of its request.
enum Held {
    /// A plain request for which nothing was made yet (no handle, no body's
    /// link): most requests. Nothing to keep, nothing to drop.
    Plain,
    /// A stream request, a resumed one, or a plain one for which a handle or
    /// a body's link was made. Boxed: most requests have none, and the future
    /// moves several times.
    Stream(Box<StreamRequest>),
    /// The response is out.
    Done,
}

/// What the service set up for a request: its end handle (resolved with
/// `ClientGone` if dropped unanswered), what the report will say of the
/// request (for a stream request or a resumed one: a stream answering any
/// other request is reported without it), and for a request that asked for a
/// stream, its slot and its link to the body.
pub(crate) struct StreamRequest {
    /// `Claimed` once the request has a handle (in its extensions, or made when
    /// its handler asked); `Open` while none was asked for; `Closed` once
    /// resolved or handed to the stream's report.
    pub(crate) handle: HandleOffer,
    request: Option<Arc<RequestInfo>>,
    permit: Option<Permit>,
    pub(crate) link: Option<Arc<Link>>,
}

impl StreamRequest {
    pub(crate) fn new(
        handle: HandleOffer,
        request: Option<Arc<RequestInfo>>,
        permit: Option<Permit>,
        link: Option<Arc<Link>>,
    ) -> Self {
        Self {
            handle,
            request,
            permit,
            link,
        }
    }

    /// A plain request's, for which nothing was made.
    fn plain() -> Self {
        Self::new(HandleOffer::Open, None, None, None)
    }

    /// The handle, if the request has one; the request keeps none after.
    #[inline]
    fn take_handle(&mut self) -> Option<EndHandle> {
        match std::mem::take(&mut self.handle) {
            HandleOffer::Claimed(handle) => Some(handle),
            HandleOffer::Open | HandleOffer::Closed => None,
        }
    }

    /// The response is no stream (or none came): the handle resolves at once, so
    /// that nothing waits on it forever.
    fn not_a_stream(mut self) {
        if let Some(handle) = self.take_handle() {
            handle.resolve_empty(Outcome::NoStream);
        }
    }

    /// The response is a stream: its end report starts now.
    fn reporter(&mut self) -> Reporter {
        let mut reporter = Reporter::new(self.take_handle().unwrap_or_default());
        if let Some(request) = self.request.take() {
            reporter.set_request(request);
        }
        reporter
    }
}

impl Drop for StreamRequest {
    #[inline]
    fn drop(&mut self) {
        // Dropped before the response (the future was dropped): the client left.
        if let Some(handle) = self.take_handle() {
            handle.resolve_empty(Outcome::Unanswered);
        }
    }
}

impl<F> ResponseFuture<F> {
    /// The future of a plain request, with what its call made (`link`,
    /// `handle`): almost always nothing.
    #[inline]
    pub(crate) fn plain(
        future: F,
        config: Arc<Config>,
        link: Option<Arc<Link>>,
        handle: HandleOffer,
    ) -> Self {
        let request = match (&link, &handle) {
            (None, HandleOffer::Open) => Held::Plain,
            _ => Held::made(link, handle),
        };
        Self {
            kind: Kind::Called {
                future,
                config,
                request,
            },
        }
    }

    /// The future of a stream request or a resumed one.
    pub(crate) fn called(future: F, config: Arc<Config>, stream: StreamRequest) -> Self {
        Self {
            kind: Kind::Called {
                future,
                config,
                request: Held::Stream(Box::new(stream)),
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

impl Held {
    /// A plain request for which a handle or a body's link was made.
    #[cold]
    #[inline(never)]
    fn made(link: Option<Arc<Link>>, handle: HandleOffer) -> Self {
        Self::Stream(Box::new(StreamRequest::new(handle, None, None, link)))
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    // Always inlined into its caller (hyper's, `Oneshot`'s): the response of
    // a plain request is then built where the caller keeps it, not moved
    // there (`tools/layer_cost.sh`: 32 fewer instructions per request).
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                config,
                request,
            } => {
                let output = match request {
                    Held::Plain => {
                        // A body made while the handler runs links itself to
                        // the layer; a handler asking for its handle makes it.
                        let mut link = None;
                        let mut handle = HandleOffer::Open;
                        let poll = Link::listen(&mut link, &mut handle, || future.poll(cx));
                        if link.is_some() || !matches!(handle, HandleOffer::Open) {
                            *request = Held::made(link, handle);
                            ready!(poll)
                        } else {
                            let output = ready!(poll);
                            *request = Held::Done;
                            return Poll::Ready(match output {
                                // Most answers: no stream, passed on as they are.
                                Ok(res) if !crate::response::is_event_stream(res.headers()) => {
                                    Ok(res.map(ResponseBody::plain))
                                }
                                Ok(res) => Ok(wrap(res, config, StreamRequest::plain())),
                                Err(err) => Err(err),
                            });
                        }
                    }
                    Held::Stream(stream) => {
                        ready!(Link::listen(&mut stream.link, &mut stream.handle, || {
                            future.poll(cx)
                        }))
                    }
                    // Polled after completion: a broken contract, answered quietly.
                    Held::Done => return Poll::Pending,
                };
                let Held::Stream(stream) = std::mem::replace(request, Held::Done) else {
                    return Poll::Pending;
                };
                match output {
                    Ok(res) if !crate::response::is_event_stream(res.headers()) => {
                        (*stream).not_a_stream();
                        Poll::Ready(Ok(res.map(ResponseBody::plain)))
                    }
                    Ok(res) => Poll::Ready(Ok(wrap(res, config, *stream))),
                    Err(err) => {
                        (*stream).not_a_stream();
                        Poll::Ready(Err(err))
                    }
                }
            }
            KindProj::Rejected { retry_after } => Poll::Ready(Ok(unavailable(retry_after.take()))),
        }
    }
}

/// Makes a response whose `content-type` is `text/event-stream` a stream.
/// Out of line: most responses are not streams, and take the short way.
#[inline(never)]
fn wrap<B>(
    mut res: Response<B>,
    config: &Config,
    stream: StreamRequest,
) -> Response<ResponseBody<B>> {
    // A compressed stream cannot take a heartbeat; it can only be passed on.
    let compressed = res
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v != "identity");
    if compressed {
        stream.not_a_stream();
        return res.map(ResponseBody::plain);
    }
    let mut stream = stream;
    let mut reporter = stream.reporter();
    let permit = match stream.permit.take() {
        Some(permit) => permit,
        // The request did not say it wanted a stream: its slot is taken now.
        None => match config.try_acquire() {
            Some(permit) => permit,
            None => {
                reporter.finish(Outcome::NoStream);
                return unavailable(config.limit.as_ref().map(|l| l.retry_after.clone()));
            }
        },
    };
    // The body's own link (`into_response`) or the one offered to the handler.
    let link = match res.extensions_mut().remove::<LinkExt>() {
        Some(LinkExt(link)) => link,
        None => stream.link.take().unwrap_or_default(),
    };
    link.mark_layered(&config.keep_alive);
    reporter.set_link(link.clone());
    let (mut parts, body) = res.into_parts();
    crate::response::set_headers(&mut parts.headers, config.cache_control.clone());
    let body = ResponseBody::stream(body, config, reporter, permit, link);
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
