//! [`Store`]: where a hub's history and live fan-out live, and the contract every
//! store keeps.

use std::{fmt, future::Future, pin::Pin};

use super::{EventId, Subscriber};
use crate::Event;

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
/// Every store keeps these promises; `tests/store_contract.rs` checks them for
/// each implementation.
///
/// 1. **One order per topic.** Each published event gets the topic's next offset
///    (1, 2, 3, ...: no hole, no repeat) in the topic's current epoch, and every
///    subscriber receives a topic's events in offset order, each exactly once.
/// 2. **Acknowledged means stored.** [`publish`](Self::publish) resolves with the
///    id only once the event is in the history, from where any subscriber (of any
///    node) can replay it; an error means it was not published.
/// 3. **Epochs.** A topic's history belongs to one epoch, drawn when the history
///    starts. A cursor is honoured only if its epoch is the topic's and its offset
///    is still in the history; otherwise the subscriber first gets the `reset`
///    notice (`event: reset`, `id:` and data `{"after":"ID"}` naming the id after
///    which the history is complete) and then what the history holds. A cursor is
///    never replayed from in another epoch.
/// 4. **Retention.** A topic's history (bounded by count and bytes) outlives its
///    subscribers for the configured TTL after its last publish, and a publish to
///    a topic without subscribers is stored.
/// 5. **Replay, then live, with no gap and no duplicate.** A subscriber with a
///    cursor gets every event after it, then live events, with nothing lost and
///    nothing twice across the handover, whatever is published meanwhile.
/// 6. **Lag never blocks.** A subscriber that reads too slowly is handled by the
///    [`Lag`](super::Lag) policy; the publisher and the other subscribers are
///    never held up.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Publishes the event `make` builds from its id to `topic`; resolves with the
    /// id once the event is stored.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
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
pub(crate) fn encode_with_id(event: Event, id: &EventId) -> crate::EncodedEvent {
    // An `EventId` is digits, `-` and lowercase letters: always a valid id.
    event.id(id.to_string()).unwrap_or_default().encode()
}

/// Why a hub operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// Every [`Hub`](super::Hub) handle was dropped.
    Closed,
    /// The store could not be reached or failed; nothing was published.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the hub is closed"),
            Self::Unavailable(err) => write!(f, "the hub's store is unavailable: {err}"),
        }
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Closed => None,
            Self::Unavailable(err) => Some(&**err),
        }
    }
}
