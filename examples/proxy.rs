//! An SSE relay: connects to an upstream event stream, decodes it with
//! `tower_sse::EventStream`, optionally filters or rewrites events, and serves them again
//! through `tower_sse::SseBody` (with heartbeats).
//!
//! - Each downstream client gets its own upstream request. The client's `Last-Event-ID` is sent
//!   upstream, so a reconnecting client resumes where it left off.
//! - When the upstream ends or fails, the relay reconnects after the upstream's `retry` time
//!   (3 s by default), sending the last event id it saw, as a browser would. A `204`, another
//!   error status or a response that is not `text/event-stream` ends the relay for that client.
//! - When the downstream client leaves, hyper drops the response body, which drops the upstream
//!   response: the upstream connection is closed at once (end-to-end disconnect detection).
//!
//! ```sh
//! UPSTREAM=http://127.0.0.1:3000/sse ADDR=127.0.0.1:4000 cargo run --example proxy
//! # only relay some event types:
//! UPSTREAM=... EVENTS=message,price cargo run --example proxy
//! curl -N http://127.0.0.1:4000/
//! ```

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use http::{header, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::net::TcpListener;
use tower_sse::{
    decode::BodyDataStream, is_event_stream, BoxError, DecodeError, Decoder, Event, EventStream,
    LastEventId, MessageEvent, SseBody,
};
use tower_sse_serve::Server;

/// What the relay does with each upstream event: forward it (possibly changed) or drop it.
pub type Transform = Arc<dyn Fn(MessageEvent) -> Option<MessageEvent> + Send + Sync>;

/// The relay's configuration, shared by all downstream clients.
pub struct Relay {
    client: Client<HttpConnector, Empty<Bytes>>,
    upstream: Uri,
    transform: Transform,
    default_retry: Duration,
}

impl Relay {
    /// A relay of `upstream` that forwards every event unchanged.
    pub fn new(upstream: Uri) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            upstream,
            transform: Arc::new(Some),
            default_retry: Duration::from_secs(3),
        }
    }

    /// Sets the filter/rewrite applied to each event.
    pub fn transform(
        mut self,
        f: impl Fn(MessageEvent) -> Option<MessageEvent> + Send + Sync + 'static,
    ) -> Self {
        self.transform = Arc::new(f);
        self
    }
}

type Upstream = EventStream<BodyDataStream<Incoming>>;

/// One downstream client's view of the upstream.
struct Session {
    relay: Arc<Relay>,
    upstream: Option<Upstream>,
    /// The last event id seen (kept across upstream reconnections).
    last_id: String,
    /// The last event id the downstream client has been sent.
    sent_id: String,
    retry: Duration,
    reconnecting: bool,
}

impl Session {
    /// `Ok(None)` when the upstream says not to reconnect.
    async fn connect(&self) -> Result<Option<Upstream>, BoxError> {
        let mut req = Request::get(self.relay.upstream.clone())
            .header(header::ACCEPT, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache");
        if !self.last_id.is_empty() {
            req = req.header(LastEventId::HEADER, self.last_id.as_str());
        }
        let res = self.relay.client.request(req.body(Empty::new())?).await?;
        if res.status() != StatusCode::OK || !is_event_stream(res.headers()) {
            // 204 means "stop"; any other answer also fails the connection for good.
            eprintln!("upstream answered {}, not reconnecting", res.status());
            return Ok(None);
        }
        let decoder = Decoder::new().with_last_event_id(self.last_id.clone());
        Ok(Some(EventStream::with_decoder(
            BodyDataStream::new(res.into_body()),
            decoder,
        )))
    }

    /// The upstream event as a downstream event, or `None` when filtered out.
    fn relay(&mut self, message: MessageEvent) -> Result<Option<Event>, BoxError> {
        let Some(message) = (self.relay.transform)(message) else {
            return Ok(None);
        };
        let mut event = Event::default().data(message.data);
        if message.event != "message" {
            event = event.event(message.event)?;
        }
        // The id persists on the client, so it is only written when it changes.
        if message.id != self.sent_id {
            event = event.id(message.id.clone())?;
            self.sent_id = message.id;
        }
        if let Some(retry) = message.retry {
            event = event.retry(retry);
        }
        Ok(Some(event))
    }

    /// The next event to send downstream; `None` ends the downstream stream.
    async fn next(&mut self) -> Option<Result<Event, BoxError>> {
        loop {
            let upstream = match &mut self.upstream {
                Some(upstream) => upstream,
                None => {
                    if self.reconnecting {
                        tokio::time::sleep(self.retry).await;
                    }
                    self.reconnecting = true;
                    match self.connect().await {
                        Ok(Some(upstream)) => self.upstream.insert(upstream),
                        Ok(None) => return None,
                        Err(err) => {
                            eprintln!("upstream connection failed: {err}");
                            continue;
                        }
                    }
                }
            };
            match upstream.next().await {
                Some(Ok(message)) => match self.relay(message) {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => {}
                    Err(err) => return Some(Err(err)),
                },
                Some(Err(DecodeError::TooLarge { limit })) => {
                    eprintln!("skipped an upstream event larger than {limit} bytes");
                }
                end => {
                    if let Some(Err(err)) = end {
                        eprintln!("upstream failed: {err}");
                    }
                    self.last_id = upstream.last_event_id().to_owned();
                    self.retry = upstream.retry().unwrap_or(self.retry);
                    self.upstream = None;
                }
            }
        }
    }
}

/// The events relayed to one downstream client that already has `last_id`.
pub fn events(
    relay: Arc<Relay>,
    last_id: String,
) -> impl Stream<Item = Result<Event, BoxError>> + Send {
    let session = Session {
        retry: relay.default_retry,
        relay,
        upstream: None,
        sent_id: last_id.clone(),
        last_id,
        reconnecting: false,
    };
    stream::unfold(session, |mut session| async move {
        let item = session.next().await?;
        Some((item, session))
    })
}

/// Serves the relay on `listener`, one upstream request per downstream client, until dropped,
/// with the crate's serving defaults (`tower_sse_serve`).
pub async fn serve(listener: TcpListener, relay: Relay) {
    let relay = Arc::new(relay);
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let last_id = LastEventId::from_request(&req)
            .map(LastEventId::into_string)
            .unwrap_or_default();
        let body = SseBody::new(Box::pin(events(relay.clone(), last_id)));
        std::future::ready(Ok::<_, Infallible>(body.into_response()))
    });
    if let Err(err) = Server::new().serve(listener, service).await {
        eprintln!("server failed: {err}");
    }
}

#[tokio::main]
async fn main() {
    let upstream: Uri = std::env::var("UPSTREAM")
        .expect("set UPSTREAM to the URL of an SSE stream")
        .parse()
        .expect("UPSTREAM is a valid URL");
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let mut relay = Relay::new(upstream);
    if let Ok(types) = std::env::var("EVENTS") {
        let types: Vec<String> = types.split(',').map(str::to_owned).collect();
        relay = relay.transform(move |event| types.contains(&event.event).then_some(event));
    }
    let listener = TcpListener::bind(&addr).await.expect("bind ADDR");
    println!("listening on http://{}", listener.local_addr().unwrap());
    serve(listener, relay).await;
}
