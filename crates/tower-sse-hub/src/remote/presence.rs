//! [`RemotePresence`]: [`Presence`] across the nodes of a cluster over any
//! [`PresenceBackend`], which holds only what differs between engines.
//!
//! Each node's own counts, in memory, are the truth for its entries: a node
//! counts a connection here first, then writes the member's new count to the
//! backend, and every third of the TTL it re-asserts all its counts (renewing
//! its lease), so that a write that failed is repaired at the next round. A
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
    HubError, Presence, StoreFuture,
};

/// What differs between engines under a [`RemotePresence`]: how this node's
/// entries are written, renewed and looked at in the remote store. Entries are
/// this node's count of connections per (topic, member); this node's name,
/// its lease and the TTL belong to the backend.
///
/// [`write`](Self::write) and [`reassert`](Self::reassert) are called with
/// the topic's counts locked: one topic's writes are made one at a time, in
/// the order of the counts' changes here. A write may arrive late (sent before
/// a time-out, delivered after a later one): the backend must not let it
/// overwrite a later write (sequence numbers, compare-and-set).
pub trait PresenceBackend: Send + Sync + fmt::Debug + 'static {
    /// Writes this node's entry `(member, count)` in `topic` (a count of 0
    /// deletes it). Returns how many of the member's connections here a
    /// surviving node had taken as gone (those still here are announced
    /// back), and forgets them as taken.
    fn write<'a>(
        &'a self,
        topic: &'a str,
        entry: (&'a str, usize),
    ) -> StoreFuture<'a, Result<usize, HubError>>;

    /// Re-asserts all of this node's `entries` in `topic` (`(member, count)`,
    /// a count of 0 still to be deleted), each as [`write`](Self::write)
    /// would. Returns, for each entry in order, `Some` with how many of its
    /// connections were taken, or `None` if it was not written; an error
    /// means none was. What was not written is retried at the next round.
    ///
    /// The default writes each entry in turn with [`write`](Self::write).
    fn reassert<'a>(
        &'a self,
        topic: &'a str,
        entries: &'a [(String, usize)],
    ) -> StoreFuture<'a, Result<Vec<Option<usize>>, HubError>> {
        Box::pin(async move {
            let mut written = Vec::with_capacity(entries.len());
            for (member, n) in entries {
                written.push(self.write(topic, (member, *n)).await.ok());
            }
            Ok(written)
        })
    }

    /// Looks at `topic`: takes the entries of nodes whose lease lapsed (never
    /// this node's), each by one node only, putting them in `taken` as soon
    /// as they are taken (so that a later failure loses none), and returns
    /// the members of live nodes, one entry per connection.
    fn look<'a>(
        &'a self,
        topic: &'a str,
        taken: Taken<'a>,
    ) -> StoreFuture<'a, Result<Vec<String>, HubError>>;

    /// Renews this node's lease, before each round of re-assertions; an error
    /// skips the round. The default does nothing, for a backend whose writes
    /// renew the lease.
    fn renew(&self) -> StoreFuture<'_, Result<(), HubError>> {
        Box::pin(std::future::ready(Ok(())))
    }
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
/// ([`PresenceBackend::renew`]), then re-asserts each topic's counts,
/// concurrently (a server that does not answer delays no other's topics).
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
    /// The topics asked about (`members`) that still have someone: looked at
    /// by `expired` along with those of `local`.
    watched: Mutex<HashSet<String>>,
    /// Entries taken from lapsed nodes (by `members` or `expired`), for the
    /// next `expired`; queued as soon as taken, whatever fails after.
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
    /// Removed from `Ledger::local`: look the topic up again.
    gone: bool,
}

impl<B: PresenceBackend> RemotePresence<B> {
    /// Presence over `backend`, whose entries expire `ttl` after their node
    /// last renewed them: renews (and re-asserts this node's entries) every
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
            rounds.spawn(async move { ledger.reassert(&topic, &local).await });
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

    /// Writes this node's `count` of `member` (called with the topic's
    /// [`Local`] locked); `kept` of them were there before.
    async fn change(
        &self,
        topic: &str,
        member: &str,
        count: usize,
        kept: usize,
    ) -> Result<(), HubError> {
        let taken = self.backend.write(topic, (member, count)).await?;
        self.restore(topic, member, taken, kept);
        Ok(())
    }

    /// Re-asserts this node's entries in `topic`; forgets the topic once it
    /// has none there.
    async fn reassert(&self, topic: &str, local: &Arc<Local>) {
        let mut counts = local.lock().await;
        if counts.gone {
            return;
        }
        let members: Vec<(String, usize)> = counts
            .members
            .iter()
            .map(|(member, n)| (member.clone(), *n))
            .collect();
        // A failure is retried at the next round.
        let Ok(written) = self.backend.reassert(topic, &members).await else {
            return;
        };
        for ((member, n), taken) in members.iter().zip(written) {
            let Some(taken) = taken else { continue };
            self.restore(topic, member, taken, *n);
            if *n == 0 {
                counts.members.remove(member);
            }
        }
        self.forget_if_empty(topic, local, &mut counts);
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
    /// members of live nodes, one entry per connection.
    async fn look(&self, topic: &str) -> Result<Vec<String>, HubError> {
        let taken = Taken {
            topic,
            queue: &self.taken,
        };
        self.backend.look(topic, taken).await
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
                let n = *n;
                return self.inner.change(topic, member, n, n - 1).await;
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
            self.inner.change(topic, member, n, n).await?;
            if n == 0 {
                counts.members.remove(member);
                self.inner.forget_if_empty(topic, &entry, &mut counts);
            }
            Ok(())
        })
    }

    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move {
            lock(&self.inner.watched).insert(topic.to_owned());
            let mut alive = self.inner.look(topic).await?;
            alive.sort_unstable();
            Ok(alive)
        })
    }

    /// Looks at every topic this node has members in or was asked about, and
    /// returns what it took, with what `members` took before. A topic whose
    /// look fails is looked at again next time; the error is returned only
    /// when there is nothing to return.
    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(async move {
            let mut topics: HashSet<String> = lock(&self.inner.local).keys().cloned().collect();
            topics.extend(lock(&self.inner.watched).iter().cloned());
            let mut error = None;
            for topic in topics {
                match self.inner.look(&topic).await {
                    // No one left: stop looking (unless it has members here).
                    Ok(alive) if alive.is_empty() => {
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
/// # use tower_sse_hub::{remote::{PresenceBackend, RemotePresence, Taken}, HubError, StoreFuture};
/// # #[derive(Debug)] struct Backend;
/// # impl PresenceBackend for Backend {
/// #     fn write<'a>(&'a self, _: &'a str, _: (&'a str, usize)) -> StoreFuture<'a, Result<usize, HubError>> { Box::pin(async { Ok(0) }) }
/// #     fn look<'a>(&'a self, _: &'a str, _: Taken<'a>) -> StoreFuture<'a, Result<Vec<String>, HubError>> { Box::pin(async { Ok(Vec::new()) }) }
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
