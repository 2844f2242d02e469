//! A NATS JetStream store and presence for [`tower-sse-hub`](tower_sse_hub):
//! several server nodes share every topic through JetStream, with exact
//! `Last-Event-ID` resume on any node, and presence across nodes, for users
//! who already run NATS.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), tower_sse_hub::HubError> {
//! use tower_sse_hub::{Hub, HubConfig};
//! use tower_sse_nats::{NatsConfig, NatsStore};
//!
//! let store = NatsStore::connect(NatsConfig::new("127.0.0.1:4222"), HubConfig::new()).await?;
//! let hub = Hub::with_store(store);
//! # drop(hub); Ok(()) }
//! ```
//!
//! This crate is the proof that the hub's store seam is open: it uses only the
//! public API of `tower-sse-hub`. [`NatsBroker`] implements the
//! [`Broker`](tower_sse_hub::remote::Broker) seam (append, read, live feed,
//! renew) on one JetStream stream per topic; [`NatsStore`] is the hub's
//! generic [`RemoteStore`] on it, which
//! keeps the store contract ([`tower_sse_hub::contract`], run by this crate's
//! tests against a real `nats-server -js`). [`NatsPresence`] is who is in each
//! topic across the nodes, on a JetStream key-value bucket with leases.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod broker;
mod config;
mod presence;

use std::fmt;

use tower_sse_hub::{
    remote::{RemoteBacked, RemoteStore},
    HubConfig, HubError,
};

pub use self::{broker::NatsBroker, config::NatsConfig, presence::NatsPresence};

/// A [`Store`](tower_sse_hub::Store) on NATS JetStream: the hub's
/// [`RemoteStore`] on a [`NatsBroker`].
/// Any number of server nodes, each with its own
/// [`Hub`](tower_sse_hub::Hub) on a `NatsStore` with the same
/// [`NatsConfig`] prefix, share every topic; an id handed out by any node is a
/// valid `Last-Event-ID` on every node.
///
/// What a fault costs: NATS unreachable or slow, publishes and first
/// subscriptions fail with [`HubError::Unavailable`] after the timeout and
/// open streams stay open (the live feed is made again on reconnection and
/// the node reads what it missed); a topic's stream deleted (or lost with a
/// server restarted on memory storage), its open streams get the `reset`
/// notice in-band, then the new epoch's events. See [`NatsBroker`] for the
/// layout, retention and the epoch of each topic.
#[derive(Clone)]
pub struct NatsStore {
    store: RemoteStore<NatsBroker>,
}

impl NatsStore {
    /// A store on the NATS servers of `config`, bounded by `hub`. Connects in
    /// the background when the servers are down (calls fail meanwhile, after
    /// the timeout).
    ///
    /// # Errors
    ///
    /// [`HubError::Unavailable`] for an invalid prefix or URL.
    pub async fn connect(config: NatsConfig, hub: HubConfig) -> Result<Self, HubError> {
        let timeout = config.get_timeout();
        let broker = NatsBroker::connect(config).await?;
        Ok(Self::with_broker(broker, hub, timeout))
    }

    /// A store on `broker` (shared with a [`NatsPresence`], say).
    pub fn with_broker(broker: NatsBroker, hub: HubConfig, timeout: std::time::Duration) -> Self {
        Self {
            store: RemoteStore::new(broker, hub, timeout),
        }
    }

    /// The broker under the store.
    pub fn broker(&self) -> &NatsBroker {
        self.store.broker()
    }
}

impl fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsStore")
            .field("store", &self.store)
            .finish()
    }
}

impl RemoteBacked for NatsStore {
    type Broker = NatsBroker;

    fn remote(&self) -> &RemoteStore<NatsBroker> {
        &self.store
    }
}

/// The README's Rust snippets, compiled (and run, where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
