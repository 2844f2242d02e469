//! [`Store`]: where a hub's history and live fan-out live, and the contract every
//! store keeps.

use std::{fmt, future::Future, pin::Pin};

use super::{EventId, Subscriber};
use tower_sse::Event;

/// A boxed future returned by a [`Store`]: in memory it is ready at once; a
/// networked store awaits its broker.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Builds the event to publish from the id it will have (a chat message whose
/// JSON carries its id, say).
pub type MakeEvent<'a> = Box<dyn FnOnce(&EventId) -> Event + Send + 'a>;

/// Where a [`Hub`](super::Hub) keeps each topic's history and how it delivers live
/// events: [`MemoryStore`](super::MemoryStore) in this process (the default),
/// or a broker shared by several server nodes. The hub's API, and so every
/// handler written against it, is the same whatever the store.
///
/// # The contract
///
/// Every store keeps these promises; the test kit [`contract`](crate::contract)
/// (feature `contract`) checks them, and every store crate runs it against its
/// store.
///
/// 1. **One order per topic.** Each published event gets the topic's next offset
///    (1, 2, 3, ...: no hole, no repeat) in the topic's current epoch, and every
///    subscriber receives a topic's events in offset order, each exactly once.
/// 2. **Acknowledged means stored.** [`publish`](Self::publish) resolves with the
///    id only once the event is in the history, from where any subscriber (of any
///    node) can replay it. An error means it was not published, except
///    [`HubError::Unavailable`] from a networked store whose broker did not
///    answer in time, which cannot know: the event may have been stored. A
///    publish with an idempotency key makes that exact: retried with the same
///    key, it is stored at most once, and a retry is answered with the first
///    publish's id (see [`Hub::publish_once`](super::Hub::publish_once)).
/// 3. **Epochs.** A topic's history belongs to one epoch, drawn when the history
///    starts. A cursor is honoured only if its epoch is the topic's and its offset
///    is still in the history; otherwise the subscriber first gets the `reset`
///    notice (`event: reset`, `id:` and data `{"after":"ID"}` naming the id after
///    which the history is complete) and then what the history holds. A cursor is
///    never replayed from in another epoch.
/// 4. **Retention.** A topic's history (bounded by count and bytes) outlives its
///    subscribers for at least the configured TTL after its last publish (the
///    in-process store counts from its last subscriber leaving when that is
///    later; the networked ones renew a topic while a node has subscribers),
///    and a publish to a topic without subscribers is stored.
/// 5. **Replay, then live, with no gap and no duplicate.** A subscriber with a
///    cursor gets every event after it, then live events, with nothing lost and
///    nothing twice across the handover, whatever is published meanwhile.
/// 6. **Lag never blocks.** A subscriber that reads too slowly is handled by the
///    [`Lag`](super::Lag) policy; the publisher and the other subscribers are
///    never held up.
/// 7. **Idempotent publish.** Within the
///    [`idempotency_window`](super::HubConfig::idempotency_window), a publish
///    with a key already used on the topic stores nothing and resolves with the
///    id the key got, decided in the same atomic step that stores (two
///    concurrent publishes with one key store one event).
/// 8. **Epoch changes in-band.** When a topic's history is lost under open
///    streams (a broker restarted empty, or the topic expired there), the
///    streams stay open: each gets the `reset` notice, then the new epoch's
///    events from its start. A topic with subscribers on some node does not
///    expire.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Publishes the event `make` builds from its id to `topic`; resolves with the
    /// id once the event is stored. With an idempotency `key`, a key already
    /// used on the topic within the window stores nothing and resolves with the
    /// id it got (`make` is then not called, or its event dropped).
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: MakeEvent<'a>,
    ) -> StoreFuture<'a, Result<EventId, HubError>>;

    /// Subscribes to `topic` after `last_event_id` (a client's `Last-Event-ID`; `None`
    /// for live events only).
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> StoreFuture<'a, Result<Subscriber, HubError>>;

    /// How many subscribers `topic` has on this node.
    fn subscriber_count(&self, topic: &str) -> usize;

    /// How many topics this node holds (with subscribers or retained history).
    fn topic_count(&self) -> usize;

    /// The id of the last event of `topic`, if this node holds the topic.
    fn position(&self, topic: &str) -> Option<EventId>;

    /// Ends every subscriber's stream after what it has left to read: the last
    /// [`Hub`](super::Hub) handle was dropped.
    fn close(&self);
}

/// Encodes `event` with `id` as its `id:`, replacing any id of its own: what
/// every store does to the event a publisher built.
pub(crate) fn encode_with_id(event: &Event, id: &EventId) -> tower_sse::EncodedEvent {
    id.with_text(|id| encode_with_id_text(event, id))
}

/// As [`encode_with_id`], with the id's text at hand (a topic keeps its
/// latest id's text).
#[inline]
pub(crate) fn encode_with_id_text(event: &Event, id: &str) -> tower_sse::EncodedEvent {
    // An `EventId` is digits, `-` and lowercase letters: always a valid id.
    event
        .encode_with_id(id)
        .unwrap_or_else(|_| Event::default().encode())
}

/// The longest idempotency key a store takes, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Checks an idempotency key: 1 to [`MAX_KEY_LEN`] bytes.
pub(crate) fn check_key(key: Option<&str>) -> Result<(), HubError> {
    match key {
        Some(key) if key.is_empty() || key.len() > MAX_KEY_LEN => Err(HubError::InvalidKey),
        _ => Ok(()),
    }
}

/// Why a hub operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// Every [`Hub`](super::Hub) handle was dropped.
    Closed,
    /// A new topic cannot be made now: the store holds
    /// [`HubConfig::max_topics`](super::HubConfig::max_topics) topics and every
    /// one has subscribers (none can be evicted). Nothing was published or
    /// subscribed; try again later (an HTTP server answers `503` with
    /// `retry-after`).
    Full,
    /// An idempotency key longer than [`MAX_KEY_LEN`] bytes or empty: nothing
    /// was published.
    InvalidKey,
    /// The store could not be reached or failed; nothing was published.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// A multi-topic subscription with no topic, or more than
    /// [`MAX_TOPICS`](crate::MAX_TOPICS): nothing was subscribed.
    InvalidTopics,
    /// Every topic of a multi-topic subscription was refused by its
    /// authorization: nothing was subscribed (an HTTP server answers `403`).
    Refused,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the hub is closed"),
            Self::Full => f.write_str("the hub holds its maximum number of topics, all in use"),
            Self::InvalidKey => write!(f, "an idempotency key must be 1 to {MAX_KEY_LEN} bytes"),
            Self::Unavailable(err) => write!(f, "the hub's store is unavailable: {err}"),
            Self::InvalidTopics => write!(
                f,
                "a multi-topic subscription takes 1 to {} topics",
                crate::MAX_TOPICS
            ),
            Self::Refused => f.write_str("every topic asked for was refused"),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Closed | Self::Full | Self::InvalidKey | Self::InvalidTopics | Self::Refused => {
                None
            }
            Self::Unavailable(err) => Some(&**err),
        }
    }
}
