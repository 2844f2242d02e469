//! The `axum` feature over real sockets: `SseBody` and the errors as responses,
//! `LastEventId` and `EndHandle` as handler arguments, with and without the layer.

mod layer_support;

use std::time::Duration;

use axum::{response::IntoResponse, routing::get as route, Router};
use futures_util::{stream, StreamExt};
use http::{Request, StatusCode};
use layer_support::*;
use tokio::sync::mpsc;
use tower_sse::{
    DecodeError, EndHandle, EndReason, Event, EventError, KeepAlive, LastEventId, SseBody, SseLayer,
};

fn sse_request(path: &str) -> http::request::Builder {
    Request::get(path).header("accept", "text/event-stream")
}

/// A handler declared `-> impl IntoResponse` that returns the body itself, and
/// uses `?` on a fallible event.
async fn counter(last: Option<LastEventId>) -> Result<impl IntoResponse, EventError> {
    let after = last.and_then(|id| id.as_u64()).unwrap_or(0);
    let first = Event::message(format!("after {after}")).id((after + 1).to_string())?;
    Ok(SseBody::from_events(stream::iter([first])).keep_alive(KeepAlive::disabled()))
}

async fn bad_event() -> Result<impl IntoResponse, EventError> {
    let event = Event::default().event("two\nlines")?;
    Ok(SseBody::from_events(stream::iter([event])))
}

async fn bad_json() -> Result<impl IntoResponse, EventError> {
    Err::<SseBody<tower_sse::OkEvents<stream::Empty<Event>>>, _>(EventError::Json(
        "secret data 1234".into(),
    ))
}

async fn bad_upstream() -> Result<&'static str, DecodeError> {
    Err(DecodeError::TooLarge { limit: 8 })
}

async fn required(id: LastEventId) -> String {
    id.into_string()
}

fn app() -> Router {
    Router::new()
        .route("/count", route(counter))
        .route("/bad-event", route(bad_event))
        .route("/bad-json", route(bad_json))
        .route("/bad-upstream", route(bad_upstream))
        .route("/required", route(required))
}

#[tokio::test]
async fn body_is_a_response_and_last_event_id_an_argument_without_the_layer() {
    let server = serve(app()).await;
    // A browser's first connection: no id.
    let res = get(server.addr, sse_request("/count")).await.res;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["cache-control"], "no-cache, no-transform");
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"id: 1\ndata: after 0\n\n"
    );
    // A reconnect: the header.
    let req = sse_request("/count").header("last-event-id", "41");
    let res = get(server.addr, req).await.res;
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"id: 42\ndata: after 41\n\n"
    );
    // A page resuming with the query fallback.
    let res = get(server.addr, sse_request("/count?lastEventId=7"))
        .await
        .res;
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"id: 8\ndata: after 7\n\n"
    );
    // A hostile value is absent, not an error.
    let req = sse_request("/count").header("last-event-id", "4\t2");
    let res = get(server.addr, req).await.res;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"id: 1\ndata: after 0\n\n"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn last_event_id_from_the_layer() {
    let server = serve(app().layer(SseLayer::new())).await;
    let req = sse_request("/count").header("last-event-id", "9");
    let res = get(server.addr, req).await.res;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"id: 10\ndata: after 9\n\n"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn required_last_event_id_rejects_with_400() {
    let server = serve(app().layer(SseLayer::new())).await;
    let res = get(server.addr, Request::get("/required")).await.res;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"missing or invalid last-event-id"
    );
    let req = Request::get("/required").header("last-event-id", "abc");
    let res = get(server.addr, req).await.res;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(read_to_end(res.into_body()).await, b"abc");
    server.shutdown().await;
}

#[tokio::test]
async fn errors_are_responses() {
    let server = serve(app()).await;
    let res = get(server.addr, sse_request("/bad-event")).await.res;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"event type contains a line break"
    );
    // The serializer's message is not sent: it may quote the data.
    let res = get(server.addr, sse_request("/bad-json")).await.res;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"event data could not be serialized to JSON"
    );
    let res = get(server.addr, Request::get("/bad-upstream")).await.res;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        read_to_end(res.into_body()).await,
        b"event larger than the limit of 8 bytes"
    );
    server.shutdown().await;
}

/// What an `EndHandle` handler saw, and its stream's report.
type Seen = (bool, EndHandle);

fn watched(tx: mpsc::UnboundedSender<Seen>) -> Router {
    let handler = move |layer: Option<EndHandle>, end: EndHandle| {
        let tx = tx.clone();
        async move {
            tx.send((layer.is_some(), end.clone())).unwrap();
            let events = stream::iter([Event::message("hi")]).chain(stream::pending());
            SseBody::from_events(events).with_end_handle(end)
        }
    };
    Router::new().route("/watched", route(handler))
}

/// Reads the first event, then closes the connection.
async fn client_leaves(addr: std::net::SocketAddr, req: http::request::Builder) {
    let mut client = get(addr, req).await;
    assert_eq!(client.res.status(), StatusCode::OK);
    let mut buf = Vec::new();
    read_until(client.res.body_mut(), &mut buf, |b| b.ends_with(b"\n\n")).await;
    assert_eq!(buf, b"data: hi\n\n");
    client.conn.abort();
}

#[tokio::test]
async fn end_handle_never_answers_500() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let layer = SseLayer::new().keep_alive(KeepAlive::new().interval(Duration::from_secs(60)));
    let server = serve(watched(tx).layer(layer)).await;

    // `curl` or `fetch` without `Accept: text/event-stream`: the layer makes a
    // handle for every request, and it reports the end.
    client_leaves(server.addr, Request::get("/watched")).await;
    let (from_layer, end) = guard("handler", seen.recv()).await.unwrap();
    assert!(from_layer);
    let report = guard("end report", end.ended()).await;
    assert_eq!(report.reason, EndReason::ClientGone);
    assert_eq!(report.events, 1);

    // An `EventSource`: the layer's handle.
    client_leaves(server.addr, sse_request("/watched")).await;
    let (from_layer, end) = guard("handler", seen.recv()).await.unwrap();
    assert!(from_layer);
    let report = guard("end report", end.ended()).await;
    assert_eq!(report.reason, EndReason::ClientGone);
    server.shutdown().await;
}

#[tokio::test]
async fn end_handle_without_the_layer() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let server = serve(watched(tx)).await;
    client_leaves(server.addr, sse_request("/watched")).await;
    let (from_layer, end) = guard("handler", seen.recv()).await.unwrap();
    assert!(!from_layer);
    let report = guard("end report", end.ended()).await;
    assert_eq!(report.reason, EndReason::ClientGone);
    server.shutdown().await;
}

/// A body that sends heartbeats of its own, returned both ways.
fn heartbeating() -> SseBody<tower_sse::OkEvents<stream::Pending<Event>>> {
    SseBody::from_events(stream::pending()).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(5))
            .text("body"),
    )
}

#[tokio::test]
async fn into_response_and_the_inherent_method_get_the_same_heartbeats() {
    let app = Router::new()
        .route("/trait", route(|| async { heartbeating() }))
        .route(
            "/inherent",
            route(|| async { heartbeating().into_response() }),
        )
        .layer(
            SseLayer::new().keep_alive(
                KeepAlive::new()
                    .interval(Duration::from_millis(5))
                    .text("layer"),
            ),
        );
    let server = serve(app).await;
    let mut seen = Vec::new();
    for path in ["/trait", "/inherent"] {
        let mut client = get(server.addr, sse_request(path)).await;
        assert_eq!(client.res.status(), StatusCode::OK);
        let mut buf = Vec::new();
        // Three heartbeats, whichever side sends them.
        read_until(client.res.body_mut(), &mut buf, |b| {
            b.windows(2).filter(|w| w == b"\n\n").count() >= 3
        })
        .await;
        let text = String::from_utf8(buf).unwrap();
        let beats: std::collections::BTreeSet<String> =
            text.split("\n\n").take(3).map(str::to_owned).collect();
        seen.push(beats);
        client.conn.abort();
    }
    // Whichever rule decides who sends them, it is the same for both.
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    server.shutdown().await;
}
