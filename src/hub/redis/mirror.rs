//! A node's copy of one topic: the same ring of encoded events as the memory
//! store's ([`Topic`]), fed from Redis by one task per topic, so that each
//! event is encoded once per node and shared by the node's subscribers.
//!
//! The feeder subscribes to the topic's channel first and reads the stream
//! only once Redis confirmed the subscription: whatever is published from then
//! on waits in the feeder's queue while the history is read, and is then taken
//! in offset order, skipping what the history already gave (no gap, no
//! duplicate). An event whose offset is beyond the next one (a message lost
//! while the Pub/Sub connection was down, or a reconnection) makes the feeder
//! read the stream from the next offset. A new epoch in Redis (flushed,
//! restarted empty) or a hole the stream no longer holds starts the copy over
//! in place ([`Topic::rebase`]): the node's subscribers keep their streams and
//! get the `reset` notice in-band, then the new epoch's events. While the copy
//! has subscribers, the feeder renews the topic's retention in Redis, so that a
//! quiet topic does not expire under them.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Weak,
    },
    task::Waker,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::{
    scripts::{self, Entry, Keys, Synced},
    shard::{Feed, Shard},
    Inner,
};
use crate::{
    hub::{topic::Topic, Epoch, EventId},
    EncodedEvent,
};

/// How often a feeder checks whether its topic still has subscribers, and
/// retries a failed read of the stream.
const TICK: Duration = Duration::from_millis(500);
/// Idle ticks before a topic without subscribers is let go (a client that
/// reconnects at once finds the copy still there).
const IDLE_TICKS: u32 = 4;

pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Spawns the feeder of `name`: the receiver holds its topic once read, the
/// sender is its queue (a [`Feed::Resync`] makes it read the topic again), and
/// `syncs` counts its completed reads.
pub(super) fn spawn(
    store: Weak<Inner>,
    shard: Arc<Shard>,
    name: Arc<str>,
    keys: Keys,
    serial: u64,
    (syncs, asked): (Arc<AtomicU64>, Arc<AtomicBool>),
) -> (
    watch::Receiver<Option<Arc<Topic>>>,
    mpsc::UnboundedSender<Feed>,
) {
    let (tx, rx) = watch::channel(None);
    let (feed, queue) = mpsc::unbounded_channel();
    let confirmed = shard.subscribe(&keys.channel, feed.clone());
    let feeder = Feeder {
        store,
        shard,
        name,
        keys,
        serial,
        topic: None,
        published: tx,
        stale: true,
        syncs,
        asked,
        renewed: None,
    };
    tokio::spawn(feeder.run(queue, confirmed));
    (rx, feed)
}

struct Feeder {
    store: Weak<Inner>,
    shard: Arc<Shard>,
    name: Arc<str>,
    keys: Keys,
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
    /// When the topic's retention in Redis was last renewed.
    renewed: Option<Instant>,
}

impl Feeder {
    async fn run(
        mut self,
        mut queue: mpsc::UnboundedReceiver<Feed>,
        confirmed: tokio::sync::oneshot::Receiver<()>,
    ) {
        if confirmed.await.is_err() {
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
                    Some(Feed::Live(payload)) => self.live(&payload).await,
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

    /// Renews the topic's retention in Redis when a quarter of the TTL has
    /// passed since the last renewal: a topic with subscribers on this node
    /// must not expire in Redis however quiet it is (its next publish would
    /// start a new epoch under every member). Runs in a task of its own, so
    /// that a Redis slow to answer never holds up live events; a failure is
    /// retried a quarter of the TTL later, well within the TTL.
    async fn renew(&mut self, store: &Arc<Inner>) {
        let ttl_ms = store.ttl_ms();
        let every = Duration::from_millis(ttl_ms / 4).max(TICK);
        let now = now();
        if self
            .renewed
            .is_some_and(|at| now.saturating_duration_since(at) < every)
        {
            return;
        }
        self.renewed = Some(now);
        let (store, keys) = (store.clone(), self.keys.clone());
        let mut conn = self.shard.commands.clone();
        tokio::spawn(async move {
            let renew = scripts::renew(&store.scripts, &mut conn, &keys, ttl_ms);
            let _ = tokio::time::timeout(store.config.timeout, renew).await;
        });
    }

    /// Ends the copy's streams. The channel was unsubscribed by the store
    /// (`release`), under its lock, so as not to race a newer copy.
    fn leave(&self) {
        if let Some(topic) = &self.topic {
            wake(topic.close());
        }
    }

    /// Takes a message of the channel.
    async fn live(&mut self, payload: &Bytes) {
        let Some((epoch, entry)) = scripts::live(payload) else {
            return; // not ours: ignored
        };
        match &self.topic {
            Some(topic) if topic.position().epoch() == epoch => {
                let next = topic.position().offset().saturating_add(1);
                if entry.offset == next {
                    self.append(&entry);
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

    /// Reads the stream after the last offset held (all of it the first time),
    /// and brings the copy up to date; on failure, stays stale and is retried.
    async fn sync(&mut self) {
        let Some(store) = self.store.upgrade() else {
            return;
        };
        // Any read that starts from now on answers the subscribes that asked.
        self.asked.store(false, Ordering::Release);
        let config = &store.config.hub;
        let held = self.topic.as_ref().map(|t| t.position());
        let mut conn = self.shard.commands.clone();
        let mut from = held.map_or(0, |at| at.offset().saturating_add(1));
        let synced = loop {
            let read = scripts::sync(
                &store.scripts,
                &mut conn,
                &self.keys,
                store.ttl_ms(),
                config.get_history_len(),
                from,
            );
            let Ok(Ok(synced)) = tokio::time::timeout(store.config.timeout, read).await else {
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

    fn apply(&mut self, synced: Synced, closed: bool) {
        let Synced {
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
            // what we hold: Redis came back from an older snapshot, and the
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
        wake(topic.commit(id, event, &store.config.hub, now(), None));
    }
}

fn wake(wakers: Vec<Option<Waker>>) {
    wakers.into_iter().flatten().for_each(Waker::wake);
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
