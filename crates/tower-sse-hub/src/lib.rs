//! The broadcast hub of [`tower-sse`](tower_sse): named topics, each event
//! encoded once and shared by every subscriber, a retained history per topic
//! with exact `Last-Event-ID` resume, presence, and the seams behind them.
//!
//! # The moving parts
//!
//! Data flows one way: **[`Hub::publish`] → [`Store`] → topic log →
//! [`Subscriber`] → [`SseBody`](tower_sse::SseBody)**.
//!
//! - [`Hub`] is the handle an application holds: `publish`, `publish_once`,
//!   `subscribe`, and `subscribe_many` for one stream of several topics
//!   ([`MultiSubscriber`]), whose ids are a [`Cursor`] over all of them. A
//!   [`Publisher`] publishes to one topic found once.
//! - A [`Store`] keeps each topic's history and delivers live events, and keeps
//!   the [store contract](Store#the-contract). [`MemoryStore`] is the one in
//!   this process (the default).
//! - Each topic is a log of encoded events (`topic.rs`): a bounded ring with
//!   one cursor per [`Subscriber`], so a slow reader holds nothing and never
//!   slows the others ([`Lag`]).
//! - With the `remote` feature, [`remote::RemoteStore`] spans several server
//!   nodes over any [`remote::Broker`]: a remote log per topic (Redis streams
//!   in `tower-sse-redis`, NATS JetStream in `tower-sse-nats`), mirrored on
//!   each node into the same topic logs.
//! - [`Presence`] is who is in a topic ([`MemoryPresence`] here; Redis and NATS
//!   in their crates).
//! - With the `contract` feature, [`contract`] is the store contract as a test
//!   kit that every store crate runs against its store.
//!
//! # Features
//!
//! - `tokio` (default): the history sweeper and timers on `tokio::time`.
//! - `remote`: [`remote::RemoteStore`] and the [`remote::Broker`] seam;
//!   [`remote::RemotePresence`] and the [`remote::PresenceBackend`] seam.
//! - `contract`: the store contract's test kit.
//! - `metrics`: hub metrics through the `metrics` facade (names in
//!   [`metrics`]).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod config;
#[cfg(feature = "contract")]
#[cfg_attr(docsrs, doc(cfg(feature = "contract")))]
pub mod contract;
mod cursor;
mod id;
#[cfg(all(test, tower_sse_loom))]
mod loom_tests;
mod memory;
pub mod metrics;
mod multi_subscriber;
mod presence;
mod publisher;
#[cfg(feature = "remote")]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
pub mod remote;
mod store;
mod subscriber;
mod sync;
mod topic;

pub use config::{HubConfig, Lag};
pub use cursor::{Cursor, ParseCursorError, MAX_TOPICS};
pub use id::{Epoch, EventId, ParseEventIdError};
pub use memory::MemoryStore;
pub use multi_subscriber::MultiSubscriber;
pub use presence::{MemoryPresence, Presence, Roster};
pub use publisher::Publisher;
pub use store::{HubError, MakeEvent, Store, StoreFuture, MAX_KEY_LEN};
pub use subscriber::Subscriber;

use std::{fmt, sync::Arc};

use tower_sse::Event;

/// A broadcast hub: publish an event to a named topic (a chat room, a document, a
/// user's feed) and every subscriber of that topic receives it; a client that
/// reconnects with `Last-Event-ID` gets exactly what it missed.
///
/// `Hub` is cheap to clone (a reference count). Its operations are `async` and
/// fallible because the hub runs on a [`Store`]: in this process by default
/// ([`MemoryStore`], where they complete at once and never fail but for
/// [`HubError::Closed`]), or on a broker shared by several nodes, with the same
/// API.
///
/// # Encode once, share everywhere
///
/// [`publish`](Self::publish) encodes the event once, into an
/// [`EncodedEvent`](tower_sse::EncodedEvent), and every subscriber reads the same
/// `Bytes`. Fan-out to 10 000 subscribers costs 10 000 reference counts, not
/// 10 000 encodings. Each [`Subscriber`] is a `Stream` of those events, ready for
/// [`SseBody::from_events`](tower_sse::SseBody::from_events).
///
/// # Ids, history and replay
///
/// The hub sets the `id:` of every event it publishes (any id on the event is
/// replaced) to an [`EventId`]: the topic's offset (1, 2, 3, ... with no hole)
/// and the epoch of the topic's history, written like `42-0fk3m9vq`. Each topic
/// keeps a bounded history ([`HubConfig::history_len`],
/// [`HubConfig::history_bytes`]) for [`HubConfig::history_ttl`] after its last
/// publish, **whether or not anyone is subscribed**: a client whose connection
/// blips while it is a room's only member still resumes exactly.
///
/// [`subscribe`](Self::subscribe) takes the client's `Last-Event-ID`
/// ([`LastEventId`](tower_sse::LastEventId)) and yields, in order, exactly the events
/// after it, then live events: no gap and no duplicate, whatever is published
/// meanwhile, since replay and live events are read from one history.
///
/// When the cursor cannot be honoured exactly (its events left the history, the
/// topic expired and started a new epoch, the server restarted, or it is not an
/// id at all), the subscriber first gets a **reset event** instead of a silent
/// gap, then everything the history holds, then live events:
///
/// ```text
/// event: reset
/// id: F
/// data: {"after":"F"}
/// ```
///
/// where `F` is the id after which what follows is complete. A client should
/// treat what came before as possibly incomplete and rely on what follows.
///
/// The same notice arrives **in-band** when a networked store loses a topic's
/// history under open streams (Redis restarted empty): the stream stays open,
/// gets `reset`, then the new epoch's events. A topic with subscribers never
/// expires, in memory or on Redis.
///
/// # Slow subscribers
///
/// A subscriber is a cursor into the topic's history, as with
/// `tokio::sync::broadcast`: publishing appends once and wakes the subscribers
/// that wait, whatever their number, and a subscriber that stops reading holds
/// nothing. One that falls more than [`HubConfig::queue_capacity`] events behind
/// (or behind what the history holds) lags, and the [`Lag`] policy applies: by
/// default its stream ends with a `retry:` hint, so the client reconnects and
/// resumes from the history; or ([`Lag::Skip`]) it skips to the newest event and
/// a `gap` event tells it how many it missed.
///
/// # Memory
///
/// A topic without subscribers is freed once its retention has expired;
/// [`HubConfig::max_topics`] and [`HubConfig::max_total_history_bytes`] bound
/// the whole hub (oldest idle topics evicted first) even when clients create a
/// million one-shot topics. When the last `Hub` handle is dropped, every
/// subscriber's stream ends after what it has left to read.
///
/// # Locks
///
/// No lock is shared by all topics on the publish path: a topic is found in one
/// of several shards, and its offset is reserved and its event stored in short
/// critical sections of that topic alone: one for [`publish`](Self::publish)
/// (the event was built before the call: its id is written in and it is
/// encoded under the topic's lock), two for
/// [`publish_with`](Self::publish_with) and
/// [`publish_once`](Self::publish_once), whose closure and encoding run between
/// them, outside every lock, so the closure may call back into the hub.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
/// use futures_util::StreamExt;
/// use tower_sse::{Event, LastEventId, SseBody};
/// use tower_sse_hub::Hub;
///
/// let hub = Hub::new();
/// let mut alice = hub.subscribe("room", None).await?;
/// let first = hub.publish("room", Event::message("hi")).await?;
/// let second = hub.publish("room", Event::message("how are you?")).await?;
/// assert_eq!((first.offset(), second.offset()), (1, 2));
///
/// // Bob got "hi" before his connection dropped: he comes back with
/// // `Last-Event-ID: <first>` and gets exactly what he missed, then live events.
/// let req = http::Request::get("/sse")
///     .header("last-event-id", first.to_string())
///     .body(())
///     .unwrap();
/// let last = LastEventId::from_request(&req);
/// let bob = hub.subscribe("room", last.as_deref()).await?;
/// let third = hub.publish("room", Event::message("fine")).await?;
///
/// let events: Vec<_> = bob.take(2).collect().await;
/// assert_eq!(events[0].as_bytes(), format!("id: {second}\ndata: how are you?\n\n").as_bytes());
/// assert_eq!(events[1].as_bytes(), format!("id: {third}\ndata: fine\n\n").as_bytes());
///
/// // In a handler: `SseBody::from_events(subscriber).into_response()`.
/// let _body = SseBody::from_events(hub.subscribe("room", None).await?);
/// assert_eq!(alice.next().await.unwrap().as_bytes(), format!("id: {first}\ndata: hi\n\n").as_bytes());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    store: Arc<dyn Store>,
    /// The name prefixes of latest-value topics (see [`Hub::latest_value`]).
    latest: Arc<[String]>,
    /// The same store when it is a [`MemoryStore`]: publishing to it directly
    /// costs no boxed closure and no boxed future.
    memory: Option<MemoryStore>,
    /// Counts the `Hub` handles (subscribers hold topics only): when the last one
    /// goes, every stream is ended.
    _last_handle: Arc<CloseOnLastHandle>,
}

impl Hub {
    /// A hub in this process with the default [`HubConfig`].
    pub fn new() -> Self {
        Self::with_config(HubConfig::new())
    }

    /// A hub in this process bounded by `config`.
    pub fn with_config(config: HubConfig) -> Self {
        Self::with_store(MemoryStore::new(config))
    }

    /// A hub on `store`.
    pub fn with_store(store: impl Store) -> Self {
        let memory = (&store as &dyn std::any::Any)
            .downcast_ref::<MemoryStore>()
            .cloned();
        let store: Arc<dyn Store> = Arc::new(store);
        Self {
            memory,
            _last_handle: Arc::new(CloseOnLastHandle(store.clone())),
            store,
            latest: Arc::new([]),
        }
    }

    /// Makes the topics whose names start with `prefix` (every topic for
    /// `""`) **latest-value topics**: a subscriber without a cursor first
    /// receives the topic's latest event (its current state, say a dashboard
    /// widget's value), then live events, so a page that opens mid-update shows
    /// every widget at once. With a cursor, nothing changes: it resumes
    /// exactly. Can be called again for more prefixes; applies to this handle
    /// and its clones made after.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
    /// use futures_util::StreamExt;
    /// use tower_sse::Event;
    ///
    /// let hub = tower_sse_hub::Hub::new().latest_value("widget/");
    /// hub.publish("widget/cpu", Event::message("12 %")).await?;
    /// let now = hub.publish("widget/cpu", Event::message("15 %")).await?;
    /// let mut sub = hub.subscribe("widget/cpu", None).await?;
    /// let first = sub.next().await.unwrap();
    /// assert_eq!(first.as_bytes(), format!("id: {now}\ndata: 15 %\n\n").as_bytes());
    /// # Ok(()) }
    /// ```
    pub fn latest_value(mut self, prefix: impl Into<String>) -> Self {
        let mut latest = self.latest.to_vec();
        latest.push(prefix.into());
        self.latest = latest.into();
        self
    }

    /// Whether `topic` is a latest-value topic.
    pub fn is_latest_value(&self, topic: &str) -> bool {
        self.latest
            .iter()
            .any(|prefix| topic.starts_with(prefix.as_str()))
    }

    /// Subscribes without a cursor: from now, or from the latest event of a
    /// latest-value topic. Also returns the id the subscriber starts after.
    async fn subscribe_fresh(&self, topic: &str) -> Result<(Subscriber, EventId), HubError> {
        let now = self.store.subscribe(topic, None).await?;
        let position = now.position();
        if !self.is_latest_value(topic) || position.offset() == 0 {
            return Ok((now, position));
        }
        let before = EventId::new(position.offset() - 1, position.epoch());
        // `now` keeps the topic alive meanwhile.
        let latest = self
            .store
            .subscribe(topic, Some(&before.to_string()))
            .await?;
        drop(now);
        Ok((latest, before))
    }

    /// Publishes `event` to `topic`; resolves with its id once it is stored. The
    /// event's own `id`, if any, is replaced by the hub's.
    ///
    /// # Errors
    ///
    /// [`HubError::Closed`] when every handle is gone (not possible through
    /// `&self`, kept for stores shared otherwise); [`HubError::Full`] when the
    /// topic is new and the store holds as many topics as it may, all in use;
    /// [`HubError::Unavailable`] when a networked store cannot be reached or
    /// failed: the event was not published, unless the broker did not answer
    /// in time, when it may have been (use [`publish_once`](Self::publish_once)
    /// to retry exactly).
    pub async fn publish(&self, topic: &str, event: Event) -> Result<EventId, HubError> {
        if let Some(memory) = &self.memory {
            return memory.publish_event(topic, &event);
        }
        self.store
            .publish(topic, None, Box::new(move |_| event))
            .await
    }

    /// A [`Publisher`] for `topic`: [`publish`](Self::publish) to it without
    /// looking the topic up on every call, for a task that publishes to one
    /// topic often.
    pub fn publisher(&self, topic: &str) -> Publisher {
        Publisher::new(self.clone(), topic)
    }

    /// Publishes the event `make` builds from its id, **at most once per
    /// `key`**: a publish with a key already used on `topic` within
    /// [`HubConfig::idempotency_window`] (5 minutes by default) stores nothing
    /// and resolves with the id the first one got. The key's check and the
    /// store are one atomic step, on every store.
    ///
    /// This makes retries exact. A publish to a networked store that did not
    /// answer in time fails with [`HubError::Unavailable`] although the broker
    /// may have stored it a moment later; retried with the same key, it is
    /// stored once and the retry gets its id. An HTTP API takes the key from
    /// its client (the chat example reads an `Idempotency-Key` header), so
    /// that the client's own retries are exact too. A retry that arrives
    /// while the first publish is still building its event waits for it to be
    /// stored (acknowledged means stored), so `make` must not itself publish
    /// with the same key to the same topic.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
    /// use tower_sse::Event;
    /// use tower_sse_hub::Hub;
    ///
    /// let hub = Hub::new();
    /// let first = hub.publish_once("t", "msg-1", |_| Event::message("hi")).await?;
    /// let retry = hub.publish_once("t", "msg-1", |_| Event::message("hi")).await?;
    /// assert_eq!(first, retry);
    /// assert_eq!(hub.position("t"), Some(first), "stored once");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`HubError::InvalidKey`] for an empty
    /// key or one longer than [`MAX_KEY_LEN`] bytes.
    pub async fn publish_once(
        &self,
        topic: &str,
        key: &str,
        make: impl FnOnce(&EventId) -> Event + Send,
    ) -> Result<EventId, HubError> {
        store::check_key(Some(key))?;
        if let Some(memory) = &self.memory {
            return memory.publish_now(topic, Some(key), make);
        }
        self.store.publish(topic, Some(key), Box::new(make)).await
    }

    /// Publishes the event that `make` builds from its id, for events whose data
    /// carries the id (a chat message as JSON, say). `make` runs outside every
    /// lock of the hub. Resolves with the id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
    /// let hub = tower_sse_hub::Hub::new();
    /// let id = hub
    ///     .publish_with("t", |id| tower_sse::Event::message(format!("#{id}")))
    ///     .await?;
    /// assert_eq!(id.offset(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub async fn publish_with(
        &self,
        topic: &str,
        make: impl FnOnce(&EventId) -> Event + Send,
    ) -> Result<EventId, HubError> {
        if let Some(memory) = &self.memory {
            return memory.publish_now(topic, None, make);
        }
        self.store.publish(topic, None, Box::new(make)).await
    }

    /// Subscribes to `topic`, first replaying the events after `last_event_id`
    /// (the `Last-Event-ID` a reconnecting client sent), or a reset event when the
    /// history cannot replay them exactly; see the [type's docs](Self). `None`
    /// subscribes to live events from now on (after the latest event, for a
    /// [latest-value topic](Self::latest_value)).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish), and [`HubError::Full`] when the topic
    /// is new and the store holds as many topics as it may, all in use.
    pub async fn subscribe(
        &self,
        topic: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscriber, HubError> {
        match last_event_id {
            None => Ok(self.subscribe_fresh(topic).await?.0),
            Some(last) => self.store.subscribe(topic, Some(last)).await,
        }
    }

    /// Subscribes to several topics (1 to [`MAX_TOPICS`], repeats ignored) as
    /// one stream, a [`MultiSubscriber`]: the browser's six connections per
    /// origin carry a member's rooms, a dashboard's widgets or a user's
    /// notification feeds in one `EventSource`.
    ///
    /// `last_event_id` is the [`Cursor`] the client last received (its
    /// `Last-Event-ID`): each topic it positions resumes exactly after its
    /// position (or gets a `reset` naming it, if its history no longer holds
    /// it), and the topics it does not position (added since, or a cursor
    /// that is not one) start from now. The topics are the caller's: a cursor
    /// only positions them, so a crafted one can open nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
    /// use futures_util::StreamExt;
    /// use tower_sse::Event;
    /// use tower_sse_hub::{Cursor, Hub};
    ///
    /// let hub = Hub::new();
    /// let mut stream = hub.subscribe_many(&["news", "sport"], None).await?;
    /// let news = hub.publish("news", Event::message("rain")).await?;
    /// let event = stream.next().await.unwrap();
    /// let text = std::str::from_utf8(event.as_bytes()).unwrap().to_owned();
    /// let cursor: Cursor = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap().parse().unwrap();
    /// assert_eq!(cursor.get("news"), Some(news));
    ///
    /// // Missed while away: one event per topic; the cursor resumes both.
    /// drop(stream);
    /// hub.publish("news", Event::message("sun")).await?;
    /// hub.publish("sport", Event::message("goal")).await?;
    /// let mut stream = hub.subscribe_many(&["news", "sport"], Some(&cursor.to_string())).await?;
    /// let mut missed = Vec::new();
    /// for _ in 0..2 {
    ///     let event = stream.next().await.unwrap();
    ///     let text = std::str::from_utf8(event.as_bytes()).unwrap().to_owned();
    ///     missed.push(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap().to_owned());
    /// }
    /// missed.sort();
    /// assert_eq!(missed, ["goal", "sun"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopics`] for no topic or more than [`MAX_TOPICS`];
    /// otherwise as [`subscribe`](Self::subscribe), for any of the topics.
    pub async fn subscribe_many<T: AsRef<str>>(
        &self,
        topics: &[T],
        last_event_id: Option<&str>,
    ) -> Result<MultiSubscriber, HubError> {
        let mut distinct: Vec<String> = Vec::with_capacity(topics.len());
        for topic in topics {
            let topic = topic.as_ref();
            if !distinct.iter().any(|t| t == topic) {
                distinct.push(topic.to_owned());
            }
        }
        if distinct.is_empty() || distinct.len() > MAX_TOPICS {
            return Err(HubError::InvalidTopics);
        }
        let cursor = last_event_id.and_then(|id| id.parse::<Cursor>().ok());
        let mut members = Vec::with_capacity(distinct.len());
        let tags = crate::cursor::unique_tags(&distinct);
        for (topic, tag) in distinct.iter().zip(tags) {
            let from = cursor
                .as_ref()
                .zip(tag)
                .and_then(|(cursor, tag)| cursor.get_tag(tag));
            let (subscriber, at) = match from {
                Some(from) => (
                    self.store.subscribe(topic, Some(&from.to_string())).await?,
                    from,
                ),
                None => self.subscribe_fresh(topic).await?,
            };
            members.push((topic.clone(), tag, subscriber, at));
        }
        Ok(MultiSubscriber::new(members))
    }

    /// [`subscribe_many`](Self::subscribe_many) on the topics of `topics`
    /// that `allow` accepts for `request` (one call per distinct topic): the
    /// one place a multi-topic stream is authorized. The stream starts with
    /// `event: refused` (`{"topics":[...]}`) when some were refused.
    ///
    /// # Errors
    ///
    /// [`HubError::Refused`] when every topic was refused (nothing subscribed:
    /// answer `403` before any byte); otherwise as
    /// [`subscribe_many`](Self::subscribe_many).
    pub async fn subscribe_authorized<R, T: AsRef<str>>(
        &self,
        request: &R,
        topics: &[T],
        last_event_id: Option<&str>,
        allow: impl Fn(&R, &str) -> bool,
    ) -> Result<MultiSubscriber, HubError> {
        let mut allowed = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for topic in topics {
            let topic = topic.as_ref();
            if allowed.contains(&topic) || refused.iter().any(|t| t == topic) {
                continue;
            }
            if allow(request, topic) {
                allowed.push(topic);
            } else {
                refused.push(topic.to_owned());
            }
        }
        if allowed.is_empty() && !refused.is_empty() {
            return Err(HubError::Refused);
        }
        let stream = self.subscribe_many(&allowed, last_event_id).await?;
        Ok(stream.refusing(&refused))
    }

    /// How many subscribers `topic` has now.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.store.subscriber_count(topic)
    }

    /// How many topics the hub holds now: those with subscribers and those whose
    /// history is still retained.
    pub fn topic_count(&self) -> usize {
        self.store.topic_count()
    }

    /// The id of the last event published to `topic`, if the hub holds it.
    pub fn position(&self, topic: &str) -> Option<EventId> {
        self.store.position(topic)
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub").field("store", &self.store).finish()
    }
}

/// Ends every stream when the last [`Hub`] handle is dropped.
struct CloseOnLastHandle(Arc<dyn Store>);

impl Drop for CloseOnLastHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The README's Rust snippets, compiled (and run, where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
