//! [`NatsBroker`]: the [`Broker`] seam on NATS JetStream, one stream per topic.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_nats::{
    jetstream::{
        self,
        consumer::{pull, DeliverPolicy},
        context::PublishErrorKind,
        stream::{self, DiscardPolicy},
        ErrorCode,
    },
    HeaderMap,
};
use bytes::Bytes;
use futures_util::StreamExt;

use tower_sse_hub::{
    remote::{Append, Broker, BrokerFuture, Entry, Feed, FeedSender, Range},
    Epoch, EventId, HubConfig, HubError,
};

use crate::config::{
    bounded, hex, stable_hash, topic_token, unavailable, unhex, Cleanup, NatsConfig,
};

/// The header holding an append's idempotency key (hex, so any key is a valid
/// header value): JetStream's own de-duplication.
const MSG_ID: &str = "Nats-Msg-Id";
/// The header holding the stand-in id's text (hex).
const STAND_IN: &str = "Sse-Stand-In";
/// The header marking an append without a key, so that it can be recognised
/// when the stream was replaced around it.
const NONCE: &str = "Sse-Nonce";
/// How many times an append is tried again when its topic's stream was
/// replaced (deleted and made again) around it.
const APPEND_TRIES: usize = 3;
/// The most topics whose epoch is remembered between appends.
const CACHE_MAX: usize = 10_000;

/// A [`Broker`] on NATS JetStream (server 2.9 or later).
///
/// # Layout
///
/// Each topic is one stream, `PREFIX_TOKEN`, capturing one subject,
/// `PREFIX.t.TOKEN`, where `TOKEN` is `x` and the hex of the topic's UTF-8
/// bytes (topics up to 48 bytes) or `h` and the hex of its SHA-256 (longer
/// ones). The stream sequence is the topic's offset: 1, 2, 3, ... with no hole.
/// An entry's data is the message payload; its stand-in and idempotency key
/// are headers.
///
/// The stream is made by the first `append` or `read` of the topic (any node;
/// making it is idempotent across nodes racing to do it), from that call's
/// [`HubConfig`]: `max_msgs` = `history_len` (the oldest discarded), `max_age`
/// = `history_ttl`, `duplicate_window` = `idempotency_window` (at most
/// `history_ttl`, as JetStream requires). A stream that exists keeps the
/// settings it was made with.
///
/// # Retention
///
/// JetStream ages each message on its own: an event is kept for `history_ttl`
/// after its own append (and while among the newest `history_len`). So the
/// topic's last event is kept `history_ttl` after the last append, as the
/// seam asks, but older ones may go sooner: never longer than asked. The
/// stream itself is never deleted by this crate: once every message expired it
/// is empty, keeps its sequence (the next append gets the next offset) and
/// its epoch. Hence [`renew`](Broker::renew) has nothing to do: no epoch is
/// ever lost for lack of appends. Streams of abandoned topics stay (empty, a
/// few hundred bytes each) until an operator deletes them.
///
/// # Epoch
///
/// A topic's epoch is 40 bits of a stable hash of its stream's name and
/// creation time (`created`, kept by the server): the same on every node and
/// across reconnects, new when the stream is deleted and made again.
///
/// # Append and the epoch race
///
/// An append publishes with the idempotency key as `Nats-Msg-Id` (a duplicate
/// within the window gets the first event's sequence from JetStream) or a
/// random nonce, then reads the stream's info again. If the epoch is the one
/// known before publishing, the stream was the same throughout (a stream made
/// again has another creation time), so the acknowledged sequence is in that
/// epoch. If not, the message at that sequence in the current stream is read:
/// if it carries this append's key or nonce, the id is in the current epoch;
/// otherwise the event went to a stream deleted since, and the append is
/// tried again (up to 3 times). The residual risks: a 40-bit hash collision
/// between two creations of the same stream; and when the info read after an
/// acknowledged publish fails (time-out), the id is given in the epoch known
/// before, unchecked, rather than failing an append that was stored. The cost
/// is one extra request (stream info) per append.
///
/// # Live feed
///
/// [`watch`](Broker::watch) runs one ordered pull consumer per topic, from
/// the sequence after the stream's last at confirmation (from 1 if the stream
/// does not exist yet). It also listens to the stream's JetStream advisories
/// (deleted, created) and to the connection's reconnects. On a reconnect, a
/// replaced stream, a consumer error or a gap in the sequence, it makes a new
/// consumer from the current last sequence, then sends [`Feed::Resync`].
#[derive(Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: NatsConfig,
    pub(crate) server: String,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// The last known epoch of each topic's stream.
    epochs: Mutex<HashMap<String, Epoch>>,
    /// The live feeds: dropping the sender stops the feed's task.
    watches: Mutex<HashMap<String, tokio::sync::watch::Sender<()>>>,
    /// Counts the connections made (bumped at each reconnect).
    connections: tokio::sync::watch::Receiver<u64>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("server", &self.inner.server)
            .field("prefix", &self.inner.config.get_prefix())
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects to NATS as `config` says: in the background, retrying while the
/// servers are down (calls meanwhile fail after the timeout).
pub(crate) async fn connect(
    config: &NatsConfig,
) -> Result<(async_nats::Client, tokio::sync::watch::Receiver<u64>), HubError> {
    config.check()?;
    let server = config.server();
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let tx = Arc::new(tx);
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(config.get_timeout())
        .request_timeout(Some(config.get_timeout()))
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    tx.send_modify(|n| *n += 1);
                }
            }
        });
    let urls: Vec<async_nats::ServerAddr> = config
        .get_urls()
        .iter()
        .map(|url| url.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| unavailable(&server, format_args!("invalid URL: {e}")))?;
    let client = bounded(
        &server,
        config.get_timeout(),
        "connecting",
        options.connect(urls),
    )
    .await?;
    Ok((client, rx))
}

impl NatsBroker {
    /// Connects to the servers of `config`. With the servers down it still
    /// returns, and connects in the background (calls fail meanwhile, after
    /// the timeout). An error for an invalid prefix or URL.
    pub async fn connect(config: NatsConfig) -> Result<Self, HubError> {
        let (client, connections) = connect(&config).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(config.get_timeout());
        Ok(Self {
            inner: Arc::new(Inner {
                server: config.server(),
                config,
                client,
                js,
                epochs: Mutex::new(HashMap::new()),
                watches: Mutex::new(HashMap::new()),
                connections,
            }),
        })
    }

    /// The name of `topic`'s stream (for operators, and tests).
    pub fn stream_name(&self, topic: &str) -> String {
        format!("{}_{}", self.inner.config.get_prefix(), topic_token(topic))
    }

    /// Its configuration and JetStream context, for a presence sharing them.
    pub(crate) fn parts(&self) -> (NatsConfig, jetstream::Context) {
        (self.inner.config.clone(), self.inner.js.clone())
    }

    /// The JetStream context this broker uses (for operators, and tests).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }
}

/// The epoch of a stream, from its name and creation time.
fn epoch_of(info: &stream::Info) -> Epoch {
    let mut bytes = info.config.name.as_bytes().to_vec();
    bytes.extend_from_slice(&info.created.unix_timestamp_nanos().to_le_bytes());
    Epoch::from_bits(stable_hash(&bytes))
}

/// The text of header `name`, hex-decoded; empty when absent or invalid.
fn header_bytes(headers: Option<&HeaderMap>, name: &str) -> Bytes {
    headers
        .and_then(|h| h.get(name))
        .and_then(|v| unhex(v.as_str()))
        .map_or_else(Bytes::new, Bytes::from)
}

fn nanos_cap(d: Duration) -> Duration {
    // JetStream keeps durations as i64 nanoseconds; ~100 years is "forever".
    const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    if d >= FOREVER {
        Duration::ZERO
    } else {
        d.max(Duration::from_millis(1))
    }
}

impl Inner {
    fn stream_name(&self, topic: &str) -> String {
        format!("{}_{}", self.config.get_prefix(), topic_token(topic))
    }

    fn subject(&self, topic: &str) -> String {
        format!("{}.t.{}", self.config.get_prefix(), topic_token(topic))
    }

    fn remember(&self, topic: &str, epoch: Epoch) {
        let mut epochs = lock(&self.epochs);
        if epochs.len() >= CACHE_MAX && !epochs.contains_key(topic) {
            epochs.clear();
        }
        epochs.insert(topic.to_owned(), epoch);
    }

    fn forget(&self, topic: &str) {
        lock(&self.epochs).remove(topic);
    }

    /// The stream's info, `None` if it does not exist.
    async fn info(&self, topic: &str) -> Result<Option<stream::Info>, HubError> {
        let name = self.stream_name(topic);
        let got = tokio::time::timeout(self.config.get_timeout(), self.js.get_stream(&name)).await;
        match got {
            Err(_) => Err(unavailable(
                &self.server,
                format_args!("reading stream {name}: no answer in time"),
            )),
            Ok(Ok(stream)) => {
                let info = stream.cached_info().clone();
                self.remember(topic, epoch_of(&info));
                Ok(Some(info))
            }
            Ok(Err(e)) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    self.forget(topic);
                    Ok(None)
                }
                _ => Err(unavailable(
                    &self.server,
                    format_args!("reading stream {name}: {e}"),
                )),
            },
        }
    }

    /// The stream's info, making the stream if it does not exist.
    async fn ensure(&self, topic: &str, config: &HubConfig) -> Result<stream::Info, HubError> {
        if let Some(info) = self.info(topic).await? {
            return Ok(info);
        }
        let max_age = nanos_cap(config.get_history_ttl());
        let mut window = nanos_cap(config.get_idempotency_window());
        if window.is_zero() || (!max_age.is_zero() && window > max_age) {
            window = if max_age.is_zero() {
                Duration::from_secs(120)
            } else {
                max_age
            };
        }
        let stream_config = stream::Config {
            name: self.stream_name(topic),
            subjects: vec![self.subject(topic)],
            max_messages: i64::try_from(config.get_history_len()).unwrap_or(i64::MAX),
            discard: DiscardPolicy::Old,
            max_age,
            duplicate_window: window,
            storage: self.config.storage(),
            num_replicas: self.config.get_replicas(),
            ..Default::default()
        };
        let made = tokio::time::timeout(
            self.config.get_timeout(),
            self.js.create_stream(stream_config),
        )
        .await;
        match made {
            Ok(Ok(stream)) => {
                let info = stream.cached_info().clone();
                self.remember(topic, epoch_of(&info));
                Ok(info)
            }
            // Made by another node with other settings, or another failure:
            // what is there now decides.
            Ok(Err(e)) => match self.info(topic).await? {
                Some(info) => Ok(info),
                None => Err(unavailable(
                    &self.server,
                    format_args!("making stream {}: {e}", self.stream_name(topic)),
                )),
            },
            Err(_) => Err(unavailable(
                &self.server,
                format_args!(
                    "making stream {}: no answer in time",
                    self.stream_name(topic)
                ),
            )),
        }
    }

    /// The topic's epoch as last known, or read (making the stream).
    async fn known_epoch(&self, topic: &str, config: &HubConfig) -> Result<Epoch, HubError> {
        if let Some(epoch) = lock(&self.epochs).get(topic).copied() {
            return Ok(epoch);
        }
        Ok(epoch_of(&self.ensure(topic, config).await?))
    }

    async fn append(&self, topic: &str, append: &Append<'_>) -> Result<EventId, HubError> {
        let (mark_name, mark) = match append.key {
            Some("") => return Err(HubError::InvalidKey),
            Some(key) => (MSG_ID, hex(key.as_bytes())),
            None => (
                NONCE,
                format!("{}{}", Epoch::random(), Epoch::random().bits()),
            ),
        };
        let payload = Bytes::copy_from_slice(append.event);
        let timeout = self.config.get_timeout();
        for _ in 0..APPEND_TRIES {
            let before = self.known_epoch(topic, append.config).await?;
            let mut headers = HeaderMap::new();
            headers.insert(mark_name, mark.as_str());
            headers.insert(STAND_IN, hex(append.stand_in.as_bytes()).as_str());
            let sent = tokio::time::timeout(
                timeout,
                self.js
                    .publish_with_headers(self.subject(topic), headers, payload.clone()),
            )
            .await;
            let ack = match sent {
                Ok(Ok(ack)) => ack,
                Ok(Err(e)) => {
                    return Err(unavailable(
                        &self.server,
                        format_args!("publishing to {topic:?}: {e}; the event was not stored"),
                    ))
                }
                Err(_) => {
                    return Err(unavailable(
                        &self.server,
                        format_args!(
                            "publishing to {topic:?}: no answer in time; the event was not stored"
                        ),
                    ))
                }
            };
            let ack = match tokio::time::timeout(timeout, ack).await {
                Ok(Ok(ack)) => ack,
                Ok(Err(e)) if e.kind() == PublishErrorKind::StreamNotFound => {
                    // No stream (deleted, or expired from the cache): make it.
                    self.forget(topic);
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(unavailable(
                        &self.server,
                        format_args!("storing to {topic:?}: {e}; the event may have been stored"),
                    ))
                }
                Err(_) => {
                    return Err(unavailable(
                        &self.server,
                        format_args!("storing to {topic:?}: no acknowledgement in time; the event may have been stored"),
                    ))
                }
            };
            let now = match self.info(topic).await {
                Ok(Some(now)) => now,
                // Deleted since: the event went with it. Store it again.
                Ok(None) => continue,
                // Stored, but the stream could not be read again: the epoch
                // known before is by far the likeliest (see the type's docs).
                Err(_) => return Ok(EventId::new(ack.sequence, before)),
            };
            let after = epoch_of(&now);
            if after == before {
                return Ok(EventId::new(ack.sequence, after));
            }
            // Replaced around the publish: is it in the current stream?
            let stream = self.js.get_stream_no_info(self.stream_name(topic));
            let found = match tokio::time::timeout(timeout, stream).await {
                Ok(Ok(stream)) => {
                    tokio::time::timeout(timeout, stream.get_raw_message(ack.sequence)).await
                }
                _ => continue,
            };
            if let Ok(Ok(message)) = found {
                let carries = message
                    .headers
                    .get(mark_name)
                    .is_some_and(|v| v.as_str() == mark);
                if carries {
                    return Ok(EventId::new(ack.sequence, after));
                }
            }
        }
        Err(unavailable(
            &self.server,
            format_args!(
                "the stream of {topic:?} was replaced during each try; the event was not kept"
            ),
        ))
    }

    async fn read(&self, topic: &str, from: u64, config: &HubConfig) -> Result<Range, HubError> {
        for _ in 0..APPEND_TRIES {
            let info = self.ensure(topic, config).await?;
            let epoch = epoch_of(&info);
            let top = info.state.last_sequence;
            let len = u64::try_from(config.get_history_len().max(1)).unwrap_or(u64::MAX);
            let start = from
                .max(info.state.first_sequence)
                .max(top.saturating_sub(len - 1))
                .max(1);
            if info.state.messages == 0 || start > top {
                return Ok(Range {
                    epoch,
                    top,
                    entries: Vec::new(),
                });
            }
            let entries = self.fetch(topic, start, top).await?;
            // The same stream throughout?
            match self.info(topic).await? {
                Some(now) if epoch_of(&now) == epoch => {
                    return Ok(Range {
                        epoch,
                        top,
                        entries,
                    })
                }
                _ => continue,
            }
        }
        Err(unavailable(
            &self.server,
            format_args!("the stream of {topic:?} was replaced during each read"),
        ))
    }

    /// An ordered consumer of stream `name` from sequence `start`, and what
    /// deletes it from the server once dropped.
    async fn ordered(
        &self,
        name: &str,
        start: u64,
    ) -> Result<(jetstream::consumer::Consumer<pull::OrderedConfig>, Cleanup), String> {
        let stream = self
            .js
            .get_stream_no_info(name)
            .await
            .map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let cleanup = Cleanup {
            name: consumer.cached_info().name.clone(),
            stream,
            timeout: self.config.get_timeout(),
        };
        Ok((consumer, cleanup))
    }

    /// The entries `start..=top` still in the stream.
    async fn fetch(&self, topic: &str, start: u64, top: u64) -> Result<Vec<Entry>, HubError> {
        let name = self.stream_name(topic);
        let work = async {
            let (consumer, _cleanup) = self.ordered(&name, start).await?;
            let mut entries = Vec::new();
            if consumer.cached_info().num_pending == 0 {
                return Ok(entries);
            }
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| e.to_string())?;
                let (seq, pending) = match message.info() {
                    Ok(info) => (info.stream_sequence, info.pending),
                    Err(e) => return Err(e.to_string()),
                };
                if seq > top {
                    break;
                }
                entries.push(Entry {
                    offset: seq,
                    stand_in: header_bytes(message.headers.as_ref(), STAND_IN),
                    data: message.payload.clone(),
                });
                if seq >= top || pending == 0 {
                    break;
                }
            }
            Ok::<_, String>(entries)
        };
        bounded(
            &self.server,
            self.config.get_timeout(),
            &format!("reading stream {name}"),
            work,
        )
        .await
    }
}

/// A live feed's consumer (deleted from the server when dropped).
struct Live {
    epoch: Epoch,
    next: u64,
    messages: pull::Ordered,
    _cleanup: Cleanup,
}

impl Inner {
    /// A consumer from the sequence after the stream's last (from its first
    /// with `from_start`), or `None` while the stream does not exist.
    async fn follow(&self, topic: &str, from_start: bool) -> Result<Option<Live>, HubError> {
        let Some(info) = self.info(topic).await? else {
            return Ok(None);
        };
        let next = if from_start {
            info.state.first_sequence.max(1)
        } else {
            info.state.last_sequence.saturating_add(1)
        };
        let name = self.stream_name(topic);
        let work = async {
            let (consumer, cleanup) = self.ordered(&name, next).await?;
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((messages, cleanup))
        };
        let (messages, cleanup) = bounded(
            &self.server,
            self.config.get_timeout(),
            &format!("following stream {name}"),
            work,
        )
        .await?;
        Ok(Some(Live {
            epoch: epoch_of(&info),
            next,
            messages,
            _cleanup: cleanup,
        }))
    }
}

async fn next_message(
    live: &mut Option<Live>,
) -> Option<Result<jetstream::Message, pull::OrderedError>> {
    match live {
        Some(live) => live.messages.next().await,
        None => std::future::pending().await,
    }
}

/// Feeds `topic` into `feed` until stopped (`stop`'s sender dropped) or the
/// copy is gone.
async fn run_feed(
    inner: Arc<Inner>,
    topic: String,
    feed: FeedSender,
    mut stop: tokio::sync::watch::Receiver<()>,
    mut advisories: async_nats::Subscriber,
    mut live: Option<Live>,
) {
    let mut connections = inner.connections.clone();
    connections.borrow_and_update();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    // Whether the feed may have missed events (send a `Resync` once back).
    let mut lost = false;
    // The stream did not exist when the feed was confirmed: it is followed
    // from its first event once it does.
    let mut from_start = live.is_none();
    loop {
        let mut retry = false;
        tokio::select! {
            changed = stop.changed() => if changed.is_err() { return },
            _ = tick.tick() => {
                if feed.is_closed() {
                    return;
                }
                retry = live.is_none();
            }
            advisory = advisories.next() => {
                let replaced = match advisory {
                    Some(advisory) => {
                        let subject = advisory.subject.as_str();
                        subject.contains(".STREAM.DELETED.") || subject.contains(".STREAM.CREATED.")
                    }
                    None => {
                        // The subscription ended (connection closed): resubscribe.
                        match inner.client.subscribe(advisory_subject(&inner, &topic)).await {
                            Ok(sub) => advisories = sub,
                            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                        }
                        true
                    }
                };
                if replaced {
                    // Deleted or made again: start over on what is there now.
                    lost |= live.take().is_some();
                    retry = true;
                }
            }
            changed = connections.changed() => {
                if changed.is_ok() {
                    lost |= live.take().is_some();
                    retry = true;
                }
            }
            message = next_message(&mut live) => {
                let mut ok = false;
                if let (Some(Ok(message)), Some(current)) = (message, live.as_mut()) {
                    if let Ok(info) = message.info() {
                        if info.stream_sequence == current.next {
                            ok = true;
                            current.next = current.next.saturating_add(1);
                            let entry = Entry {
                                offset: info.stream_sequence,
                                stand_in: header_bytes(message.headers.as_ref(), STAND_IN),
                                data: message.payload.clone(),
                            };
                            if !feed.send(Feed::Live { epoch: current.epoch, entry }) {
                                return;
                            }
                        }
                    }
                }
                if !ok {
                    lost |= live.take().is_some();
                    retry = true;
                }
            }
        }
        if retry && live.is_none() {
            if let Ok(found) = inner.follow(&topic, from_start && !lost).await {
                let started = found.is_some();
                live = found;
                if started {
                    from_start = false;
                }
                if started && lost {
                    lost = false;
                    if !feed.send(Feed::Resync) {
                        return;
                    }
                }
            }
        }
    }
}

fn advisory_subject(inner: &Inner, topic: &str) -> String {
    format!("$JS.EVENT.ADVISORY.STREAM.*.{}", inner.stream_name(topic))
}

impl Broker for NatsBroker {
    fn append<'a>(
        &'a self,
        topic: &'a str,
        append: Append<'a>,
    ) -> BrokerFuture<'a, Result<EventId, HubError>> {
        Box::pin(async move { self.inner.append(topic, &append).await })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: u64,
        config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<Range, HubError>> {
        Box::pin(async move { self.inner.read(topic, from, config).await })
    }

    fn watch(&self, topic: &str, feed: FeedSender) -> BrokerFuture<'static, Result<(), HubError>> {
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        let (stop_tx, stop) = tokio::sync::watch::channel(());
        // Replaces (stops) a feed of the topic already running.
        lock(&inner.watches).insert(topic.clone(), stop_tx);
        Box::pin(async move {
            let timeout = inner.config.get_timeout();
            let subject = advisory_subject(&inner, &topic);
            let advisories = bounded(
                &inner.server,
                timeout,
                "subscribing to advisories",
                inner.client.subscribe(subject),
            )
            .await?;
            bounded(
                &inner.server,
                timeout,
                "subscribing to advisories",
                inner.client.flush(),
            )
            .await?;
            let live = inner.follow(&topic, false).await?;
            tokio::spawn(run_feed(inner, topic, feed, stop, advisories, live));
            Ok(())
        })
    }

    fn unwatch(&self, topic: &str) {
        lock(&self.inner.watches).remove(topic);
    }

    /// Nothing to do: the stream, and so the epoch, outlives its messages
    /// (see the [type's docs](NatsBroker)).
    fn renew<'a>(
        &'a self,
        _topic: &'a str,
        _config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<(), HubError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn server_of(&self, _topic: &str) -> String {
        self.inner.server.clone()
    }
}
