//! [`Broker`]: the seam for remote logs. A broker is a remote, shared,
//! append-only log per topic (Redis streams, NATS JetStream, ...).
//! [`RemoteStore`](super::RemoteStore) keeps this node's copy of each topic a
//! client uses, fed by [`read`](Broker::read) (catch up from an offset) and
//! [`watch`](Broker::watch) (the live feed), and keeps the store contract on
//! top: a broker only provides these operations.

use std::{fmt, future::Future, pin::Pin};

use bytes::Bytes;

use crate::{Epoch, EventId, HubConfig, HubError};

#[cfg(doc)]
use super::RemoteStore;

/// A boxed future returned by a [`Broker`].
pub type BrokerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stored event, as a broker holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its offset in the topic's epoch: 1, 2, 3, ... with no hole.
    pub offset: u64,
    /// The encoded event exactly as [`Append::event`] gave it.
    pub data: Bytes,
    /// The stand-in id text written in `data` ([`Append::stand_in`]): every
    /// occurrence is replaced by the real id where the event is delivered.
    pub stand_in: Bytes,
}

/// What a [`Broker::read`] found.
#[derive(Clone, Debug)]
pub struct Range {
    /// The topic's epoch (made by the read if the topic had none).
    pub epoch: Epoch,
    /// The offset of the topic's last event; 0 when it has none.
    pub top: u64,
    /// The entries from the offset asked for up to `top`, in offset order. The
    /// oldest may be gone (trimmed, expired): the first entry's offset is then
    /// above the one asked for.
    pub entries: Vec<Entry>,
}

/// What a broker's live feed tells this node's copy of one topic.
#[derive(Debug)]
pub enum Feed {
    /// An event the broker just stored, in `epoch`.
    Live {
        /// The epoch the event was stored in.
        epoch: Epoch,
        /// The event.
        entry: Entry,
    },
    /// The feed may have missed events (its connection was lost and is back):
    /// the copy reads the topic again from the last offset it holds.
    Resync,
}

/// Where a broker sends the live feed of one topic (cheap to clone).
#[derive(Clone, Debug)]
pub struct FeedSender(pub(super) tokio::sync::mpsc::UnboundedSender<Feed>);

impl FeedSender {
    /// A sender into `tx` (for a broker's own tests: the store makes the
    /// senders it gives to [`Broker::watch`]).
    pub fn new(tx: tokio::sync::mpsc::UnboundedSender<Feed>) -> Self {
        Self(tx)
    }

    /// Sends `feed`; `false` once the copy is gone (stop feeding it).
    pub fn send(&self, feed: Feed) -> bool {
        self.0.send(feed).is_ok()
    }

    /// Whether the copy is gone.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// One append to a topic.
#[derive(Debug)]
pub struct Append<'a> {
    /// The encoded event, with the stand-in id in it.
    pub event: &'a [u8],
    /// The stand-in id's text (store it with the entry, see [`Entry::stand_in`]).
    pub stand_in: &'a str,
    /// An idempotency key: an append with a key already used on the topic
    /// within `config.get_idempotency_window()` stores nothing and resolves with
    /// the id the key got (decided atomically with the store).
    pub key: Option<&'a str>,
    /// The hub's bounds: keep at most `get_history_len()` entries, for
    /// `get_history_ttl()` after the topic's last append.
    pub config: &'a HubConfig,
}

/// A remote log per topic, shared by every node: the five operations a
/// [`RemoteStore`] needs to keep the store contract across nodes.
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Appends the event with the topic's next offset (creating the topic's
    /// epoch if it has none) and resolves with its id once stored, within the
    /// broker's own timeout. `Err(HubError::Unavailable)` when it could not;
    /// the broker says in the error whether the event may still be stored.
    fn append<'a>(
        &'a self,
        topic: &'a str,
        append: Append<'a>,
    ) -> BrokerFuture<'a, Result<EventId, HubError>>;

    /// Reads the topic's epoch, top offset and entries from offset `from` (0
    /// for all), at most `config.get_history_len()` of the newest; gives the
    /// topic an epoch if it has none.
    fn read<'a>(
        &'a self,
        topic: &'a str,
        from: u64,
        config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<Range, HubError>>;

    /// Starts the live feed of `topic` into `feed`: every event stored from
    /// now on, as [`Feed::Live`], and a [`Feed::Resync`] after any loss. The
    /// future resolves once the broker confirmed the feed (events stored after
    /// that are fed); an error if it could not start.
    fn watch(&self, topic: &str, feed: FeedSender) -> BrokerFuture<'static, Result<(), HubError>>;

    /// Stops the live feed of `topic` started by [`watch`](Self::watch).
    fn unwatch(&self, topic: &str);

    /// Keeps a topic that has subscribers on this node from expiring: called
    /// every quarter of `config.get_history_ttl()` while it has some.
    fn renew<'a>(
        &'a self,
        topic: &'a str,
        config: &'a HubConfig,
    ) -> BrokerFuture<'a, Result<(), HubError>>;

    /// The server that holds `topic`, for error messages (`host:port`).
    fn server_of(&self, topic: &str) -> String;
}
