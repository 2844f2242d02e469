//! The two requests the campaign makes, over plain HTTP/1.1 with hyper, one
//! TCP connection each (as after a reconnect through a load balancer).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::{net::TcpStream, task::JoinHandle};

use super::history::Answer;

/// A request on a fresh connection; the connection task is returned so that
/// dropping the stream can abort it.
async fn send(
    port: u16,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(hyper::Response<Incoming>, JoinHandle<()>), String> {
    let exchange = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        match sender.send_request(req).await {
            Ok(res) => Ok((res, conn)),
            Err(e) => {
                conn.abort();
                Err(format!("request: {e}"))
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no response head within {timeout:?}"))?
}

/// An open event stream: its body and the connection task (aborted on drop).
pub struct Stream {
    pub body: Incoming,
    conn: JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// `GET /sse?room=R&name=N` as an `EventSource` sends it.
pub async fn open_sse(
    port: u16,
    room: &str,
    name: &str,
    last_id: Option<&str>,
) -> Result<Stream, String> {
    let mut req = Request::get(format!("/sse?room={room}&name={name}"))
        .header("host", format!("127.0.0.1:{port}"))
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache");
    if let Some(last) = last_id {
        req = req.header("last-event-id", last);
    }
    let req = req.body(Full::default()).map_err(|e| e.to_string())?;
    let (res, conn) = send(port, req, Duration::from_secs(5)).await?;
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if res.status() != StatusCode::OK || !content_type.starts_with("text/event-stream") {
        let status = res.status();
        let body = tokio::time::timeout(Duration::from_secs(2), res.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        conn.abort();
        return Err(format!("{status} {content_type}: {body}"));
    }
    Ok(Stream {
        body: res.into_body(),
        conn,
    })
}

/// `POST /send` with an `Idempotency-Key`; any failure to get an answer is
/// [`Answer::Transport`].
pub async fn post(port: u16, body: &Value, key: &str) -> Answer {
    let req = Request::post("/send")
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_string())));
    let req = match req {
        Ok(req) => req,
        Err(e) => return Answer::Other(0, e.to_string()),
    };
    let exchange = async {
        let (res, conn) = send(port, req, Duration::from_secs(5)).await?;
        let status = res.status();
        let bytes = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
            .await
            .map_err(|_| "no response body within 5 s".to_owned())?
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        conn.abort();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = match exchange.await {
        Ok(answer) => answer,
        Err(e) => return Answer::Transport(e),
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match status {
        StatusCode::ACCEPTED => {
            match serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
            {
                Some(id) => Answer::Accepted(id),
                None => Answer::Other(202, format!("a 202 without an id: {text}")),
            }
        }
        StatusCode::SERVICE_UNAVAILABLE => Answer::Unavailable,
        other => Answer::Other(other.as_u16(), text),
    }
}
