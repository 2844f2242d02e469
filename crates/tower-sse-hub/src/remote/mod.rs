//! [`RemoteStore`]: a hub shared by several server nodes through a remote log
//! per topic, behind the [`Broker`] seam.
//!
//! A [`Broker`] is five operations on a remote, shared log per topic: append
//! with an id, read from an offset, a live feed, renew, and where a topic
//! lives. `RemoteStore` does the rest of the [store contract](crate::Store#the-contract)
//! for every broker: each node keeps its own copy of each topic its clients
//! use ([`mirror`](self) below), the same topic log as the in-process store,
//! so each event is encoded once per node and shared by its subscribers, and
//! resuming from a cursor is served from that copy.
//!
//! `tower-sse-redis` (Redis streams and Pub/Sub) and `tower-sse-nats` (NATS
//! JetStream) are brokers; a store for another engine is a crate that
//! implements [`Broker`] and runs [`contract`](crate::contract) in its tests.
//!
//! Presence across nodes has its own seam: [`RemotePresence`] keeps this
//! node's counts and their renewal for every engine, over a
//! [`PresenceBackend`] that writes, renews and looks at them remotely.

mod broker;
mod mirror;
mod presence;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{mpsc, watch};

pub use self::broker::{Append, Broker, BrokerFuture, Entry, Feed, FeedSender, Range};
pub use self::presence::{PresenceBackend, RemotePresence, Taken, Written};
use crate::{
    store::{check_key, encode_with_id},
    sync::{lock, Mutex},
    topic::Topic,
    Epoch, EventId, HubConfig, HubError, MakeEvent, Store, StoreFuture, Subscriber,
};

/// A [`Store`] over a [`Broker`]: any number of server nodes, each with its
/// own [`Hub`](crate::Hub) on a `RemoteStore` over the same broker, share
/// every topic, and an id handed out by any node is a valid `Last-Event-ID` on
/// every node.
///
/// # How
///
/// A publish appends the encoded event to the broker's log and resolves with
/// its id once the broker stored it. A node follows (`watch`) only the topics
/// its clients use, and keeps for each the same ring of encoded events as the
/// in-process store, fed from the broker's live feed: contiguous offsets make
/// a lost live event visible, and the node then reads the log from the next
/// offset. A new epoch in the broker (restarted empty, expired) or a hole the
/// log no longer holds starts the copy over in place: open streams get the
/// `reset` notice in-band, then the new epoch's events. While a copy has
/// subscribers, the node renews the topic's retention every quarter of the TTL.
///
/// # The id given to `publish_with`
///
/// The event is built before the broker gives it its offset, so the closure of
/// [`Hub::publish_with`](crate::Hub::publish_with) gets a stand-in id (offset
/// `u64::MAX`, a random epoch) and every occurrence of its text in the encoded
/// event is replaced by the real id where the event is delivered. Use the id
/// through its text (`to_string`, `format!`), not through
/// [`EventId::offset`].
pub struct RemoteStore<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for RemoteStore<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B> {
    broker: B,
    hub: Arc<HubConfig>,
    /// How long a read, a renewal or a first subscribe waits for the broker.
    timeout: Duration,
    /// This node's copies, by topic. Locked briefly, never across an await.
    mirrors: Mutex<HashMap<Arc<str>, Mirror>>,
    /// Numbers the copies, so a feeder tells its own entry from a later one's.
    serial: AtomicU64,
    /// Set by `close`; read under the mirrors' lock before a copy is started,
    /// and by a feeder before it makes its topic, which it then closes.
    closed: AtomicBool,
    /// The publish counter, looked up once.
    published: crate::metrics::Published,
}

/// This node's copy of one topic, as the store's map holds it.
struct Mirror {
    /// Tells this copy's feeder from a later one's.
    serial: u64,
    handle: Handle,
}

/// What a subscribe needs of a copy.
#[derive(Clone)]
struct Handle {
    topic: watch::Receiver<Option<Arc<Topic>>>,
    /// The feeder's queue: a subscribe with a cursor of another epoch asks it
    /// to read the topic again.
    feed: mpsc::UnboundedSender<Feed>,
    /// Counts the feeder's completed reads of the topic.
    syncs: Arc<AtomicU64>,
    /// A read was asked for and not started yet: subscribes with cursors of
    /// other epochs (which clients choose) ask for one read, not one each.
    asked: Arc<AtomicBool>,
}

pub(crate) fn unavailable(
    message: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> HubError {
    HubError::Unavailable(message.into())
}

impl<B: Broker> RemoteStore<B> {
    /// A store over `broker`, bounded by `config`, waiting at most `timeout`
    /// for a read of the broker (a publish is bounded by the broker's own
    /// timeout). Must be used inside a tokio runtime: each copy is fed by a
    /// task.
    pub fn new(broker: B, config: HubConfig, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                hub: Arc::new(config),
                timeout,
                mirrors: Mutex::new(HashMap::new()),
                serial: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                published: crate::metrics::Published::new(),
            }),
        }
    }

    /// The broker.
    pub fn broker(&self) -> &B {
        &self.inner.broker
    }

    /// The hub's bounds.
    pub fn config(&self) -> &HubConfig {
        &self.inner.hub
    }
}

impl<B: Broker> fmt::Debug for RemoteStore<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("broker", &self.inner.broker)
            .field("topics", &lock(&self.inner.mirrors).len())
            .finish()
    }
}

impl<B: Broker> Inner<B> {
    /// The node's copy of `name`, started if missing: its topic (once read),
    /// its feeder's queue and its count of reads.
    fn mirror(self: &Arc<Self>, name: &str) -> Result<Handle, HubError> {
        let mut map = lock(&self.mirrors);
        if let Some(m) = map.get(name) {
            return Ok(m.handle.clone());
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(HubError::Closed);
        }
        let name: Arc<str> = Arc::from(name);
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let syncs = Arc::new(AtomicU64::new(0));
        let asked = Arc::new(AtomicBool::new(false));
        let (topic, feed) = mirror::spawn(
            Arc::downgrade(self),
            name.clone(),
            serial,
            (syncs.clone(), asked.clone()),
        );
        let handle = Handle {
            topic,
            feed,
            syncs,
            asked,
        };
        map.insert(
            name,
            Mirror {
                serial,
                handle: handle.clone(),
            },
        );
        Ok(handle)
    }

    /// Lets go of the copy of `name` made by feeder `serial` if it has no
    /// subscribers; returns whether it did (the feeder then ends).
    fn release(&self, name: &str, serial: u64, topic: Option<&Topic>) -> bool {
        let mut map = lock(&self.mirrors);
        if map.get(name).is_none_or(|m| m.serial != serial) {
            return true; // replaced: this feeder is no longer used
        }
        if topic.is_some_and(|t| t.try_remove(None).is_none()) {
            return false;
        }
        map.remove(name);
        // Under the map's lock, so that a new copy of the topic watches after.
        self.broker.unwatch(name);
        true
    }

    fn existing(&self, name: &str) -> Option<Arc<Topic>> {
        lock(&self.mirrors)
            .get(name)
            .and_then(|m| m.handle.topic.borrow().clone())
    }

    async fn publish(
        &self,
        name: &str,
        key: Option<&str>,
        make: MakeEvent<'_>,
    ) -> Result<EventId, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        check_key(key)?;
        let stand_in = EventId::new(u64::MAX, Epoch::random());
        let text = stand_in.to_string();
        let event = encode_with_id(&make(&stand_in), &stand_in);
        let append = Append {
            event: event.as_bytes(),
            stand_in: &text,
            key,
            config: &self.hub,
        };
        let id = self.broker.append(name, append).await?;
        self.published.count();
        Ok(id)
    }

    async fn subscribe(
        self: &Arc<Self>,
        name: &str,
        cursor: Option<&str>,
    ) -> Result<Subscriber, HubError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(HubError::Closed);
        }
        let mut deadline = tokio::time::Instant::now() + 2 * self.timeout;
        let mut resynced = false;
        loop {
            let Handle {
                topic: mut rx,
                feed,
                syncs,
                asked,
            } = self.mirror(name)?;
            let ready = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some))
                .await
                .map(|ready| ready.map(|topic| topic.clone()));
            let topic = match ready {
                Err(_) => {
                    let server = self.broker.server_of(name);
                    return Err(unavailable(format!(
                        "could not read the topic from {server}"
                    )));
                }
                Ok(Err(_)) => {
                    // Its feeder ended: look again, after a pause, so that a
                    // broker that refuses the feed is not asked in a loop.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Ok(Ok(topic)) => topic,
            };
            let Some(topic) = topic else { continue };
            let parsed = cursor.and_then(|c| c.parse::<EventId>().ok());
            // A cursor of another epoch: the copy may be the stale one (the
            // broker lost the topic and another node already serves the new
            // epoch). Have the copy read the topic again (once) and judge the
            // cursor against what it finds.
            if let Some(id) = parsed.filter(|id| id.epoch() != topic.position().epoch()) {
                if !resynced {
                    resynced = true;
                    let before = syncs.load(Ordering::Acquire);
                    let sent =
                        asked.swap(true, Ordering::AcqRel) || feed.send(Feed::Resync).is_ok();
                    if sent {
                        let until = tokio::time::Instant::now() + CATCH_UP;
                        while syncs.load(Ordering::Acquire) == before
                            && topic.position().epoch() != id.epoch()
                            && tokio::time::Instant::now() < until
                        {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            }
            // An id just acknowledged (by this node or another) may reach this
            // node's copy a moment after the broker stored it: wait for the
            // copy to catch up rather than treat the cursor as one from the
            // future.
            let ahead = parsed.filter(|id| id.epoch() == topic.position().epoch());
            let mut waited = false;
            if let Some(id) = ahead {
                let catch_up = tokio::time::Instant::now() + CATCH_UP;
                while topic.position().offset() < id.offset()
                    && tokio::time::Instant::now() < catch_up
                {
                    waited = true;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let max_replay = self.hub.get_max_replay_bytes();
            if let Some(joined) = topic.subscribe_within(cursor, max_replay) {
                return Ok(Subscriber::new(topic, joined, self.hub.clone()));
            }
            if waited {
                // The copy was released while this waited: look it up afresh.
                deadline = tokio::time::Instant::now() + 2 * self.timeout;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// A store that is a [`RemoteStore`] under a name of its own (with its own
/// constructor, say `RedisStore::new(config)`): it is a [`Store`] by handing
/// every call to [`remote`](Self::remote), here, once for every such store.
///
/// ```
/// use tower_sse_hub::remote::{Broker, RemoteBacked, RemoteStore};
///
/// #[derive(Debug)]
/// struct MyStore<B: Broker>(RemoteStore<B>);
///
/// impl<B: Broker> RemoteBacked for MyStore<B> {
///     type Broker = B;
///     fn remote(&self) -> &RemoteStore<B> {
///         &self.0
///     }
/// }
/// ```
pub trait RemoteBacked: Send + Sync + fmt::Debug + 'static {
    /// The broker under the store.
    type Broker: Broker;

    /// The store every call goes to.
    fn remote(&self) -> &RemoteStore<Self::Broker>;
}

impl<T: RemoteBacked> Store for T {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: MakeEvent<'a>,
    ) -> StoreFuture<'a, Result<EventId, HubError>> {
        self.remote().publish(topic, key, make)
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Subscriber, HubError>> {
        self.remote().subscribe(topic, last_event_id)
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.remote().subscriber_count(topic)
    }

    fn topic_count(&self) -> usize {
        self.remote().topic_count()
    }

    fn position(&self, topic: &str) -> Option<EventId> {
        self.remote().position(topic)
    }

    fn close(&self) {
        self.remote().close();
    }
}

/// How long a subscribe waits for this node's copy of a topic to reach a
/// cursor of the topic's epoch that it has not seen yet (an id acknowledged a
/// moment ago); a cursor still ahead after that gets the `reset` notice.
const CATCH_UP: Duration = Duration::from_millis(250);

impl<B: Broker> Store for RemoteStore<B> {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: MakeEvent<'a>,
    ) -> StoreFuture<'a, Result<EventId, HubError>> {
        Box::pin(self.inner.publish(topic, key, make))
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Subscriber, HubError>> {
        Box::pin(self.inner.subscribe(topic, last_event_id))
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.inner
            .existing(topic)
            .map_or(0, |topic| topic.subscriber_count())
    }

    fn topic_count(&self) -> usize {
        lock(&self.inner.mirrors).len()
    }

    fn position(&self, topic: &str) -> Option<EventId> {
        self.inner.existing(topic).map(|topic| topic.position())
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let topics: Vec<Arc<Topic>> = lock(&self.inner.mirrors)
            .values()
            .filter_map(|m| m.handle.topic.borrow().clone())
            .collect();
        for topic in topics {
            topic
                .close()
                .into_iter()
                .flatten()
                .for_each(std::task::Waker::wake);
        }
    }
}
