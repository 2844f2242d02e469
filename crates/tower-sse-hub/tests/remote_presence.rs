//! `RemotePresence` over a backend in memory, on tokio's paused clock: what a
//! renewal round asks of the backend. While the store has this node's
//! entries, a round only refreshes (nothing rewritten); when it lost them (a
//! refresh says so, or a write finds the node unknown) the round re-asserts
//! them all; a write that failed is retried alone.

#![cfg(feature = "remote")]

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use tower_sse_hub::{
    remote::{PresenceBackend, RemotePresence, Taken, Written},
    HubError, Presence, Roster, StoreFuture,
};

const TTL: Duration = Duration::from_secs(3);

/// The store: this node's entries per topic, and what was asked of it.
#[derive(Debug, Default)]
struct Store {
    entries: HashMap<String, HashMap<String, usize>>,
    /// Topics where the store knows this node (has its lease).
    known: HashSet<String>,
    writes: Vec<(String, usize)>,
    refreshes: usize,
    reasserts: usize,
    /// Writes fail while set.
    down: bool,
}

#[derive(Debug, Clone, Default)]
struct Backend(Arc<Mutex<Store>>);

impl Backend {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.0.lock().unwrap()
    }
}

impl PresenceBackend for Backend {
    fn write<'a>(
        &'a self,
        topic: &'a str,
        (member, count): (&'a str, usize),
        _total: usize,
    ) -> StoreFuture<'a, Result<Written, HubError>> {
        let mut store = self.store();
        let result = if store.down {
            Err(HubError::Unavailable("down".into()))
        } else {
            store.writes.push((member.to_owned(), count));
            let known = !store.known.insert(topic.to_owned());
            let entries = store.entries.entry(topic.to_owned()).or_default();
            if count == 0 {
                entries.remove(member);
            } else {
                entries.insert(member.to_owned(), count);
            }
            Ok(Written { taken: 0, known })
        };
        Box::pin(std::future::ready(result))
    }

    fn reassert<'a>(
        &'a self,
        topic: &'a str,
        entries: &'a [(String, usize)],
    ) -> StoreFuture<'a, Result<Vec<Option<usize>>, HubError>> {
        let mut store = self.store();
        store.reasserts += 1;
        store.known.insert(topic.to_owned());
        let held = entries
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| (m.clone(), *n))
            .collect();
        store.entries.insert(topic.to_owned(), held);
        Box::pin(std::future::ready(Ok(vec![Some(0); entries.len()])))
    }

    fn refresh<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<bool, HubError>> {
        let mut store = self.store();
        store.refreshes += 1;
        let known = store.known.contains(topic);
        Box::pin(std::future::ready(Ok(known)))
    }

    fn look<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        _taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        let store = self.store();
        let mut roster = Roster::default();
        for (member, n) in store.entries.get(topic).into_iter().flatten() {
            roster.count += n;
            let room = limit - roster.names.len().min(limit);
            roster
                .names
                .extend(std::iter::repeat_n(member.clone(), (*n).min(room)));
        }
        Box::pin(std::future::ready(Ok(roster)))
    }
}

/// The store's entries of `topic`, one per connection, sorted.
fn held(backend: &Backend, topic: &str) -> Vec<String> {
    let store = backend.store();
    let mut names: Vec<String> = store
        .entries
        .get(topic)
        .into_iter()
        .flatten()
        .flat_map(|(m, n)| std::iter::repeat_n(m.clone(), *n))
        .collect();
    names.sort_unstable();
    names
}

/// Lets `rounds` renewal rounds run (the clock is paused: it jumps).
async fn rounds(rounds: u32) {
    tokio::time::sleep(TTL / 3 * rounds + TTL / 6).await;
}

#[tokio::test(start_paused = true)]
async fn rounds_refresh_and_rewrite_only_what_was_lost() {
    let backend = Backend::default();
    let presence = RemotePresence::new(backend.clone(), TTL);
    presence.join("room", "alice").await.unwrap();
    presence.join("room", "alice").await.unwrap();
    presence.join("room", "bob").await.unwrap();
    assert_eq!(backend.store().writes.len(), 3);

    // Nothing lost: the rounds refresh, nothing is rewritten.
    rounds(3).await;
    {
        let store = backend.store();
        assert!(store.refreshes >= 3, "{store:?}");
        assert_eq!((store.writes.len(), store.reasserts), (3, 0));
    }

    // The store forgets everything (restarted empty): the next round finds
    // it out by refreshing, and re-asserts all.
    {
        let mut store = backend.store();
        store.entries.clear();
        store.known.clear();
    }
    rounds(1).await;
    assert_eq!(backend.store().reasserts, 1);
    assert_eq!(held(&backend, "room"), ["alice", "alice", "bob"]);

    // Forgotten again, but a write comes first: it finds the node unknown,
    // and the next round re-asserts all the same (the write's lease would
    // make a refresh say all is well).
    {
        let mut store = backend.store();
        store.entries.clear();
        store.known.clear();
    }
    presence.join("room", "carol").await.unwrap();
    assert_eq!(held(&backend, "room"), ["carol"]);
    rounds(1).await;
    assert_eq!(backend.store().reasserts, 2);
    assert_eq!(held(&backend, "room"), ["alice", "alice", "bob", "carol"]);

    // A failed write is retried alone at the next round.
    backend.store().down = true;
    assert!(presence.leave("room", "alice").await.is_err());
    assert!(presence.join("room", "dave").await.is_err());
    backend.store().down = false;
    let before = backend.store().writes.len();
    rounds(1).await;
    {
        let store = backend.store();
        let mut retried = store.writes[before..].to_vec();
        retried.sort();
        assert_eq!(retried, [("alice".to_owned(), 1), ("dave".to_owned(), 1)]);
        assert_eq!(store.reasserts, 2, "no full re-assertion");
    }
    assert_eq!(held(&backend, "room"), ["alice", "bob", "carol", "dave"]);

    // A topic's first write finds the node unknown there: nothing was lost.
    presence.join("other", "erin").await.unwrap();
    rounds(2).await;
    assert_eq!(backend.store().reasserts, 2);

    // The roster goes through `look`, names bounded and sorted.
    let roster = presence.roster("room", 2).await.unwrap();
    assert_eq!((roster.count, roster.names.len()), (4, 2));
    assert!(roster.names.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(
        presence.members("room").await.unwrap(),
        ["alice", "bob", "carol", "dave"]
    );
}
