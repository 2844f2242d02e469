//! The broadcast hub: named topics, shared encoded events, replay and lag policy.
//!
//! See [`Hub`].

mod config;
mod history;
mod subscriber;
mod topic;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::Waker,
};

pub use config::{HubConfig, Lag};
pub use subscriber::Subscriber;

use topic::Topic;

use crate::Event;

/// A broadcast hub: publish an event to a named topic (a chat room, a document, a
/// user's feed) and every subscriber of that topic receives it.
///
/// `Hub` is cheap to clone (a reference count) and runtime-agnostic: it needs no
/// async runtime, only `std` locks and wakers.
///
/// # Encode once, share everywhere
///
/// [`publish`](Self::publish) encodes the event once, into an
/// [`EncodedEvent`](crate::EncodedEvent), and hands every subscriber a clone of
/// the same `Bytes`. Fan-out to 10 000 subscribers costs 10 000 reference counts,
/// not 10 000 encodings. Each [`Subscriber`] is a `Stream` of those events, ready
/// for [`SseBody::from_events`](crate::SseBody::from_events).
///
/// # Ids and replay
///
/// The hub sets the `id:` of every event it publishes (any id on the event is
/// replaced). Ids are unique across the hub and increase in every topic; they are
/// not contiguous within a topic. Each topic keeps a bounded history
/// ([`HubConfig::history_len`], [`HubConfig::history_bytes`]).
///
/// [`subscribe_after`](Self::subscribe_after) takes the client's
/// `Last-Event-ID` ([`LastEventId`](crate::LastEventId)) and queues, in order,
/// exactly the events after it, then live events. The replay and the
/// registration happen under one lock, so an event published meanwhile is
/// delivered exactly once: no gap, no duplicate.
///
/// When the events after the cursor are no longer all in the history (evicted,
/// or the topic was cleaned up and created again), or the cursor is not one of the
/// hub's ids (not a number, or newer than the newest id, e.g. from before a server
/// restart), the subscriber gets a **reset event** instead of a silent gap:
///
/// ```text
/// event: reset
/// id: F
/// data: {"after":F}
/// ```
///
/// followed by every event the history still has (all with ids above `F`), then
/// live events. A client should drop its state on `reset` and rebuild it from
/// what follows.
///
/// # Slow subscribers
///
/// A topic keeps one log of live events, which every subscriber reads from its
/// own cursor, as `tokio::sync::broadcast` does: publishing appends once and wakes
/// the subscribers that wait, whatever their number. A subscriber may fall at most
/// [`HubConfig::queue_capacity`] events behind: a subscriber that stops reading
/// never blocks the publisher or the other subscribers, and never holds more than
/// that many events in memory. Beyond it the [`Lag`] policy applies: by default
/// its stream ends (after the events it had waiting) with a `retry:` hint, so the
/// client reconnects and resumes from the history; or ([`Lag::Skip`]) events are
/// dropped for it and a `gap` event tells it how many.
///
/// # Cleanup
///
/// A topic exists while it has subscribers. Dropping the last [`Subscriber`] (the
/// client disconnected) removes the topic and its history, so a hub whose
/// clients have all left holds nothing ([`topic_count`](Self::topic_count) is
/// `0`). Publishing to a topic without subscribers assigns an id and stores
/// nothing. When the last `Hub` handle is dropped, every subscriber's stream ends
/// after the events already queued.
///
/// # Beyond one process
///
/// The API exposes no storage: ids are `u64`s the hub hands out, cursors are the
/// strings clients send back, and subscribers are opaque streams of encoded
/// events. That is the seam for a broker-backed hub (Redis Streams is the
/// intended one for several server nodes): `publish` maps to `XADD` with `MAXLEN`
/// for the history bound, `subscribe_after` to `XRANGE` from the cursor followed
/// by a blocking `XREAD` from the last id replayed (the same no-gap, no-duplicate
/// handover), and ids to the stream's entry ids packed into a `u64`. Handlers
/// written against this API would not change.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::StreamExt;
/// use tower_sse::{Event, Hub, LastEventId, SseBody};
///
/// let hub = Hub::new();
/// let mut alice = hub.subscribe("room");
/// let first = hub.publish("room", Event::message("hi"));
/// let second = hub.publish("room", Event::message("how are you?"));
/// assert_eq!((first, second), (1, 2));
/// assert_eq!(hub.subscriber_count("room"), 1);
///
/// // Bob got "hi" (id 1) before his connection dropped: he comes back with
/// // `Last-Event-ID: 1` and gets exactly what he missed, then live events.
/// let req = http::Request::get("/sse").header("last-event-id", "1").body(()).unwrap();
/// let last = LastEventId::from_request(&req);
/// let bob = hub.subscribe_after("room", last.as_deref());
/// hub.publish("room", Event::message("fine"));
///
/// let bytes: Vec<_> = bob.take(2).collect().await;
/// assert_eq!(bytes[0].as_bytes(), b"id: 2\ndata: how are you?\n\n".as_slice());
/// assert_eq!(bytes[1].as_bytes(), b"id: 3\ndata: fine\n\n".as_slice());
///
/// // In a handler: `SseBody::from_events(subscriber).into_response()`.
/// let _body = SseBody::from_events(hub.subscribe("room"));
/// assert_eq!(alice.next().await.unwrap().as_bytes(), b"id: 1\ndata: hi\n\n".as_slice());
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    /// Counts the `Hub` handles (subscribers hold `shared` only): when the last
    /// one goes, every stream is ended.
    _handles: Arc<Handles>,
}

pub(crate) struct Shared {
    config: HubConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_id: u64,
    topics: HashMap<Arc<str>, Arc<Topic>>,
}

impl Hub {
    /// A hub with the default [`HubConfig`].
    pub fn new() -> Self {
        Self::with_config(HubConfig::new())
    }

    /// A hub with `config`.
    pub fn with_config(config: HubConfig) -> Self {
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State::default()),
        });
        Self {
            _handles: Arc::new(Handles(shared.clone())),
            shared,
        }
    }

    /// Publishes `event` to `topic` and returns its id. The event's own `id`, if
    /// any, is replaced by the hub's.
    pub fn publish(&self, topic: &str, event: Event) -> u64 {
        self.publish_with(topic, |_| event)
    }

    /// Publishes the event that `make` builds from its id, for events whose data
    /// carries the id (a chat message as JSON, say). Returns the id.
    ///
    /// `make` runs under the hub's lock, and only when the topic has
    /// subscribers: keep it short.
    ///
    /// ```
    /// let hub = tower_sse::Hub::new();
    /// let _sub = hub.subscribe("t");
    /// let id = hub.publish_with("t", |id| tower_sse::Event::message(format!("#{id}")));
    /// assert_eq!(id, 1);
    /// ```
    pub fn publish_with(&self, topic: &str, make: impl FnOnce(u64) -> Event) -> u64 {
        let mut wakers = Vec::new();
        let id = {
            let mut state = self.shared.lock();
            state.last_id += 1;
            let id = state.last_id;
            if let Some(topic) = state.topics.get(topic) {
                // Decimal digits are always a valid id.
                let event = make(id).id(id.to_string()).unwrap_or_default().encode();
                wakers = topic.publish(id, event, &self.shared.config);
            }
            id
        };
        wakers.into_iter().flatten().for_each(Waker::wake);
        id
    }

    /// Subscribes to the live events of `topic`, from now on.
    pub fn subscribe(&self, topic: &str) -> Subscriber {
        self.subscribe_after(topic, None)
    }

    /// Subscribes to `topic`, first replaying the events after `last_event_id`
    /// (the `Last-Event-ID` a reconnecting client sent), or a reset event when the
    /// history cannot replay them exactly; see the [type's docs](Self).
    /// `None` subscribes from now on, like [`subscribe`](Self::subscribe).
    pub fn subscribe_after(&self, topic: &str, last_event_id: Option<&str>) -> Subscriber {
        let (topic, slot) = {
            let mut state = self.shared.lock();
            let last_id = state.last_id;
            let topic = match state.topics.get(topic) {
                Some(existing) => existing.clone(),
                None => {
                    let name: Arc<str> = Arc::from(topic);
                    let new = Arc::new(Topic::new(name.clone(), last_id, &self.shared.config));
                    state.topics.insert(name, new.clone());
                    new
                }
            };
            // Under the hub's lock: no publish can come between the replay and
            // the subscription.
            let slot = topic.subscribe(last_event_id, last_id);
            (topic, slot)
        };
        Subscriber::new(topic, slot, self.shared.clone())
    }

    /// How many subscribers `topic` has now.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shared
            .lock()
            .topics
            .get(topic)
            .map_or(0, |topic| topic.subscriber_count())
    }

    /// How many topics have subscribers now.
    pub fn topic_count(&self) -> usize {
        self.shared.lock().topics.len()
    }

    /// The id of the last event published to any topic (`0` before the first).
    pub fn last_id(&self) -> u64 {
        self.shared.lock().last_id
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Hub")
            .field("topics", &state.topics.len())
            .field("last_id", &state.last_id)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of `State` completes before anything that could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a subscriber, and its topic with it if it was the last one (and
    /// the topic is still the hub's, not one created again under the same name).
    pub(crate) fn unsubscribe(&self, topic: &Arc<Topic>, slot: usize) {
        let mut state = self.lock();
        let empty = topic.unsubscribe(slot);
        if empty
            && state
                .topics
                .get(topic.name())
                .is_some_and(|t| Arc::ptr_eq(t, topic))
        {
            state.topics.remove(topic.name());
        }
    }
}

/// Ends every stream when the last [`Hub`] handle is dropped.
struct Handles(Arc<Shared>);

impl Drop for Handles {
    fn drop(&mut self) {
        let mut wakers = Vec::new();
        {
            let mut state = self.0.lock();
            for topic in state.topics.values() {
                wakers.extend(topic.close());
            }
            state.topics.clear();
        }
        wakers.into_iter().flatten().for_each(Waker::wake);
    }
}
