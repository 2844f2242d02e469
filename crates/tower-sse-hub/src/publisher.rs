//! A topic to publish to, found once: [`Publisher`].

use std::{fmt, sync::Arc};

use tower_sse::Event;

use crate::{topic::Topic, EventId, Hub, HubError};

/// A topic to publish to, for a task that publishes to it often (a chat
/// room's sender, a feed's producer): made by [`Hub::publisher`].
///
/// Its [`publish`](Self::publish) is [`Hub::publish`] to its topic, with the
/// same ids, history and errors. On the in-process store it finds the topic
/// once, where `Hub::publish` hashes the name and looks it up on every call;
/// a topic freed meanwhile (no subscribers and past its retention, or evicted
/// at the topic bound) is found, and so made, again on the next publish,
/// exactly as `Hub::publish` would. On a networked store it publishes by name,
/// as `Hub::publish` does.
///
/// A `Publisher` is a handle of its hub, like a [`Hub`] clone: the hub's
/// streams go on while one is alive. Clones share nothing but the hub and the
/// topic; give each task its own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
/// use tower_sse::Event;
/// use tower_sse_hub::Hub;
///
/// let hub = Hub::new();
/// let mut room = hub.publisher("room-1");
/// let first = room.publish(Event::message("hello")).await?;
/// let second = room.publish(Event::message("again")).await?;
/// assert_eq!((first.offset(), second.offset()), (1, 2));
/// assert_eq!(hub.position("room-1"), Some(second));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    hub: Hub,
    topic: Arc<str>,
    /// The in-process store's topic, once a publish found it.
    found: Option<Arc<Topic>>,
}

impl Publisher {
    pub(crate) fn new(hub: Hub, topic: &str) -> Self {
        Self {
            hub,
            topic: Arc::from(topic),
            found: None,
        }
    }

    /// Publishes `event` to the topic, as [`Hub::publish`] does.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`].
    pub async fn publish(&mut self, event: Event) -> Result<EventId, HubError> {
        match &self.hub.memory {
            Some(memory) => memory.publish_event_to(&mut self.found, &self.topic, &event),
            // The store's boxed future awaited directly (as `Hub::publish`
            // does), not `Hub::publish`'s: this future stays small, and every
            // publish moves it.
            None => {
                let store = &self.hub.store;
                store
                    .publish(&self.topic, None, Box::new(move |_| event))
                    .await
            }
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The hub it publishes to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("found", &self.found.is_some())
            .finish_non_exhaustive()
    }
}
