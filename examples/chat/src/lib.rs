//! A chat over Server-Sent Events: rooms, presence, replay on reconnect.
//!
//! ```text
//! cargo run --example chat    # or: cargo run -p tower-sse-chat
//! # then open http://127.0.0.1:3000 in two browser windows
//! ```
//!
//! Environment: `ADDR` (default `127.0.0.1:3000`), `HEARTBEAT_MS` (default
//! `15000`), and `TLS=1` to serve HTTPS with HTTP/2 on the same address (ALPN
//! `h2` and `http/1.1`), so that a browser can keep more than six streams open to
//! it: with a certificate generated at start (self-signed for `localhost` and the
//! address), or the PEM files `TLS_CERT` and `TLS_KEY`.
//!
//! Several nodes: `REDIS_URL` (one URL, or
//! several separated by commas over which rooms are spread) makes this process
//! one node of a cluster, behind any load balancer and without sticky sessions:
//! a message posted to any node reaches every member on every node, and a
//! client resumes with `Last-Event-ID` on any node. Presence is shared too; the
//! members of a node that dies are announced as `leave` by a surviving node
//! after `PRESENCE_TTL_MS` (default `30000`), and those of a node that was only
//! cut off from Redis (or paused) that long are announced as `join` again by it
//! when it is back. `REDIS_CLUSTER_URL` (one or more seed nodes of a Redis
//! Cluster, Redis 7 or later) does the same on a cluster: each room is one hash
//! slot, on its master, with sharded Pub/Sub; a resharding or a master restart
//! makes no client reconnect (see `RedisConfig::cluster`). Without either
//! (or `NATS_URL`) everything stays in this process.
//!
//! ```text
//! ADDR=127.0.0.1:3001 REDIS_URL=redis://127.0.0.1:6379 cargo run --example chat
//! ADDR=127.0.0.1:3002 REDIS_URL=redis://127.0.0.1:6379 cargo run --example chat
//! # or, on a Redis Cluster:
//! ADDR=127.0.0.1:3001 REDIS_CLUSTER_URL=redis://127.0.0.1:7000,redis://127.0.0.1:7001 cargo run --example chat
//! ```
//!
//! - `GET /`: the page (`examples/chat/src/index.html`, no CDN, no build step).
//! - `GET /sse?room=ROOM&name=NAME`: the event stream, both parameters optional
//!   (room `lobby`, a generated guest name). Events: `members` (a snapshot for
//!   this connection, `{"room","you","names","as_of"}`, whose `id:` is the room's
//!   last id so a reconnect resumes from it), then `message`, `join`, `leave`,
//!   and the hub's `reset`/`gap` notices, each with the room's `id:`. Above
//!   `PRESENCE_FULL_MAX` members (default 1 000), a room sends `count` events
//!   and announces crossing the threshold with `presence` instead of a `join`
//!   and a `leave` per member, and its snapshot carries `count` and at most
//!   that many names (see [`room`]). Ids are
//!   opaque strings (`42-0fk3m9vq`: the room's offset and epoch). A reconnect
//!   with `Last-Event-ID` (or `?lastEventId=`) gets what it missed first, then a
//!   fresh `members` snapshot that supersedes the presence events before it. The
//!   room's history outlives its members for ten minutes.
//! - `GET /sse?room=a&room=b&name=NAME`: one stream for several rooms (up to
//!   64): a `members` snapshot per room, every room's events, and composite ids
//!   (`m1.…`) that resume every room exactly; a single room keeps its own ids.
//! - `POST /send` with `{"room", "name", "text"}` and `Content-Type:
//!   application/json`: `202 {"id": "..."}` once the message is stored; another
//!   content type gets `415` (a foreign page cannot post JSON without a CORS
//!   preflight, which this server does not answer), bad input `400` (or `413`),
//!   a body not complete within 10 s `408`, each with `{"error": "..."}`, and
//!   nothing is broadcast; `503` `{"error": "..."}` with `retry-after` when the
//!   hub cannot store it (Redis unreachable, paused or too slow): not stored,
//!   unless the connection to Redis lost the answer of a publish that ran. An
//!   `Idempotency-Key` header (1 to 128 visible ASCII characters) makes a
//!   retry exact: a `/send` with a key already used in the room within five
//!   minutes is answered `202` with the first message's id and stores nothing,
//!   so a client retries a `503` or a lost answer with the same key. The page
//!   sends one per message.
//! - A subscribe that cannot be served (Redis unreachable, or this node holds
//!   as many rooms as it may, all in use) answers an `EventSource` (`Accept:
//!   text/event-stream`) with a stream that carries `event: unavailable`
//!   (`{"error"}`) and `retry: 2000`, then ends, so that the browser comes back
//!   in 2 s with its `Last-Event-ID` (a `503` would end it for good); other
//!   clients get `503` with `retry-after`.
//! - `GET /metrics`: Prometheus text (`chat_messages_posted_total`, and the
//!   crate's own metrics when it is built with its `metrics` feature).
//! - `GET /favicon.ico`: the icon.
//!
//! Limits: 10 000 concurrent streams (`503` with `retry-after` past it); over
//! plain HTTP, [`tower_sse_serve::Server`]'s defaults (a 10 s header read
//! timeout, a 30 s write timeout that cuts off a member that stopped reading,
//! and so its `leave`, 100 HTTP/2 streams per connection).
//!
//! Only the crates' public API is used: [`Hub`](tower_sse_hub::Hub) for rooms and replay,
//! [`SseLayer`](tower_sse::SseLayer) for heartbeats and `Last-Event-ID`,
//! [`SseBody::on_end`](tower_sse::SseBody::on_end) for
//! presence (a `leave` as soon as the connection closes, or at the first failed
//! heartbeat when the client vanished without closing it).
//!
//! # The application, by concern
//!
//! - [`config`]: the environment (`ADDR`, `HEARTBEAT_MS`, `TLS`, `REDIS_URL`,
//!   `REDIS_CLUSTER_URL`, `NATS_URL`, `PRESENCE_TTL_MS`, `PRESENCE_FULL_MAX`,
//!   `MAX_STREAMS`).
//! - [`cluster`]: the hub and presence, in this process, on Redis or on NATS,
//!   and the task that announces the members of nodes that died.
//! - [`room`]: a room's members, their snapshot and the batched `join` and
//!   `leave` events.
//! - [`routes`]: the HTTP routes (`/`, `/sse`, `/send`, `/metrics`,
//!   `/favicon.ico`) and their input checks.
//! - [`metrics`]: the Prometheus exporter.
//! - [`tls`]: HTTPS with HTTP/2, from PEM files or a certificate made at start.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod metrics;
pub mod room;
pub mod routes;
pub mod tls;

use tower_sse::Shutdown;

pub use crate::{
    routes::{app, app_with, app_with_options, Options},
    tls::{pem_files, self_signed, serve_tls, tls_server_config},
};

/// Runs the chat as `cargo run --example chat` does: reads the environment,
/// listens on `ADDR`, prints `listening on http://ADDR` (or `https://`), and
/// serves until Ctrl-C.
///
/// # Errors
///
/// A bad setting in the environment, or an address that cannot be bound.
pub async fn run() -> std::io::Result<()> {
    let config = config::Config::from_env()?;
    // The recorder first: the hub looks up its counters when it is made.
    metrics::prometheus();
    let (hub, presence) = cluster::connect(&config).await?;
    // An accept queue of 4 096: a join storm waits in it instead of being dropped.
    let listener = tower_sse_serve::bind(&config.addr).await?;
    let local = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let shared = config.redis_url.is_some()
        || config.redis_cluster_url.is_some()
        || config.nats_url.is_some();
    let options = Options {
        heartbeat: config.heartbeat,
        presence_full_max: config.presence_full_max,
        max_streams: config.max_streams,
        announce_expired: shared.then(|| config.presence_ttl / 3),
    };
    let app = app_with_options(&options, &shutdown, hub, presence);
    tokio::spawn(metrics::upkeep());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Ends the open streams, so that graceful shutdown can complete; a
        // connection still open after the grace period (10 s) is closed.
        stop.trigger();
    });
    if config.tls {
        let tls = tls::tls_config(local)?;
        println!("listening on https://{local}");
        serve_tls(listener, app, tls, &shutdown).await
    } else {
        println!("listening on http://{local}");
        server(&shutdown).serve(listener, app).await
    }
}

/// The crate's serving defaults, over plain TCP and over TLS alike: a vanished
/// member's `leave` within the heartbeat plus 30 s, a frozen reader's within
/// 30 s, a header read timeout, bounded buffers.
pub(crate) fn server(shutdown: &Shutdown) -> tower_sse_serve::Server {
    tower_sse_serve::Server::new()
        // Frames queued, not copied into one buffer per connection: in the
        // 5 000-member join storm (`tools/storm.sh`) that was 18 KiB per
        // member instead of 43, and with the snapshots' shared member list
        // (which queued frames keep shared) 14.8 KiB. HTTP/1.1 streams are now
        // written without hyper's buffers (8.5 KiB per member); this still
        // applies to an HTTP/1.0 client's stream.
        .writev(true)
        .with_shutdown(shutdown)
}

pub(crate) fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}
