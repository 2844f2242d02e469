//! `SseLayer` under axum, warp and tonic, over real sockets.

mod layer_support;

use std::{convert::Infallible, time::Duration};

use axum::{routing::get as route_get, Extension, Router};
use futures_util::{stream, StreamExt};
use http::{Request, StatusCode};
use layer_support::*;
use tokio::sync::mpsc;
use tower::ServiceBuilder;
use tower_sse::{EndHandle, EndReason, Event, KeepAlive, LastEventId, SseBody, SseLayer};

fn sse_request(path: &str) -> http::request::Builder {
    Request::get(path).header("accept", "text/event-stream")
}

fn fast_heartbeats() -> SseLayer {
    SseLayer::new().keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(10))
            .text("hb"),
    )
}

fn assert_stream_headers(res: &http::Response<hyper::body::Incoming>) {
    let h = res.headers();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "no-cache, no-transform");
    assert_eq!(h["x-accel-buffering"], "no");
}

#[tokio::test]
async fn axum_sse_and_our_body_under_the_layer() {
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(Option<String>, EndHandle)>();
    let own = move |id: Option<Extension<LastEventId>>, Extension(handle): Extension<EndHandle>| {
        let seen_tx = seen_tx.clone();
        async move {
            seen_tx
                .send((id.map(|Extension(id)| id.into_string()), handle.clone()))
                .unwrap();
            let events = stream::iter([Event::message("ours")]).chain(stream::pending());
            SseBody::from_events(events)
                .with_end_handle(handle)
                .into_response()
        }
    };
    let theirs = || async {
        let events = stream::iter([Ok::<_, Infallible>(
            axum::response::sse::Event::default().data("theirs"),
        )])
        .chain(stream::pending());
        axum::response::sse::Sse::new(events)
    };
    let app = Router::new()
        .route("/own", route_get(own))
        .route("/axum", route_get(theirs))
        .layer(fast_heartbeats());
    let server = serve(app).await;

    // axum's `Sse` (no keep-alive of its own here): headers normalised, the
    // layer's heartbeats after the event.
    let mut c = get(server.addr, sse_request("/axum")).await;
    assert_stream_headers(&c.res);
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 24).await;
    assert_eq!(buf, b"data: theirs\n\n: hb\n\n: hb\n\n");
    c.conn.abort();

    // Our body: its own heartbeat (15 s) only; the extensions reach the handler.
    let mut c = get(
        server.addr,
        sse_request("/own").header("last-event-id", "7"),
    )
    .await;
    assert_stream_headers(&c.res);
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 12).await;
    assert_eq!(buf, b"data: ours\n\n");
    let (id, handle) = seen.recv().await.unwrap();
    assert_eq!(id.as_deref(), Some("7"));
    c.conn.abort();
    let report = guard("client gone", handle.ended()).await;
    assert_eq!((report.reason, report.events), (EndReason::ClientGone, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn warp_sse_through_the_layer() {
    use warp::Filter;
    let route = warp::path("sse").and(warp::get()).map(|| {
        let events = stream::iter([Ok::<_, Infallible>(
            warp::sse::Event::default().id("1").data("from warp"),
        )])
        .chain(stream::pending());
        warp::sse::reply(events)
    });
    let svc = ServiceBuilder::new()
        .layer(fast_heartbeats())
        .service(warp::service(route));
    let server = serve(svc).await;
    let mut c = get(server.addr, sse_request("/sse")).await;
    assert_stream_headers(&c.res);
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.ends_with(b": hb\n\n")).await;
    assert_eq!(buf, b"data:from warp\nid:1\n\n: hb\n\n");
    c.conn.abort();
    server.shutdown().await;
}

#[tokio::test]
async fn tonic_grpc_and_sse_on_one_port() {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };

    let (_reporter, health) = tonic_health::server::health_reporter();
    let grpc = tonic::service::Routes::new(health).into_axum_router();
    let sse = Router::new()
        .route(
            "/sse",
            route_get(|| async {
                SseBody::from_events(
                    stream::iter([Event::message("next to grpc")]).chain(stream::pending()),
                )
                .into_response()
            }),
        )
        .layer(SseLayer::new());
    // The layer wraps the SSE route only; gRPC is merged in untouched.
    let app = sse.merge(grpc);
    let server = serve(app).await;

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let res = guard(
        "grpc check",
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);

    let mut c = get(server.addr, sse_request("/sse")).await;
    assert_stream_headers(&c.res);
    let mut buf = Vec::new();
    read_until(c.res.body_mut(), &mut buf, |b| b.len() >= 20).await;
    assert_eq!(buf, b"data: next to grpc\n\n");
    c.conn.abort();
    drop(client);
    server.shutdown().await;
}
