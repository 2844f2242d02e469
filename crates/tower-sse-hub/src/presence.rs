//! [`Presence`]: who is in a topic, by a key the application gives (a chat's
//! user name), in this process ([`MemoryPresence`]) or across the nodes of a
//! cluster (`RedisPresence` in `tower-sse-redis`, `NatsPresence` in
//! `tower-sse-nats`).

use std::{collections::HashMap, fmt, sync::Arc};

use super::{HubError, StoreFuture};
use crate::sync::{lock, Mutex};

/// Who is in each topic: one entry per connection, keyed by a name the
/// application gives (the same name twice is two connections).
///
/// Presence is kept apart from the [`Hub`](super::Hub)'s history: the
/// application publishes its own `join`/`leave` events, and asks
/// [`members`](Self::members) for a snapshot when a client connects. Across
/// nodes, a node that dies cannot say who left: its entries expire, and
/// [`expired`](Self::expired), called periodically by each surviving node,
/// hands each expired entry to exactly one of them, to publish its `leave`. A
/// node that was only cut off (or paused) past the expiry, and comes back with
/// some of those members still connected, hands them out by
/// [`restored`](Self::restored), to publish their `join` again. So an
/// application calls both periodically:
///
/// ```
/// # use tower_sse_hub::Presence;
/// # async fn announce(presence: &dyn Presence) {
/// for (topic, member) in presence.expired().await.unwrap_or_default() {
///     // publish `leave` of `member` to `topic`
/// }
/// for (topic, member) in presence.restored().await.unwrap_or_default() {
///     // publish `join` of `member` to `topic`
/// }
/// # }
/// ```
///
/// [`join`](Self::join) and [`leave`](Self::leave) count the connection on
/// this node even when they return an error (the store could not be reached):
/// an implementation that can retries the write, and the caller should not
/// undo it.
pub trait Presence: Send + Sync + fmt::Debug + 'static {
    /// Adds a connection of `member` to `topic`.
    fn join<'a>(&'a self, topic: &'a str, member: &'a str)
        -> StoreFuture<'a, Result<(), HubError>>;

    /// Removes a connection of `member` from `topic` (nothing if it has none).
    fn leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>>;

    /// The members of `topic` on every node, one entry per connection, sorted.
    ///
    /// Reads every entry: a big topic asks [`roster`](Self::roster) instead.
    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>>;

    /// How many connections `topic` has on every node, and the names of at
    /// most `limit` of them: what a snapshot of a big room shows. Its cost
    /// grows with `limit`, not with the topic (for the presences of this
    /// workspace), so a room of 100 000 members is counted as cheaply as one of
    /// ten.
    ///
    /// The default reads [`members`](Self::members) whole, for a presence
    /// that cannot count without it.
    fn roster<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        Box::pin(async move {
            let names = self.members(topic).await?;
            Ok(Roster::from_members(names, limit))
        })
    }

    /// Takes the entries of nodes that stopped refreshing them (they died):
    /// `(topic, member)` once per connection, each given to one caller only.
    /// Looks at the topics this node has members in or asked about.
    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>>;

    /// Takes this node's members that [`expired`](Self::expired) handed out as
    /// gone (this node's entries lapsed: it was paused, or could not reach the
    /// store, for longer than they last) and that are still connected here:
    /// `(topic, member)` once per connection handed out and still here, each
    /// returned once. Their `join` is to be published again. Members that left
    /// meanwhile are not in it.
    ///
    /// The default has none, which is right for a presence whose entries never
    /// expire.
    fn restored(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}

/// Who is in a topic, as [`Presence::roster`] sees it: how many connections,
/// and some of their names.
///
/// ```
/// use tower_sse_hub::Roster;
///
/// let roster = Roster::from_members(vec!["carol".into(), "alice".into(), "bob".into()], 2);
/// assert_eq!(roster.count, 3);
/// assert_eq!(roster.names, ["alice", "bob"]);
/// assert!(!roster.is_complete());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    /// Connections in the topic, on every node (a member connected twice
    /// counts twice).
    pub count: usize,
    /// Names, one entry per connection, sorted: all of them when `count` is at
    /// most the limit asked for, else that many of them (which ones is the
    /// presence's choice).
    pub names: Vec<String>,
}

impl Roster {
    /// The roster of a topic whose members are `names` (one entry per
    /// connection, in any order), keeping the first `limit` of them sorted.
    pub fn from_members(mut names: Vec<String>, limit: usize) -> Self {
        let count = names.len();
        names.sort_unstable();
        names.truncate(limit);
        Self { count, names }
    }

    /// Whether [`names`](Self::names) lists every connection.
    pub fn is_complete(&self) -> bool {
        self.names.len() == self.count
    }
}

/// [`Presence`] in this process: nothing expires, since a process that dies
/// takes its members with it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_sse_hub::HubError> {
/// use tower_sse_hub::{MemoryPresence, Presence};
///
/// let presence = MemoryPresence::new();
/// presence.join("room", "bob").await?;
/// presence.join("room", "alice").await?;
/// presence.join("room", "bob").await?;
/// presence.leave("room", "bob").await?;
/// assert_eq!(presence.members("room").await?, ["alice", "bob"]);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryPresence {
    topics: Arc<Mutex<HashMap<String, Members>>>,
}

/// A topic's members in a [`MemoryPresence`].
#[derive(Default)]
struct Members {
    /// Connections per name.
    names: HashMap<String, usize>,
    /// The sum of `names`' counts.
    count: usize,
}

impl MemoryPresence {
    /// No one anywhere.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPresence")
            .field("topics", &lock(&self.topics).len())
            .finish()
    }
}

impl Presence for MemoryPresence {
    fn join<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        let mut topics = lock(&self.topics);
        let members = topics.entry(topic.to_owned()).or_default();
        *members.names.entry(member.to_owned()).or_insert(0) += 1;
        members.count += 1;
        Box::pin(std::future::ready(Ok(())))
    }

    fn leave<'a>(
        &'a self,
        topic: &'a str,
        member: &'a str,
    ) -> StoreFuture<'a, Result<(), HubError>> {
        let mut topics = lock(&self.topics);
        if let Some(members) = topics.get_mut(topic) {
            if let Some(n) = members.names.get_mut(member) {
                *n -= 1;
                members.count -= 1;
                if *n == 0 {
                    members.names.remove(member);
                }
            }
            if members.names.is_empty() {
                topics.remove(topic);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn members<'a>(&'a self, topic: &'a str) -> StoreFuture<'a, Result<Vec<String>, HubError>> {
        let mut names: Vec<String> =
            lock(&self.topics)
                .get(topic)
                .map_or_else(Vec::new, |members| {
                    members
                        .names
                        .iter()
                        .flat_map(|(name, n)| std::iter::repeat_n(name.clone(), *n))
                        .collect()
                });
        names.sort_unstable();
        Box::pin(std::future::ready(Ok(names)))
    }

    /// O(`limit`): the count is kept, and the names are the first `limit`
    /// found (sorted).
    fn roster<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Result<Roster, HubError>> {
        let topics = lock(&self.topics);
        let roster = topics.get(topic).map_or_else(Roster::default, |members| {
            let names = members
                .names
                .iter()
                .flat_map(|(name, n)| std::iter::repeat_n(name, *n))
                .take(limit)
                .cloned()
                .collect();
            let mut roster = Roster::from_members(names, limit);
            roster.count = members.count;
            roster
        });
        Box::pin(std::future::ready(Ok(roster)))
    }

    fn expired(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    fn restored(&self) -> StoreFuture<'_, Result<Vec<(String, String)>, HubError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }
}
