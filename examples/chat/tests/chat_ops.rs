//! The chat example's operational routes and HTTPS serving, over real sockets:
//! `/metrics` in Prometheus text, `/favicon.ico`, and HTTP/2 by ALPN with many
//! streams on one connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower_sse::{EventStream, Shutdown};

/// Hang guard for anything awaited: generous, never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

async fn plain_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chat::app(Duration::from_secs(15), &Shutdown::new());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One HTTP/1.1 request on a new connection; the status, content type and body.
async fn fetch(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, String, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = guard("response", sender.send_request(req)).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = guard("body", res.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, content_type, body)
}

fn post(text: &str) -> Request<Full<Bytes>> {
    let body = serde_json::json!({"room": "ops", "name": "op", "text": text}).to_string();
    Request::post("/send")
        .header("host", "chat")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "chat")
        .body(Full::default())
        .unwrap()
}

/// The value of an unlabelled counter in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_posted_messages() {
    let addr = plain_server().await;
    // The recorder is global to the test binary: compare before and after.
    let (_, _, before) = fetch(addr, get("/metrics")).await;
    let before = std::str::from_utf8(&before).unwrap();
    let published_before = counter(before, "sse_hub_published_total");
    let before = counter(before, "chat_messages_posted_total");
    for text in ["one", "two"] {
        let (status, _, _) = fetch(addr, post(text)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    // A refused message is not counted.
    let (status, _, _) = fetch(addr, post("")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, content_type, body) = fetch(addr, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains("# TYPE chat_messages_posted_total counter\n"),
        "{text}"
    );
    let after = counter(text, "chat_messages_posted_total").unwrap();
    assert!(after >= before.unwrap_or(0) + 2, "{before:?} -> {after}");
    // The hub's own counter (its recorder installed before the hub was made).
    let published = counter(text, "sse_hub_published_total").unwrap();
    assert!(
        published >= published_before.unwrap_or(0) + 2,
        "{published_before:?} -> {published}"
    );
}

#[tokio::test]
async fn favicon_is_served() {
    let addr = plain_server().await;
    let (status, content_type, body) = fetch(addr, get("/favicon.ico")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/x-icon");
    // An ICO header (reserved 0, type 1 = icon, one image) around a PNG.
    assert_eq!(&body[..6], &[0, 0, 1, 0, 1, 0]);
    assert_eq!(&body[22..30], b"\x89PNG\r\n\x1a\n");
    let (_, _, page) = fetch(addr, get("/")).await;
    assert!(std::str::from_utf8(&page)
        .unwrap()
        .contains(r#"<link rel="icon" href="/favicon.ico""#));
}

/// A chat served over TLS with a fresh self-signed certificate, and a client
/// configuration that trusts it and offers `alpn`.
struct TlsServer {
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

async fn tls_server(alpn: &[&[u8]]) -> TlsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (certs, key) = chat::self_signed(addr.ip()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs[0].clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let server = chat::tls_server_config(certs, key).unwrap();
    let shutdown = Shutdown::new();
    let app = chat::app(Duration::from_secs(15), &shutdown);
    let stop = shutdown.clone();
    let task =
        tokio::spawn(async move { chat::serve_tls(listener, app, server, &stop).await.unwrap() });
    TlsServer {
        addr,
        client: Arc::new(client),
        shutdown,
        task,
    }
}

async fn tls_connect(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    guard(
        "TLS handshake",
        tokio_rustls::TlsConnector::from(client).connect(name, tcp),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn https_serves_ten_streams_on_one_http2_connection() {
    let server = tls_server(&[b"h2", b"http/1.1"]).await;
    let addr = server.addr;
    let tls = tls_connect(addr, server.client.clone()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    // Ten EventSources of one page: ten streams of one connection.
    let mut streams = Vec::new();
    for n in 0..10 {
        let req = Request::get(format!("https://{addr}/sse?room=h2&name=tab{n}"))
            .header("accept", "text/event-stream")
            .body(Full::<Bytes>::default())
            .unwrap();
        let res = guard("stream head", sender.clone().send_request(req))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.version(), http::Version::HTTP_2);
        let mut events = EventStream::new(res.into_body());
        let first = guard("members", events.next()).await.unwrap().unwrap();
        assert_eq!(first.event, "members");
        streams.push(events);
    }
    // A message posted on the same connection reaches every one of them.
    let body = serde_json::json!({"room": "h2", "name": "tab0", "text": "to all ten"});
    let req = Request::post(format!("https://{addr}/send"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = guard("post", sender.clone().send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    for events in &mut streams {
        loop {
            let event = guard("message", events.next()).await.unwrap().unwrap();
            if event.event == "message" {
                let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(data["text"], "to all ten");
                break;
            }
        }
    }
}

#[tokio::test]
async fn https_serves_http1_to_clients_without_h2() {
    let server = tls_server(&[b"http/1.1"]).await;
    let tls = tls_connect(server.addr, server.client.clone()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = guard("favicon", sender.send_request(get("/favicon.ico")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_11);
}

#[tokio::test]
async fn https_ends_streams_and_stops_on_shutdown() {
    let server = tls_server(&[b"h2"]).await;
    let addr = server.addr;
    let tls = tls_connect(addr, server.client.clone()).await;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("https://{addr}/sse?room=bye"))
        .header("accept", "text/event-stream")
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = guard("stream head", sender.clone().send_request(req))
        .await
        .unwrap();
    let mut events = EventStream::new(res.into_body());
    assert_eq!(
        guard("members", events.next())
            .await
            .unwrap()
            .unwrap()
            .event,
        "members"
    );
    // What `main` does on Ctrl-C: stop accepting, end the streams.
    server.shutdown.trigger();
    // The stream ends cleanly, the server closes the connection and returns.
    while let Some(event) = guard("end of stream", events.next()).await {
        event.unwrap();
    }
    guard("server stopped", server.task).await.unwrap();
    guard("connection closed", conn).await.unwrap().unwrap();
    drop(sender);
}

#[test]
fn certificate_and_key_from_pem_files() {
    let dir = std::env::temp_dir().join(format!("tower-sse-chat-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let (certs, key) = chat::pem_files(&cert_path, &key_path).unwrap();
    assert_eq!(certs, [cert.der().clone()]);
    assert!(chat::tls_server_config(certs, key).is_ok());

    // Missing, swapped or empty files are errors that name the file, not panics.
    let missing = dir.join("missing.pem");
    let err = chat::pem_files(&missing, &key_path).unwrap_err();
    assert!(err.to_string().starts_with("TLS_CERT"), "{err}");
    let err = chat::pem_files(&key_path, &cert_path).unwrap_err();
    assert!(err.to_string().contains("TLS_CERT"), "{err}");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = chat::pem_files(&cert_path, &empty).unwrap_err();
    assert!(err.to_string().starts_with("TLS_KEY"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
