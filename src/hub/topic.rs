//! One topic of the hub: its history and its subscribers.

use std::{collections::VecDeque, sync::Arc, task::Waker};

use super::{
    config::HubConfig,
    history::History,
    subscriber::{Offer, Queue},
};
use crate::{EncodedEvent, Event};

/// A topic: the subscribers to fan out to, and the history to replay from.
#[derive(Debug)]
pub(crate) struct Topic {
    history: History,
    subscribers: Vec<Arc<Queue>>,
}

impl Topic {
    /// A topic created when the hub's last id was `last_id`.
    pub(crate) fn new(last_id: u64, config: &HubConfig) -> Self {
        Self {
            history: History::new(
                last_id,
                config.get_history_len(),
                config.get_history_bytes(),
            ),
            subscribers: Vec::new(),
        }
    }

    /// Keeps `event` in the history and queues it for every subscriber, collecting
    /// the wakers to call once the hub's lock is released.
    pub(crate) fn publish(
        &mut self,
        id: u64,
        event: EncodedEvent,
        config: &HubConfig,
        wakers: &mut Vec<Waker>,
    ) {
        let (capacity, lag) = (config.get_queue_capacity(), config.get_lag());
        self.subscribers.retain(|queue| {
            let (waker, keep) = match queue.offer(id, &event, capacity, lag) {
                Offer::Kept(waker) => (waker, true),
                Offer::Closed(waker) => (waker, false),
            };
            wakers.extend(waker);
            keep
        });
        self.history.push(id, event);
    }

    /// Adds a subscriber, its queue primed with the replay for `cursor` (see
    /// [`Hub::subscribe_after`](crate::Hub::subscribe_after)).
    pub(crate) fn subscribe(&mut self, cursor: Option<&str>, last_id: u64) -> Arc<Queue> {
        let replay = match cursor {
            None => VecDeque::new(),
            Some(cursor) => {
                let exact = cursor
                    .parse::<u64>()
                    .ok()
                    .filter(|&cursor| cursor <= last_id)
                    .and_then(|cursor| self.history.after(cursor));
                match exact {
                    Some(events) => events.cloned().collect(),
                    None => {
                        let mut replay = VecDeque::with_capacity(self.history.len() + 1);
                        replay.push_back(reset_notice(self.history.floor()));
                        replay.extend(self.history.all().cloned());
                        replay
                    }
                }
            }
        };
        let queue = Arc::new(Queue::with_replay(replay));
        self.subscribers.push(queue.clone());
        queue
    }

    /// Removes a subscriber; whether the topic is now without subscribers.
    pub(crate) fn unsubscribe(&mut self, queue: &Arc<Queue>) -> bool {
        if let Some(at) = self.subscribers.iter().position(|q| Arc::ptr_eq(q, queue)) {
            self.subscribers.swap_remove(at);
        }
        self.subscribers.is_empty()
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Ends every subscriber's stream (the hub is being dropped).
    pub(crate) fn close_all(&mut self, wakers: &mut Vec<Waker>) {
        for queue in self.subscribers.drain(..) {
            wakers.extend(queue.close());
        }
    }
}

/// `event: reset`, with the id after which what follows is complete.
fn reset_notice(floor: u64) -> EncodedEvent {
    Event::default()
        .event("reset")
        .and_then(|e| e.id(floor.to_string()))
        .map(|e| e.data(format!("{{\"after\":{floor}}}")))
        .unwrap_or_default()
        .encode()
}
