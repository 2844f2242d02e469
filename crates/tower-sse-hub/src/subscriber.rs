//! [`Subscriber`]: one reader of a topic, a stream of shared encoded events.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;

use super::{
    topic::{Cursor, Joined, Topic},
    EventId, HubConfig,
};
use tower_sse::EncodedEvent;

/// One subscription to a topic of a [`Hub`](crate::Hub): a `Stream` of the
/// topic's events, already encoded and shared with every other subscriber.
///
/// It is a cursor into the topic's history, not a queue: a subscriber holds at
/// most a small batch of events of its own, however far behind it is.
///
/// Give it to [`SseBody::from_events`](tower_sse::SseBody::from_events). Dropping it
/// (which is what happens when the client disconnects and its body is dropped)
/// unsubscribes at once; the topic's history stays for
/// [`HubConfig::history_ttl`] after its last publish or its last subscriber
/// leaving, whichever is later.
///
/// The stream ends only when the [`Lag::Disconnect`](crate::Lag::Disconnect)
/// policy cut the subscriber off for falling behind, or when the last
/// [`Hub`](crate::Hub) handle is dropped; otherwise it waits for events forever.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
/// use futures_util::StreamExt;
/// use tower_sse::Event;
/// use tower_sse_hub::Hub;
///
/// let hub = Hub::new();
/// let mut sub = hub.subscribe("news", None).await?;
/// assert_eq!(sub.topic(), "news");
/// let id = hub.publish("news", Event::message("hello")).await?;
/// let event = sub.next().await.unwrap();
/// assert_eq!(event.as_bytes(), format!("id: {id}\ndata: hello\n\n").as_bytes());
/// # Ok(()) }
/// ```
pub struct Subscriber {
    topic: Arc<Topic>,
    cursor: Cursor,
    position: EventId,
    config: Arc<HubConfig>,
}

impl Subscriber {
    pub(crate) fn new(topic: Arc<Topic>, joined: Joined, config: Arc<HubConfig>) -> Self {
        Self {
            cursor: Cursor::new(&joined),
            position: joined.position,
            topic,
            config,
        }
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// The id of the topic's last event when this subscription started: the
    /// replay (if any) ends with it, live events follow it. Offset `0` when the
    /// topic had no event yet.
    pub fn position(&self) -> EventId {
        self.position
    }

    /// Queues `event` right after the replay, before any live event: a snapshot
    /// of state as of [`position`](Self::position) (a chat's member list), which
    /// the client applies after catching up and before what changes it next.
    ///
    /// A snapshot as large as the state it describes (a room's member list)
    /// is best made with [`EncodedEvent::from_parts`]: its large piece shared
    /// by every subscriber that gets the same state, only its small pieces
    /// (this subscriber's name, the id) its own.
    pub fn then(mut self, event: impl Into<EncodedEvent>) -> Self {
        self.greet(event.into());
        self
    }

    /// [`then`](Self::then), in place.
    pub(crate) fn greet(&mut self, event: EncodedEvent) {
        if self.cursor.at >= self.position.offset() {
            self.cursor.local.push_back((0, event));
        } else {
            self.cursor.greeting = Some((self.position.offset(), event));
        }
    }

    /// Where the event yielded last was in this process's commit order, across
    /// topics (0 for the hub's notices and greetings, and before any event).
    pub(crate) fn stamp(&self) -> u64 {
        self.cursor.stamp
    }

    /// Events taken from the topic and not yet yielded (at most a small batch).
    pub fn buffered(&self) -> usize {
        self.cursor.local.len()
    }
}

impl Stream for Subscriber {
    type Item = EncodedEvent;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EncodedEvent>> {
        let this = self.get_mut();
        this.topic.poll_next(&mut this.cursor, &this.config, cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.topic.unsubscribe(self.cursor.slot);
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic())
            .field("position", &self.position)
            .field("buffered", &self.buffered())
            .finish()
    }
}
