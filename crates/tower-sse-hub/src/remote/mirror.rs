//! A node's copy of one topic: the same ring of encoded events as the memory
//! store's ([`Topic`]), fed from the broker by one task per topic, so that each
//! event is encoded once per node and shared by the node's subscribers.
//!
//! The feeder starts the topic's live feed first and reads the log only once
//! the broker confirmed it: whatever is stored from then on waits in the
//! feeder's queue while the history is read, and is then taken in offset
//! order, skipping what the history already gave (no gap, no duplicate). An
//! event whose offset is beyond the next one (a live event lost while the
//! broker's connection was down, or a reconnection) makes the feeder read the
//! log from the next offset. A new epoch in the broker (restarted empty,
//! expired) or a hole the log no longer holds starts the copy over in place
//! ([`Topic::rebase`]): the node's subscribers keep their streams and get the
//! `reset` notice in-band, then the new epoch's events. While the copy has
//! subscribers, the feeder renews the topic's retention in the broker, so that
//! a quiet topic does not expire under them.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use tower_sse::EncodedEvent;

use super::{Broker, Entry, Feed, FeedSender, Inner, Range};
use crate::{
    sync::now,
    topic::{wake, Topic},
    Epoch, EventId,
};

/// How often a feeder checks whether its topic still has subscribers, and
/// retries a failed read of the stream.
const TICK: Duration = Duration::from_millis(500);
/// Idle ticks before a topic without subscribers is let go (a client that
/// reconnects at once finds the copy still there).
const IDLE_TICKS: u32 = 4;

/// Spawns the feeder of `name`: the receiver holds its topic once read, the
/// sender is its queue (a [`Feed::Resync`] makes it read the topic again), and
/// `syncs` counts its completed reads.
pub(super) fn spawn<B: Broker>(
    store: Weak<Inner<B>>,
    name: Arc<str>,
    serial: u64,
    (syncs, asked): (Arc<AtomicU64>, Arc<AtomicBool>),
) -> (
    watch::Receiver<Option<Arc<Topic>>>,
    mpsc::UnboundedSender<Feed>,
) {
    let (tx, rx) = watch::channel(None);
    let (feed, queue) = mpsc::unbounded_channel();
    let feeder = Feeder {
        store,
        name,
        feed: FeedSender(feed.clone()),
        serial,
        topic: None,
        published: tx,
        stale: true,
        syncs,
        asked,
        renewed: None,
    };
    tokio::spawn(feeder.run(queue));
    (rx, feed)
}

struct Feeder<B> {
    store: Weak<Inner<B>>,
    name: Arc<str>,
    /// What the broker's live feed of the topic is given.
    feed: FeedSender,
    /// Tells this feeder's entry in the store's map from a later one's.
    serial: u64,
    topic: Option<Arc<Topic>>,
    published: watch::Sender<Option<Arc<Topic>>>,
    /// The stream must be read before the copy is known complete.
    stale: bool,
    /// Counts completed reads (see [`spawn`]).
    syncs: Arc<AtomicU64>,
    /// Set by a subscribe that asked for a read; cleared when one starts.
    asked: Arc<AtomicBool>,
    /// When the topic's retention in the broker was last renewed.
    renewed: Option<Instant>,
}

impl<B: Broker> Feeder<B> {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Feed>) {
        if !self.watch().await {
            return self.leave();
        }
        let mut tick = tokio::time::interval(TICK);
        let mut idle = 0;
        loop {
            if self.stale {
                self.sync().await;
            }
            tokio::select! {
                feed = queue.recv() => match feed {
                    Some(Feed::Live { epoch, entry }) => self.live(epoch, &entry).await,
                    Some(Feed::Resync) => self.stale = true,
                    None => return self.leave(),
                },
                _ = tick.tick() => {
                    let Some(store) = self.store.upgrade() else { return self.leave() };
                    let unused = self.topic.as_ref().is_none_or(|t| t.subscriber_count() == 0);
                    idle = if unused { idle + 1 } else { 0 };
                    if idle >= IDLE_TICKS && store.release(&self.name, self.serial, self.topic.as_deref()) {
                        return self.leave();
                    }
                    if !unused {
                        self.renew(&store).await;
                    }
                }
            }
        }
    }

    /// Starts the broker's live feed of the topic, retried every tick while
    /// the broker refuses it; `false` when the store is gone or the copy was
    /// let go meanwhile (nobody waited for it).
    async fn watch(&mut self) -> bool {
        let mut idle = 0;
        loop {
            let Some(store) = self.store.upgrade() else {
                return false;
            };
            let confirmed = store.broker.watch(&self.name, self.feed.clone());
            drop(store);
            if confirmed.await.is_ok() {
                return true;
            }
            tokio::time::sleep(TICK).await;
            idle += 1;
            let Some(store) = self.store.upgrade() else {
                return false;
            };
            if idle >= IDLE_TICKS && store.release(&self.name, self.serial, None) {
                return false;
            }
        }
    }

    /// Renews the topic's retention in the broker when a quarter of the TTL
    /// has passed since the last renewal: a topic with subscribers on this
    /// node must not expire in the broker however quiet it is (its next
    /// publish would start a new epoch under every member). Runs in a task of
    /// its own, so that a broker slow to answer never holds up live events; a
    /// failure is retried a quarter of the TTL later, well within the TTL.
    async fn renew(&mut self, store: &Arc<Inner<B>>) {
        let every = (store.hub.get_history_ttl() / 4).max(TICK);
        let now = now();
        if self
            .renewed
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return;
        }
        self.renewed = Some(now);
        let (store, name) = (store.clone(), self.name.clone());
        tokio::spawn(async move {
            let renew = store.broker.renew(&name, &store.hub);
            let _ = tokio::time::timeout(store.timeout, renew).await;
        });
    }

    /// Ends the copy's streams. The live feed was stopped by the store
    /// (`release`), under its lock, so as not to race a newer copy.
    fn leave(&self) {
        if let Some(topic) = &self.topic {
            wake(topic.close());
        }
    }

    /// Takes an event of the live feed.
    async fn live(&mut self, epoch: Epoch, entry: &Entry) {
        match &self.topic {
            Some(topic) if topic.position().epoch() == epoch => {
                let next = topic.position().offset().saturating_add(1);
                if entry.offset == next {
                    self.append(entry);
                } else if entry.offset > next {
                    self.stale = true;
                    self.sync().await;
                }
            }
            _ => {
                self.stale = true;
                self.sync().await;
            }
        }
    }

    /// Reads the log after the last offset held (all of it the first time),
    /// and brings the copy up to date; on failure, stays stale and is retried.
    async fn sync(&mut self) {
        let Some(store) = self.store.upgrade() else {
            return;
        };
        // Any read that starts from now on answers the subscribes that asked.
        self.asked.store(false, Ordering::Release);
        let held = self.topic.as_ref().map(|t| t.position());
        let mut from = held.map_or(0, |at| at.offset().saturating_add(1));
        let synced = loop {
            let read = store.broker.read(&self.name, from, &store.hub);
            let Ok(Ok(synced)) = tokio::time::timeout(store.timeout, read).await else {
                return;
            };
            // Another epoch: its history is read from its start.
            if from == 0 || held.is_some_and(|at| at.epoch() == synced.epoch) {
                break synced;
            }
            from = 0;
        };
        let closed = store.closed.load(Ordering::SeqCst);
        self.apply(synced, closed);
        // `close` may have looked at the copies between the read of its flag
        // and the first copy's publication: look again (closing twice is
        // harmless).
        if !closed && store.closed.load(Ordering::SeqCst) {
            if let Some(topic) = &self.topic {
                wake(topic.close());
            }
        }
        drop(store);
        self.stale = false;
        self.syncs.fetch_add(1, Ordering::Release);
    }

    fn apply(&mut self, synced: Range, closed: bool) {
        let Range {
            epoch,
            top,
            entries,
        } = synced;
        let first = entries.first().map_or(top.saturating_add(1), |e| e.offset);
        let held = self
            .topic
            .as_ref()
            .filter(|t| t.position().epoch() == epoch)
            .map(|t| t.position().offset());
        match held {
            // Complete after what we hold: append what is new. (A top below
            // what we hold: the broker came back from an older snapshot, and the
            // ids we handed out past its top will be reused; start over.)
            Some(position) if first <= position.saturating_add(1) && top >= position => {}
            // Another epoch, a hole the stream no longer holds, or the first read.
            _ => self.replace(epoch, first.saturating_sub(1), closed),
        }
        for entry in &entries {
            if let Some(topic) = &self.topic {
                if entry.offset == topic.position().offset().saturating_add(1) {
                    self.append(entry);
                }
            }
        }
        // The first copy is shown to subscribers only once it holds what was
        // read: a subscribe without a cursor must start after it, not get the
        // history as live events.
        if self.published.borrow().is_none() {
            self.published.send_replace(self.topic.clone());
        }
    }

    /// Starts the copy over in `epoch` after `start`: the first copy, or the
    /// same one rebased, whose subscribers keep their streams and get the
    /// `reset` notice in-band. A first copy made after the store was closed is
    /// closed at once (its subscribers' streams end).
    fn replace(&mut self, epoch: Epoch, start: u64, closed: bool) {
        if let Some(topic) = &self.topic {
            wake(topic.rebase(epoch, start));
            return;
        }
        let topic = Arc::new(Topic::mirror(self.name.clone(), epoch, start, now()));
        if closed {
            wake(topic.close());
        }
        self.topic = Some(topic);
    }

    /// Appends `entry`, whose offset is the next one, with its real id.
    fn append(&self, entry: &Entry) {
        let (Some(topic), Some(store)) = (&self.topic, self.store.upgrade()) else {
            return;
        };
        let Some(id) = topic.reserve() else {
            return;
        };
        debug_assert_eq!(id.offset(), entry.offset);
        let event = EncodedEvent::from_raw(render(entry, id)).ok();
        wake(topic.commit(id, event, &store.hub, now(), None));
    }
}

/// The event's bytes with every occurrence of its stand-in id replaced by `id`.
fn render(entry: &Entry, id: EventId) -> Bytes {
    if entry.stand_in.is_empty() {
        return entry.data.clone();
    }
    let id = id.to_string();
    let finder = memchr::memmem::Finder::new(&entry.stand_in[..]);
    let mut out = BytesMut::with_capacity(entry.data.len());
    let mut rest = 0;
    for at in finder.find_iter(&entry.data) {
        out.extend_from_slice(&entry.data[rest..at]);
        out.extend_from_slice(id.as_bytes());
        rest = at + entry.stand_in.len();
    }
    out.extend_from_slice(&entry.data[rest..]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_replaces_every_stand_in() {
        let stand_in = EventId::new(u64::MAX, Epoch::from_bits(7)).to_string();
        let entry = Entry {
            offset: 3,
            data: Bytes::from(format!(
                "id: {stand_in}\ndata: {{\"id\":\"{stand_in}\"}}\n\n"
            )),
            stand_in: Bytes::from(stand_in),
        };
        let id = EventId::new(3, Epoch::from_bits(1));
        let got = render(&entry, id);
        assert_eq!(
            got,
            format!("id: {id}\ndata: {{\"id\":\"{id}\"}}\n\n").as_bytes()
        );
    }
}
