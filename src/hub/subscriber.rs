//! [`Subscriber`]: one reader of a topic, a stream of shared encoded events.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_core::Stream;

use super::{
    topic::{Cursor, Topic},
    Shared,
};
use crate::EncodedEvent;

/// One subscription to a topic of a [`Hub`](crate::Hub): a `Stream` of the
/// topic's events, already encoded and shared with every other subscriber.
///
/// Give it to [`SseBody::from_events`](crate::SseBody::from_events). Dropping it
/// (which is what happens when the client disconnects and its body is dropped)
/// unsubscribes at once, and removes the topic when it was the last subscriber.
///
/// The stream ends only when the [`Lag::Disconnect`](crate::Lag::Disconnect)
/// policy removed the subscriber for falling behind, or when the last
/// [`Hub`](crate::Hub) handle is dropped; otherwise it waits for events forever.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::StreamExt;
/// use tower_sse::{Event, Hub};
///
/// let hub = Hub::new();
/// let mut sub = hub.subscribe("news");
/// assert_eq!(sub.topic(), "news");
/// hub.publish("news", Event::message("hello"));
/// let event = sub.next().await.unwrap();
/// assert_eq!(event.as_bytes(), b"id: 1\ndata: hello\n\n".as_slice());
/// # }
/// ```
pub struct Subscriber {
    topic: Arc<Topic>,
    /// Its place in the topic.
    slot: usize,
    shared: Arc<Shared>,
    cursor: Cursor,
}

impl Subscriber {
    pub(crate) fn new(topic: Arc<Topic>, slot: usize, shared: Arc<Shared>) -> Self {
        Self {
            topic,
            slot,
            shared,
            cursor: Cursor::default(),
        }
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// How many events wait to be read (replayed ones included).
    pub fn queued(&self) -> usize {
        self.cursor.local.len() + self.topic.queued(self.slot)
    }
}

impl Stream for Subscriber {
    type Item = EncodedEvent;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EncodedEvent>> {
        let this = self.get_mut();
        this.topic.poll_next(this.slot, &mut this.cursor, cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.unsubscribe(&self.topic, self.slot);
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic())
            .field("queued", &self.queued())
            .finish()
    }
}
