//! One Redis server of the store: a multiplexed connection for commands (which
//! reconnects by itself, with short timeouts so that a publish fails fast), the
//! queue of publishes to this server (sent in batches: [`Batcher`]) and a
//! Pub/Sub connection kept by a task that reconnects with backoff, subscribes
//! again to every channel this node uses, and asks each topic to look for what
//! it missed meanwhile.

use std::{sync::Arc, time::Duration};

use ::redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Client, ErrorKind, RedisError, Script,
};
use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use tower_sse_hub::remote::Feed;

use crate::{
    batch::{Batcher, Limits},
    channels::{lock, Channels, Control, Routes},
    connection::Conn,
    renewals::Renewals,
    scripts::{self, Publish, Published},
};

/// One Redis server.
pub(super) struct Server {
    /// The address without credentials, for messages.
    pub(super) name: String,
    pub(super) commands: ConnectionManager,
    /// The publishes queued for this server, sent as one script call each
    /// batch; each answered with what the script did and Redis's clock (ms).
    publishes: Batcher<Publish, PublishResult>,
    /// This server's clock (see [`Clock`]).
    pub(super) clock: Clock,
    /// The channels this node follows on this server.
    pub(super) channels: Channels,
}

/// What one publish got: what the script did with it and Redis's clock (ms),
/// or the error of its batch's call.
pub(super) type PublishResult = Result<(Published, u64), RedisError>;

/// The bounds of one batch of publishes: enough to take every publisher of a
/// busy node in one call, few enough bytes that a batch of large events does
/// not hold Redis (which runs a script alone) for long; four calls in flight,
/// so that Redis has the next call queued while the node answers the last
/// (`tools/redis_publish.sh`: 8-20 % more publishes than two, more made no
/// difference).
pub(super) const BATCH: Limits = Limits {
    items: 64,
    bytes: 512 * 1024,
    calls: 4,
};

/// What this node knows of one Redis server's clock: a publish's deadline is
/// set on it, so that Redis refuses to store a publish its node gave up on.
///
/// Each reply carries Redis's time when the script ran; that time minus this
/// node's when the reply arrived is Redis's clock minus ours, short by the
/// reply's delay: never too high, which is the safe side (a deadline that is
/// too early refuses a publish; one too late could store it after the node
/// gave up). The best (highest) sample of the last minute is kept, so one
/// slow reply does not shrink the next deadlines.
#[derive(Debug, Default)]
pub(super) struct Clock {
    /// `None` until the first sample; then the best skew and when the window
    /// of samples started.
    best: std::sync::Mutex<Option<(i64, std::time::Instant)>>,
}

/// How long a skew sample is kept as the best one: clocks drift slowly.
const SKEW_WINDOW: Duration = Duration::from_secs(60);

impl Clock {
    /// Redis's clock minus this node's, in ms, if known.
    pub(super) fn skew_ms(&self) -> Option<i64> {
        lock(&self.best).map(|(skew, _)| skew)
    }

    /// Records a reply: Redis's time `redis_ms` read by a script whose reply
    /// arrived at this node's `local_ms`.
    pub(super) fn sample(&self, redis_ms: u64, local_ms: u64) {
        let sample = i64::try_from(redis_ms).unwrap_or(i64::MAX)
            - i64::try_from(local_ms).unwrap_or(i64::MAX);
        let now = std::time::Instant::now();
        let mut best = lock(&self.best);
        *best = match *best {
            Some((skew, since)) if now.duration_since(since) < SKEW_WINDOW => {
                Some((skew.max(sample), since))
            }
            _ => Some((sample, now)),
        };
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("name", &self.name).finish()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the Pub/Sub connection is pinged, so that a connection that went
/// silent without closing (a peer gone, a partition) is found and replaced.
const PING_EVERY: Duration = Duration::from_secs(5);

impl Server {
    /// Opens (lazily) the connections to `url`; spawns the Pub/Sub task and
    /// the publishes' batcher, which runs `script` (the publish script), on
    /// the current runtime.
    pub(super) fn open(
        url: &str,
        timeout: Duration,
        script: Arc<Script>,
    ) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let info = client.get_connection_info();
        let name = format!("{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(MIN_BACKOFF)
            .set_max_delay(MAX_BACKOFF);
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let renewals = Arc::new(Renewals::default());
        let publishes = Batcher::spawn(BATCH, Publish::weight, {
            let commands = commands.clone();
            let renewals = renewals.clone();
            move |batch: Vec<Publish>| {
                let (script, mut conn) = (script.clone(), Conn::Server(commands.clone()));
                let renewals = renewals.clone();
                async move { send(&script, &mut conn, &batch, timeout, false, &renewals).await }
            }
        });
        let (channels, routes, rx) = Channels::new();
        tokio::spawn(pubsub(client, routes, rx, timeout, renewals));
        Ok(Self {
            name,
            commands,
            publishes,
            clock: Clock::default(),
            channels,
        })
    }

    /// Queues `publish` for the next batch to this server and waits for the
    /// batch's answer.
    pub(super) async fn publish(&self, publish: Publish) -> PublishResult {
        self.publishes
            .submit(publish)
            .await
            .unwrap_or_else(|| Err(unanswered()))
    }
}

/// Sends one batch of publishes within `timeout` (with `SPUBLISH` when
/// `sharded`), renewing the topics' keys as `renewals` says: one answer per
/// publish, in order; an error of the call (a lost connection, no answer in
/// time) is every publish's.
pub(super) async fn send(
    script: &Script,
    conn: &mut Conn,
    batch: &[Publish],
    timeout: Duration,
    sharded: bool,
    renewals: &Renewals,
) -> Vec<PublishResult> {
    let call = scripts::publish(script, conn, batch, sharded, renewals);
    let failed = match tokio::time::timeout(timeout, call).await {
        Ok(Ok((answers, now))) => {
            return answers
                .into_iter()
                .map(|answer| answer.map(|published| (published, now)))
                .collect()
        }
        Ok(Err(err)) => err,
        Err(_) => RedisError::from((ErrorKind::Io, "Redis did not answer in time")),
    };
    renewals.forget();
    vec![Err(failed); batch.len()]
}

/// What a publish whose batcher dropped it unanswered gets.
pub(super) fn unanswered() -> RedisError {
    RedisError::from((
        ErrorKind::Io,
        "the publish was dropped unanswered (the runtime is shutting down)",
    ))
}

/// Keeps the Pub/Sub connection: connects, subscribes to every routed channel,
/// tells every feeder to resync, then routes messages until the connection
/// drops; ends when the server is dropped. A connection lost makes the node
/// forget its `renewals`: it may be Redis restarting, perhaps from an older
/// snapshot whose keys expire sooner, and the commands connection may come
/// back without a call failing (it reconnects by itself on RESP3), so this
/// side, which always holds a connection, tells too.
async fn pubsub(
    client: Client,
    routes: Routes,
    mut control: mpsc::UnboundedReceiver<Control>,
    timeout: Duration,
    renewals: Arc<Renewals>,
) {
    let mut backoff = MIN_BACKOFF;
    // Subscribers waiting for a confirmation while the connection is down.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let connected = match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(conn)) => Some(conn.split()),
            _ => None,
        };
        let Some((mut sink, mut stream)) = connected else {
            // Wait for the backoff, taking requests meanwhile: their channels
            // are in the routes and will be subscribed on reconnection.
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    request = control.recv() => match request {
                        None => return,
                        Some(Control::Subscribe(_, reply)) => waiting.push(reply),
                        Some(Control::Unsubscribe(_)) => {}
                    },
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        };
        let channels: Vec<String> = lock(&routes).keys().cloned().collect();
        if !channels.is_empty() {
            let subscribed = tokio::time::timeout(timeout, sink.subscribe(&channels)).await;
            if !matches!(subscribed, Ok(Ok(()))) {
                renewals.forget();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        backoff = MIN_BACKOFF;
        for feed in lock(&routes).values() {
            feed.send(Feed::Resync);
        }
        for reply in waiting.drain(..) {
            let _ = reply.send(());
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(timeout, sink.ping::<::redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break;
                    }
                }
                message = next(&mut stream) => match message {
                    Some(message) => {
                        let routes = lock(&routes);
                        if let Some(feed) = routes.get(message.get_channel_name()) {
                            let payload = Bytes::copy_from_slice(message.get_payload_bytes());
                            // A message that is not the store's is ignored.
                            crate::scripts::live(&payload, |epoch, entry| {
                                feed.send(Feed::Live { epoch, entry });
                            });
                        }
                    }
                    None => break,
                },
                request = control.recv() => match request {
                    None => return,
                    Some(Control::Subscribe(channel, reply)) => {
                        let done = tokio::time::timeout(timeout, sink.subscribe(&channel)).await;
                        if matches!(done, Ok(Ok(()))) {
                            let _ = reply.send(());
                        } else {
                            waiting.push(reply);
                            break;
                        }
                    }
                    Some(Control::Unsubscribe(channel)) => {
                        // Unless a new feeder took the channel meanwhile.
                        if !lock(&routes).contains_key(&channel) {
                            let _ = tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await;
                        }
                    }
                },
            }
        }
        // The connection was lost.
        renewals.forget();
    }
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}
