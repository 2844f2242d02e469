//! The `proxy` example, run in-process against a real upstream hyper server and a real client,
//! all over TCP on 127.0.0.1.

#[allow(dead_code)]
#[path = "../examples/proxy.rs"]
mod proxy;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, sync::oneshot};
use tower_sse::EventStream;

type Body = BoxBody<Bytes, Infallible>;

/// Sends on drop: tells the test the upstream response body was dropped.
struct DropGuard(Option<oneshot::Sender<()>>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A `text/event-stream` response sending `chunks`, then either ending or staying open.
fn sse(chunks: &[&'static str], stay_open: Option<DropGuard>) -> Response<Body> {
    let frames = stream::iter(
        chunks
            .iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect::<Vec<_>>(),
    );
    let body = match stay_open {
        Some(guard) => BodyExt::boxed(StreamBody::new(frames.chain(stream::pending()).map(
            move |frame| {
                let _keep = &guard;
                frame
            },
        ))),
        None => BodyExt::boxed(StreamBody::new(frames)),
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}

/// Serves `handler` on 127.0.0.1:0, HTTP/1.1.
async fn upstream<F>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<Body> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            let service = hyper::service::service_fn(move |req| {
                std::future::ready(Ok::<_, Infallible>(handler(req)))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service),
            );
        }
    });
    addr
}

async fn start_proxy(relay: proxy::Relay) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy::serve(listener, relay));
    addr
}

async fn get(addr: SocketAddr, last_event_id: Option<&str>) -> Response<Incoming> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{addr}/")).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap()
}

fn last_event_id_header(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn relays_filters_reconnects_and_ends_upstream_when_client_leaves() {
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    let connections = AtomicUsize::new(0);
    let (dropped_tx, dropped_rx) = oneshot::channel();
    let dropped_tx = Mutex::new(Some(dropped_tx));
    let upstream_addr = upstream({
        let seen_ids = seen_ids.clone();
        move |req| {
            seen_ids.lock().unwrap().push(last_event_id_header(&req));
            match connections.fetch_add(1, Ordering::SeqCst) {
                // Ends after an id-only block: the reconnection must resume from id 2.
                0 => sse(
                    &[
                        "retry: 50\nid: 1\ndata: one\n\n",
                        "event: private\ndata: secret\n\n",
                        "id: 2\n\n",
                    ],
                    None,
                ),
                1 => sse(
                    &["data: two\n\n", "event: price\ndata: 3\n\n"],
                    Some(DropGuard(dropped_tx.lock().unwrap().take())),
                ),
                _ => Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Empty::new().boxed())
                    .unwrap(),
            }
        }
    })
    .await;

    let relay = proxy::Relay::new(format!("http://{upstream_addr}/").parse().unwrap())
        .transform(|event| (event.event != "private").then_some(event));
    let proxy_addr = start_proxy(relay).await;

    let res = get(proxy_addr, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut events = EventStream::new(res.into_body());

    let one = events.next().await.unwrap().unwrap();
    assert_eq!(
        (one.event.as_str(), one.data.as_str(), one.id.as_str()),
        ("message", "one", "1")
    );
    assert_eq!(one.retry, Some(Duration::from_millis(50)));
    // "secret" is filtered out; the upstream ends and the relay reconnects.
    let two = events.next().await.unwrap().unwrap();
    assert_eq!((two.data.as_str(), two.id.as_str()), ("two", "2"));
    let three = events.next().await.unwrap().unwrap();
    assert_eq!(
        (three.event.as_str(), three.data.as_str(), three.id.as_str()),
        ("price", "3", "2")
    );
    assert_eq!(
        *seen_ids.lock().unwrap(),
        [None, Some("2".to_owned())],
        "Last-Event-ID sent upstream on reconnect"
    );

    // The downstream client leaves: the upstream response must be dropped too.
    drop(events);
    tokio::time::timeout(Duration::from_secs(5), dropped_rx)
        .await
        .expect("upstream body dropped after the client left")
        .unwrap();
    assert_eq!(
        seen_ids.lock().unwrap().len(),
        2,
        "no reconnect after leaving"
    );
}

#[tokio::test]
async fn passes_the_clients_last_event_id_and_stops_on_204() {
    let seen_ids = Arc::new(Mutex::new(Vec::new()));
    let upstream_addr = upstream({
        let seen_ids = seen_ids.clone();
        move |req| {
            seen_ids.lock().unwrap().push(last_event_id_header(&req));
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Empty::new().boxed())
                .unwrap()
        }
    })
    .await;
    let proxy_addr = start_proxy(proxy::Relay::new(
        format!("http://{upstream_addr}/").parse().unwrap(),
    ))
    .await;

    let res = get(proxy_addr, Some("41")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut events = EventStream::new(res.into_body());
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("the relay ends when the upstream answers 204");
    assert!(end.is_none());
    assert_eq!(*seen_ids.lock().unwrap(), [Some("41".to_owned())]);
}

#[tokio::test]
async fn does_not_repeat_ids_the_client_already_has() {
    let upstream_addr = upstream(|_| {
        sse(
            &["id: 7\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n"],
            Some(DropGuard(None)),
        )
    })
    .await;
    let proxy_addr = start_proxy(proxy::Relay::new(
        format!("http://{upstream_addr}/").parse().unwrap(),
    ))
    .await;
    let res = get(proxy_addr, None).await;
    let mut body = res.into_body();
    let mut wire = Vec::new();
    while !wire.ends_with(b"data: c\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            wire.extend_from_slice(&data);
        }
    }
    let wire = String::from_utf8(wire).unwrap();
    assert!(
        wire.ends_with("id: 7\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n"),
        "{wire:?}"
    );
}
