//! [`Channels`]: the channels a node follows on one Pub/Sub connection (a
//! standalone server's, or a cluster's sharded one): each channel's feed, and
//! the requests to the task that keeps that connection.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use tokio::sync::{mpsc, oneshot};
use tower_sse_hub::remote::FeedSender;

/// Each subscribed channel's feed: its messages as `Feed::Live`, and a
/// `Feed::Resync` whenever the Pub/Sub connection is (re)established
/// (messages may have been lost while it was down).
pub(super) type Routes = Arc<Mutex<HashMap<String, FeedSender>>>;

/// A request to the Pub/Sub task.
pub(super) enum Control {
    /// Subscribe to a channel already in the routes; answer once Redis confirmed.
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// The channels of one Pub/Sub connection, as the store sees them.
pub(super) struct Channels {
    routes: Routes,
    control: mpsc::UnboundedSender<Control>,
}

impl Channels {
    /// No channel yet; with the routes and the requests, for the Pub/Sub task.
    pub(super) fn new() -> (Self, Routes, mpsc::UnboundedReceiver<Control>) {
        let routes = Routes::default();
        let (control, requests) = mpsc::unbounded_channel();
        let channels = Self {
            routes: routes.clone(),
            control,
        };
        (channels, routes, requests)
    }

    /// Routes `channel`'s messages to `feed` and subscribes to it; the
    /// receiver answers once Redis confirmed the subscription (after a
    /// reconnection if the Pub/Sub connection is down now).
    pub(super) fn subscribe(&self, channel: &str, feed: FeedSender) -> oneshot::Receiver<()> {
        lock(&self.routes).insert(channel.to_owned(), feed);
        let (tx, rx) = oneshot::channel();
        let _ = self
            .control
            .send(Control::Subscribe(channel.to_owned(), tx));
        rx
    }

    /// Stops routing `channel` and unsubscribes from it.
    pub(super) fn unsubscribe(&self, channel: &str) {
        lock(&self.routes).remove(channel);
        let _ = self.control.send(Control::Unsubscribe(channel.to_owned()));
    }
}

/// Locks `mutex`, also when poisoned (every critical section here leaves
/// its map consistent).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
