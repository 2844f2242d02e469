//! Real sockets for the layer's tests: a hyper-util server (HTTP/1.1 and h2c) on
//! 127.0.0.1:0 with graceful shutdown, and hyper clients.
#![allow(dead_code)]

use std::{convert::Infallible, error::Error, future::Future, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tower::Service;

pub type BoxError = Box<dyn Error + Send + Sync>;

/// A hang guard: generous, never a timing assertion.
pub async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("hung: {what}"))
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Starts a hyper graceful shutdown and waits until every connection closed.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        guard("graceful shutdown", self.task).await.unwrap();
    }
}

/// Serves a tower service over HTTP/1.1 and h2c (hyper-util's auto builder).
pub async fn serve<S, B>(service: S) -> Server
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                Ok((tcp, _)) = listener.accept() => {
                    let svc = TowerToHyperService::new(service.clone());
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc).into_owned();
                    tokio::spawn(graceful.watch(conn));
                }
                _ = &mut stopped => break,
            }
        }
        graceful.shutdown().await;
    });
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A client connection; abort `conn` to close the socket.
pub struct Client {
    pub conn: JoinHandle<()>,
    pub res: Response<Incoming>,
    /// HTTP/2 only: the connection's sender, kept so the connection stays open.
    pub h2: Option<hyper::client::conn::http2::SendRequest<Empty<Bytes>>>,
}

/// Sends one HTTP/1.1 request on a new connection.
pub async fn get(addr: SocketAddr, req: http::request::Builder) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = req
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = guard("response head", sender.send_request(req))
        .await
        .unwrap();
    Client {
        conn,
        res,
        h2: None,
    }
}

/// Sends one HTTP/2 request (prior knowledge, h2c) on a new connection.
pub async fn get_h2(addr: SocketAddr, req: http::request::Builder) -> Client {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = format!("http://{addr}{}", req.uri_ref().unwrap());
    let req = req.uri(uri).body(Empty::<Bytes>::new()).unwrap();
    let res = guard("response head", sender.send_request(req))
        .await
        .unwrap();
    Client {
        conn,
        res,
        h2: Some(sender),
    }
}

/// Reads body bytes into `buf` until `done(buf)`; panics if the body ends first.
pub async fn read_until(body: &mut Incoming, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    guard("reading the body", async {
        while !done(buf) {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        buf.extend_from_slice(data);
                    }
                }
                other => panic!(
                    "body ended ({:?}) with {:?}",
                    other.map(|r| r.is_ok()),
                    String::from_utf8_lossy(buf)
                ),
            }
        }
    })
    .await
}

/// Reads the body to its end.
pub async fn read_to_end(body: Incoming) -> Vec<u8> {
    guard("reading to the end", body.collect())
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// A hand-made streaming body, fed frame by frame through the sender.
pub type Channel =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

pub fn channel() -> (tokio::sync::mpsc::UnboundedSender<&'static str>, Channel) {
    use futures_util::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(|s| Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
        .boxed();
    (tx, StreamBody::new(stream))
}

/// A response with an SSE content type around any body.
pub fn sse<B>(body: B) -> Response<B> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap()
}
