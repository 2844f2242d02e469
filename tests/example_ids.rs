//! The examples that count ids from `Last-Event-ID` (`axum.rs`, `hyper.rs`)
//! never wrap: a cursor near `u64::MAX` starts the stream over, over real
//! sockets.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod axum_example;
#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod hyper_example;

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_sse::{LastEventId, SseLayer};
use tower_sse_serve::Server;

async fn serve_axum() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/sse", axum::routing::get(axum_example::ours))
        .layer(SseLayer::new());
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn serve_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(SseLayer::new())
        .service_fn(hyper_example::handle);
    let svc = tower::ServiceBuilder::new()
        .map_response(|res: http::Response<_>| res)
        .map_err(|e: Infallible| e)
        .service(svc);
    tokio::spawn(Server::new().serve(listener, svc));
    addr
}

/// The id of the first event of `/sse` after `last`.
async fn first_id(addr: SocketAddr, last: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/sse")
        .header("host", "x")
        .header("accept", "text/event-stream")
        .header("last-event-id", last)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        use eventsource_stream::Eventsource;
        let mut events = res.into_body().into_data_stream().eventsource();
        events.next().await.unwrap().unwrap()
    });
    res.await.expect("hung: the first event").id
}

#[tokio::test]
async fn ids_near_the_end_of_u64_start_over_and_others_resume() {
    for addr in [serve_axum().await, serve_hyper().await] {
        assert_eq!(first_id(addr, "41").await, "42");
        for last in [
            "18446744073709551614",
            "18446744073709551615",
            "18446744073709551616",
            "9007199254740992",
            "-1",
            "x",
        ] {
            assert_eq!(first_id(addr, last).await, "1", "{last}");
        }
        assert_eq!(first_id(addr, "9007199254740990").await, "9007199254740991");
    }
}

#[test]
fn resume_points() {
    let id = LastEventId::parse;
    assert_eq!(axum_example::resume_after(None), 0);
    assert_eq!(axum_example::resume_after(id("7").as_ref()), 7);
    assert_eq!(
        axum_example::resume_after(id("18446744073709551615").as_ref()),
        0
    );
}
