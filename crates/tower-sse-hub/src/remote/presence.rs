//! [`RemotePresence`]: [`Presence`] across the nodes of a cluster over any
//! [`PresenceBackend`], which holds only what differs between engines.
//!
//! Each node's own counts, in memory, are the truth for its entries: a node
//! counts a connection here first, then writes the member's new count to the
//! backend. Every third of the TTL it renews its hold on each topic: a cheap
//! [`refresh`](PresenceBackend::refresh) when the backend still has all its
//! entries there, else a re-assertion of them all (after its entries were
//! taken, or the store forgot them); a write that failed is retried then. A
//! node that stops (crash, partition) lets its lease lapse, and the next node
//! to look takes its entries, for [`expired`](Presence::expired) to hand out.
//! A node that comes back finds which of its entries were taken, and hands
//! those still connected out by [`restored`](Presence::restored).

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Weak},
    time::Duration,
};

use crate::{
    sync::{lock, Mutex},
    HubError, Presence, Roster, StoreFuture,
};

/// What differs between engines under a [`RemotePresence`]: how this node's
/// entries are written, renewed and looked at in the remote store. Entries are
/// this node's count of connections per (topic, member); this node's name,
/// its lease and the TTL belong to the backend.
///
/// [`write`](Self::write), [`reassert`](Self::reassert) and
/// [`refresh`](Self::refresh) are called with the topic's counts locked: one
/// topic's writes are made one at a time, in the order of the counts' changes
/// here. A write may arrive late (sent before a time-out, delivered after a
/// later one): the backend must not let it overwrite a later write (sequence
/// numbers, compare-and-set).
///
/// # Cost
///
/// What a backend should make cheap is what grows with a room: a `write` per
/// join and leave, a `refresh` per topic every third of the TTL, and a
/// [`look`](Self::look) per snapshot. The Redis backend does each in O(1) (a
/// look: O(nodes + `limit`)), whatever the number of members; a backend that
/// cannot (its entries must be rewritten to live) keeps the default `refresh`,
/// which re-asserts every entry every round.
pub trait PresenceBackend: Send + Sync + fmt::Debug + 'static {
    /// Writes this node's entry `(member, count)` in `topic` (a count of 0
    /// deletes it); `total` is this node's connections in the topic after
    /// the change (the sum of its counts there). Returns how many of the
    /// member's connections here a surviving node had taken as gone (those
    /// still here are announced back), forgetting them as taken, and whether
    /// the store still had this node's other entries in the topic.
    fn write<'a>(
        &'a self,
        topic: &'a str,
        entry: (&'a str, usize),
        total: usize,
    ) -> StoreFuture<'a, Result<Written, HubError>>;

    /// Re-asserts all of this node's `entries` in `topic` (`(member, count)`,
    /// a count of 0 still to be deleted), each as [`write`](Self::write)
    /// would; the store is to hold exactly these afterwards. Returns, for each
    /// entry in order, `Some` with how many of its connections were taken, or
    /// `None` if it was not written; an error means none was. What was not
    /// written is retried at the next round.
    ///
    /// The default writes each entry in turn with [`write`](Self::write).
    fn reassert<'a>(
        &'a self,
        topic: &'a str,
        entries: &'a [(String, usize)],
    ) -> StoreFuture<'a, Result<Vec<Option<usize>>, HubError>> {
        Box::pin(async move {
            let mut total: usize = entries.iter().map(|(_, n)| n).sum();
            let mut written = Vec::with_capacity(entries.len());
            for (member, n) in entries {
                let done = self.write(topic, (member, *n), total).await.ok();
                if done.is_none() {
                    // Not written: the store's total leaves it out.
                    total -= n;
                }
                written.push(done.map(|w| w.taken));
            }
            Ok(written)
        })
    }

    /// Renews this node's hold on its entries in `topic` without rewriting
    /// them, once per round when no write failed since the last one: `true`
    /// if the store still has them all (nothing to do), `false` if it does
    /// not (they were taken, or the store forgot them), and then they are
    /// all re-asserted at once. An error is retried at the next round.
    ///
    /// The default answers `false`, for a backend whose entries must be
    /// rewritten to live: every round re-asserts them all.
    fn refresh<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<bool, HubError>> {
        let _ = topic;
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Looks at `topic`: takes the entries of nodes whose lease lapsed (never
    /// this node's), each by one node only, putting them in `taken` as soon
    /// as they are taken (so that a later failure loses none), and returns
    /// the connections of live nodes: their number, and the names of at most
    /// `limit` of them (one entry per connection, in any order).
    /// [`members`](Presence::members) asks for `usize::MAX`,
    /// [`expired`](Presence::expired) for 0.
    fn look<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Roster, HubError>>;

    /// Renews this node's lease, before each round; an error skips the round.
    /// The default does nothing, for a backend whose writes and refreshes
    /// renew the lease.
    fn renew(&self) -> StoreFuture<'_, Result<(), HubError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What a [`PresenceBackend::write`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// How many of the member's connections here a surviving node had taken
    /// as gone (now forgotten as taken).
    pub taken: usize,
    /// Whether the store still had this node in the topic before the write
    /// (its lease there, hence its other entries): `false` after they were
    /// taken, after the store forgot them (restarted empty), or at the
    /// node's first write there. When a write already succeeded in the topic,
    /// `false` makes the next round re-assert every entry.
    pub known: bool,
}

/// Where [`PresenceBackend::look`] puts the entries it takes from lapsed
/// nodes: queued for the next [`expired`](Presence::expired) of the
/// [`RemotePresence`].
pub struct Taken<'a> {
    topic: &'a str,
    queue: &'a Mutex<Vec<(String, String)>>,
}

impl Taken<'_> {
    /// Queues `members` (one entry per connection) as gone from the topic.
    pub fn extend(&self, members: impl IntoIterator<Item = String>) {
        let gone = members
            .into_iter()
            .map(|member| (self.topic.to_owned(), member));
        lock(self.queue).extend(gone);
    }
}

impl fmt::Debug for Taken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Taken").field("topic", &self.topic).finish()
    }
}

/// [`Presence`] across nodes over a [`PresenceBackend`]: this node's counts,
/// the writes that follow them, the renewal task, and the queues behind
/// [`expired`](Presence::expired) and [`restored`](Presence::restored).
///
/// [`join`](Presence::join) and [`leave`](Presence::leave) count the
/// connection here first, then write it; an error means the write failed, and
/// is retried by the next renewal. A renewal runs every third of the TTL, from
/// a task that ends when the last clone is dropped; it renews the lease
/// ([`PresenceBackend::renew`]), then each topic, concurrently (a server that
/// does not answer delays no other's topics): the members whose write failed
/// are written again, and the others refreshed
/// ([`PresenceBackend::refresh`]) or, when the store lost them (or never had
/// them all), re-asserted ([`PresenceBackend::reassert`]).
pub struct RemotePresence<B> {
    inner: Arc<Ledger<B>>,
}

impl<B> Clone for RemotePresence<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for RemotePresence<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemotePresence")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

/// The state shared by a presence's clones and its renewal task.
///
/// Lock order: a topic's [`Local`] (async) before any of the `std` mutexes
/// below, which are each held briefly and never across an await.
struct Ledger<B> {
    backend: B,
    /// This node's own connections per topic: the truth for its entries. The
    /// map's lock only finds, adds or removes a topic's entry; the counts are
    /// behind the entry's own lock. An entry is removed (and marked `gone`)
    /// with its lock held, once this node has no member left there and that
    /// is written: whoever then finds it `gone` looks the topic up again.
    local: Mutex<HashMap<String, Arc<Local>>>,
    /// The topics asked about (`members`, `roster`) that still have someone:
    /// looked at by `expired` along with those of `local`.
    watched: Mutex<HashSet<String>>,
    /// Entries taken from lapsed nodes (by `members`, `roster` or
    /// `expired`), for the next `expired`; queued as soon as taken, whatever
    /// fails after.
    taken: Mutex<Vec<(String, String)>>,
    /// This node's members found taken and still here, for the next
    /// `restored`; queued as soon as a write finds them.
    restored: Mutex<Vec<(String, String)>>,
}

/// This node's connections to a topic. Locked across each write of them to
/// the backend, so that the topic's writes are made one at a time, in the
/// order of the changes here (count first, then write, lock held throughout):
/// hence an async lock, held across the write's await. Other topics' writes
/// do not wait for it.
type Local = tokio::sync::Mutex<Counts>;

#[derive(Default)]
struct Counts {
    /// Connections per member; a member at 0 is still to be deleted remotely.
    members: HashMap<String, usize>,
    /// The sum of `members`' counts.
    total: usize,
    /// Members whose last write failed: written again at the next round.
    dirty: HashSet<String>,
    /// A write, refresh or re-assertion succeeded here (the store had some of
    /// this node's entries): a write that then finds this node unknown means
    /// the others were lost.
    written: bool,
    /// The store lost this node's entries (or may have): the next round
    /// re-asserts them all.
    lost: bool,
    /// Removed from `Ledger::local`: look the topic up again.
    gone: bool,
}

impl Counts {
    /// Notes a write of `member` that succeeded (`Some`) or failed.
    fn wrote(&mut self, member: &str, written: Option<Written>) {
        match written {
            Some(written) => {
                self.dirty.remove(member);
                if !written.known && self.written {
                    self.lost = true;
                }
                self.written = true;
            }
            None => {
                self.dirty.insert(member.to_owned());
            }
        }
    }
}

impl<B: PresenceBackend> RemotePresence<B> {
    /// Presence over `backend`, whose entries expire `ttl` after their node
    /// last renewed them: renews (and re-asserts what the backend lost) every
    /// third of `ttl`, from a task that ends when the presence is dropped.
    /// Needs a tokio runtime.
    pub fn new(backend: B, ttl: Duration) -> Self {
        let inner = Arc::new(Ledger {
            backend,
            local: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            taken: Mutex::new(Vec::new()),
            restored: Mutex::new(Vec::new()),
        });
        tokio::spawn(renew(Arc::downgrade(&inner), ttl / 3));
        Self { inner }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.inner.backend
    }
}

async fn renew<B: PresenceBackend>(ledger: Weak<Ledger<B>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(ledger) = ledger.upgrade() else {
            return;
        };
        let topics: Vec<(String, Arc<Local>)> = lock(&ledger.local)
            .iter()
            .map(|(topic, local)| (topic.clone(), local.clone()))
            .collect();
        if ledger.backend.renew().await.is_err() {
            continue;
        }
        // Concurrently: a server that does not answer delays no other's topics.
        let mut rounds = tokio::task::JoinSet::new();
        for (topic, local) in topics {
            let ledger = ledger.clone();
            rounds.spawn(async move { ledger.round(&topic, &local).await });
        }
        drop(ledger);
        while rounds.join_next().await.is_some() {}
    }
}

impl<B: PresenceBackend> Ledger<B> {
    /// Queues for `restored` the connections of `member` in `topic` that
    /// were `taken` and are still here: at most the `kept` that were counted
    /// before the change just written (a connection that joined since was
    /// never taken).
    fn restore(&self, topic: &str, member: &str, taken: usize, kept: usize) {
        let back = std::iter::repeat_n((topic.to_owned(), member.to_owned()), taken.min(kept));
        lock(&self.restored).extend(back);
    }

    /// Writes this node's count of `member` (called with the topic's
    /// [`Local`] locked, the count already changed there); `kept` of them
    /// were there before. A failure leaves the member to the next round.
    async fn change(
        &self,
        topic: &str,
        member: &str,
        counts: &mut Counts,
        kept: usize,
    ) -> Result<(), HubError> {
        let count = counts.members.get(member).copied().unwrap_or(0);
        let written = self
            .backend
            .write(topic, (member, count), counts.total)
            .await;
        counts.wrote(member, written.as_ref().ok().copied());
        let written = written?;
        self.restore(topic, member, written.taken, kept);
        if count == 0 {
            counts.members.remove(member);
        }
        Ok(())
    }

    /// A renewal of this node's entries in `topic`: the members whose write
    /// failed are written again, then the others refreshed, or all
    /// re-asserted if the store lost them. Forgets the topic once this node
    /// has none there.
    async fn round(&self, topic: &str, local: &Arc<Local>) {
        let mut counts = local.lock().await;
        if counts.gone {
            return;
        }
        if !counts.lost {
            let dirty: Vec<String> = counts.dirty.iter().cloned().collect();
            for member in &dirty {
                let kept = counts.members.get(member).copied().unwrap_or(0);
                // A failure is retried at the next round.
                let _ = self.change(topic, member, &mut counts, kept).await;
            }
            // The writes renewed the lease.
            if dirty.is_empty() && !counts.lost {
                match self.backend.refresh(topic).await {
                    Ok(true) => counts.written = true,
                    Ok(false) => counts.lost = true,
                    // Retried at the next round.
                    Err(_) => {}
                }
            }
        }
        if counts.lost {
            self.reassert(topic, &mut counts).await;
        }
        self.forget_if_empty(topic, local, &mut counts);
    }

    /// Re-asserts all of this node's entries in `topic` (called with its
    /// [`Local`] locked).
    async fn reassert(&self, topic: &str, counts: &mut Counts) {
        let members: Vec<(String, usize)> = counts
            .members
            .iter()
            .map(|(member, n)| (member.clone(), *n))
            .collect();
        // A failure is retried at the next round.
        let Ok(written) = self.backend.reassert(topic, &members).await else {
            return;
        };
        counts.lost = false;
        counts.written = true;
        for ((member, n), taken) in members.iter().zip(written) {
            let Some(taken) = taken else {
                counts.dirty.insert(member.clone());
                continue;
            };
            counts.dirty.remove(member);
            self.restore(topic, member, taken, *n);
            if *n == 0 {
                counts.members.remove(member);
            }
        }
    }

    /// Removes `topic` from `local` when this node has no entry left there
    /// (called with its [`Local`] locked).
    fn forget_if_empty(&self, topic: &str, entry: &Arc<Local>, counts: &mut Counts) {
        if counts.members.is_empty() {
            counts.gone = true;
            let mut local = lock(&self.local);
            if local.get(topic).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                local.remove(topic);
            }
        }
    }

    /// Looks at `topic` (its expired entries queued for `expired`): the
    /// connections of live nodes, with at most `limit` names, sorted.
    async fn look(&self, topic: &str, limit: usize) -> Result<Roster, HubError> {
        let taken = Taken {
            topic,
            queue: &self.taken,
        };
        let mut roster = self.backend.look(topic, limit, taken).await?;
        roster.names.truncate(limit);
        roster.names.sort_unstable();
        Ok(roster)
    }
}

impl<B: PresenceBackend> Presence for RemotePresence<B> {
    /// Counts the connection here first, then writes it; an error means the
    /// write failed, and is retried by the next renewal.
    fn join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            loop {
                let entry = lock(&self.inner.local)
                    .entry(topic.to_owned())
                    .or_default()
                    .clone();
                let mut counts = entry.lock().await;
                if counts.gone {
                    continue;
                }
                let n = counts.members.entry(member.to_owned()).or_insert(0);
                *n += 1;
                let kept = *n - 1;
                counts.total += 1;
                return self.inner.change(topic, member, &mut counts, kept).await;
            }
        })
    }

    /// Uncounts the connection here first, then writes it; an error means the
    /// write failed, and is retried by the next renewal.
    fn leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            let Some(entry) = lock(&self.inner.local).get(topic).cloned() else {
                return Ok(());
            };
            let mut counts = entry.lock().await;
            let n = match counts.members.get_mut(member) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    *n
                }
                _ => return Ok(()),
            };
            counts.total -= 1;
            self.inner.change(topic, member, &mut counts, n).await?;
            self.inner.forget_if_empty(topic, &entry, &mut counts);
            Ok(())
        })
    }

    /// Reads every live entry of the topic (and takes those of lapsed nodes).
    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move {
            lock(&self.inner.watched).insert(topic.to_owned());
            Ok(self.inner.look(topic, usize::MAX).await?.names)
        })
    }

    /// As cheap as the backend's [`look`](PresenceBackend::look) at `limit`
    /// names (Redis: O(nodes + `limit`)); takes the entries of lapsed nodes
    /// on the way, as `members` does.
    fn roster<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        Box::pin(async move {
            lock(&self.inner.watched).insert(topic.to_owned());
            self.inner.look(topic, limit).await
        })
    }

    /// Looks at every topic this node has members in or was asked about
    /// (counting them, no names read), and returns what it took, with what
    /// `members` and `roster` took before. A topic whose look fails is looked
    /// at again next time; the error is returned only when there is nothing
    /// to return.
    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(async move {
            let mut topics: HashSet<String> = lock(&self.inner.local).keys().cloned().collect();
            topics.extend(lock(&self.inner.watched).iter().cloned());
            let mut error = None;
            for topic in topics {
                match self.inner.look(&topic, 0).await {
                    // No one left: stop looking (unless it has members here).
                    Ok(roster) if roster.count == 0 => {
                        lock(&self.inner.watched).remove(&topic);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            }
            let taken = std::mem::take(&mut *lock(&self.inner.taken));
            match error {
                Some(e) if taken.is_empty() => Err(e),
                _ => Ok(taken),
            }
        })
    }

    fn restored(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        let restored = std::mem::take(&mut *lock(&self.inner.restored));
        Box::pin(std::future::ready(Ok(restored)))
    }
}

/// Implements [`Presence`](crate::Presence) for `$name`, a type whose field
/// `$field` is a [`RemotePresence`](crate::remote::RemotePresence), by
/// calling that field's: how a crate gives a remote presence its own name and
/// constructors.
///
/// ```
/// # use std::time::Duration;
/// # use tower_sse_hub::{remote::{PresenceBackend, RemotePresence, Taken, Written}, HubError, Roster, StoreFuture};
/// # #[derive(Debug)] struct Backend;
/// # impl PresenceBackend for Backend {
/// #     fn write<'a>(&'a self, _: &'a str, _: (&'a str, usize), _: usize) -> StoreFuture<'a, Result<Written, HubError>> { Box::pin(async { Ok(Written::default()) }) }
/// #     fn look<'a>(&'a self, _: &'a str, _: usize, _: Taken<'a>) -> StoreFuture<'a, Result<Roster, HubError>> { Box::pin(async { Ok(Roster::default()) }) }
/// # }
/// /// Presence on some engine.
/// #[derive(Clone, Debug)]
/// pub struct EnginePresence {
///     inner: RemotePresence<Backend>,
/// }
///
/// tower_sse_hub::remote_presence!(EnginePresence, inner);
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "remote")))]
macro_rules! remote_presence {
    ($name:ty, $field:ident) => {
        impl $crate::Presence for $name {
            fn join<'a>(
                &'a self,
                topic: &'a str,
                member: &'a str,
            ) -> $crate::StoreFuture<'a, ::std::result::Result<(), $crate::HubError>> {
                $crate::Presence::join(&self.$field, topic, member)
            }

            fn leave<'a>(
                &'a self,
                topic: &'a str,
                member: &'a str,
            ) -> $crate::StoreFuture<'a, ::std::result::Result<(), $crate::HubError>> {
                $crate::Presence::leave(&self.$field, topic, member)
            }

            fn members<'a>(
                &'a self,
                topic: &'a str,
            ) -> $crate::StoreFuture<
                'a,
                ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::HubError>,
            > {
                $crate::Presence::members(&self.$field, topic)
            }

            fn roster<'a>(
                &'a self,
                topic: &'a str,
                limit: usize,
            ) -> $crate::StoreFuture<'a, ::std::result::Result<$crate::Roster, $crate::HubError>>
            {
                $crate::Presence::roster(&self.$field, topic, limit)
            }

            fn expired(
                &self,
            ) -> $crate::StoreFuture<
                '_,
                ::std::result::Result<
                    ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                    $crate::HubError,
                >,
            > {
                $crate::Presence::expired(&self.$field)
            }

            fn restored(
                &self,
            ) -> $crate::StoreFuture<
                '_,
                ::std::result::Result<
                    ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                    $crate::HubError,
                >,
            > {
                $crate::Presence::restored(&self.$field)
            }
        }
    };
}
