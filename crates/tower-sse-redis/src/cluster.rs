//! A Redis Cluster as the store's one "server": a cluster connection for
//! commands (the `redis` crate's, which follows `MOVED`, `ASK` and `TRYAGAIN`
//! and refreshes the slot map), and another for sharded Pub/Sub (RESP3, whose
//! pushes a task reads): each topic's channel is `SSUBSCRIBE`d on its slot's
//! master, and subscribed again whenever that subscription may have been lost.
//!
//! The two are separate connections on purpose: Redis sends an unrequested
//! `sunsubscribe` when a slot leaves a master, and the `redis` crate would take
//! it for the reply to a command in flight on the same connection.
//!
//! A feed is told to [`Resync`](Feed::Resync) on every `ssubscribe`
//! confirmation of its channel: the first one, those of the crate's own
//! resubscriptions after a reconnection or a slot map change, and those of the
//! resubscriptions this task makes after a `sunsubscribe` it did not ask for
//! (the slot moved) or a lost connection. What was published while the
//! channel was not subscribed is then read from the topic's stream.
//!
//! And every [`AUDIT_EVERY`], every channel is subscribed again (Redis
//! confirms a subscription it already has): the crate's cluster connection
//! can replace a node's connection after a restart without its
//! subscriptions, silently (seen in `tests/redis_cluster.rs` under load), and
//! this bounds how long a topic can go without live events then (its
//! subscribers miss nothing: the confirmation makes the node read the
//! stream). It costs one `SSUBSCRIBE` and one read per topic per period.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ::redis::{
    cluster::ClusterClient, cluster_async::ClusterConnection, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Script, Value,
};
use bytes::Bytes;
use tokio::{
    sync::{mpsc, oneshot, OnceCell},
    time::Instant,
};
use tower_sse_hub::remote::Feed;

use super::{
    batch::Batcher,
    channels::{lock, Channels, Control, Routes},
    connection::Conn,
    renewals::Renewals,
    scripts::Publish,
    server::{self, Clock, PublishResult, BATCH},
};

const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// How often every subscription is made again (see the module's doc).
const AUDIT_EVERY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A Redis Cluster.
pub(super) struct Cluster {
    /// The seed addresses without credentials, for messages.
    pub(super) name: String,
    client: ClusterClient,
    /// Made at first use (the store is made without waiting for Redis), and
    /// again at the next use if that failed.
    commands: OnceCell<ClusterConnection>,
    timeout: Duration,
    /// The masters' clock: one for all of them (see `RedisConfig::cluster`).
    pub(super) clock: Clock,
    /// The channels this node follows, each on its slot's master.
    pub(super) channels: Channels,
    /// The publish script.
    script: Arc<Script>,
    /// The publishes queued per topic, each topic's sent in batches as on a
    /// standalone server (a call's keys must be in one slot: a batch is one
    /// topic's). A topic's batcher ends after [`PUBLISH_IDLE`] without
    /// publishes, and is made again at the next.
    publishes: Mutex<HashMap<String, Batcher<Publish, PublishResult>>>,
    /// The topics whose keys this node renewed lately.
    renewals: Arc<Renewals>,
}

/// How long a topic's batcher of publishes waits for one before it ends.
const PUBLISH_IDLE: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("name", &self.name).finish()
    }
}

impl Cluster {
    /// Opens (lazily) the connections to the cluster that `urls` are seed
    /// nodes of; spawns the Pub/Sub task on the current runtime.
    pub(super) fn open(
        urls: &[String],
        timeout: Duration,
        script: Arc<Script>,
    ) -> Result<Self, RedisError> {
        let seeds = urls
            .iter()
            .map(|url| url.as_str().into_connection_info())
            .collect::<Result<Vec<ConnectionInfo>, _>>()?;
        let addresses: Vec<String> = seeds.iter().map(|info| info.addr().to_string()).collect();
        let name = format!("cluster {}", addresses.join(","));
        // Retries (redirections, `TRYAGAIN` while a slot migrates, a
        // reconnection) are bounded by the store's timeout around each call.
        let max_wait = u64::try_from((timeout / 4).as_millis())
            .unwrap_or(u64::MAX)
            .max(10);
        let client = ClusterClient::builder(seeds.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(64)
            .min_retry_wait(5)
            .max_retry_wait(max_wait)
            .build()?;
        let (pushes, push_rx) = mpsc::unbounded_channel();
        let subscriber = ClusterClient::builder(seeds)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(64)
            .min_retry_wait(5)
            .max_retry_wait(max_wait)
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?;
        let (channels, routes, rx) = Channels::new();
        let renewals = Arc::new(Renewals::default());
        tokio::spawn(pubsub(
            subscriber,
            routes,
            rx,
            push_rx,
            timeout,
            renewals.clone(),
        ));
        Ok(Self {
            name,
            client,
            commands: OnceCell::new(),
            timeout,
            clock: Clock::default(),
            channels,
            script,
            publishes: Mutex::default(),
            renewals,
        })
    }

    /// Queues `publish` for the next batch of `topic` and waits for the
    /// batch's answer.
    pub(super) async fn publish(self: &Arc<Self>, topic: &str, publish: Publish) -> PublishResult {
        let mut item = publish;
        let answer = loop {
            let mut batchers = lock(&self.publishes);
            if !batchers.contains_key(topic) {
                // Let go of the batchers that ended, now and then.
                if batchers.len() >= 64 && batchers.len().is_power_of_two() {
                    batchers.retain(|_, batcher| !batcher.is_closed());
                }
                batchers.insert(topic.to_owned(), self.batcher());
            }
            match batchers[topic].try_submit(item) {
                Ok(answer) => break answer,
                // It ended (idle) meanwhile: a new one.
                Err(back) => {
                    item = back;
                    batchers.remove(topic);
                }
            }
        };
        answer.await.unwrap_or_else(|_| Err(server::unanswered()))
    }

    /// A batcher of one topic's publishes.
    fn batcher(self: &Arc<Self>) -> Batcher<Publish, PublishResult> {
        let cluster = Arc::downgrade(self);
        Batcher::spawn_idle(
            BATCH,
            Publish::weight,
            Some(PUBLISH_IDLE),
            move |batch: Vec<Publish>| {
                let cluster = cluster.upgrade();
                async move {
                    let failed = |message: &'static str| {
                        let err = RedisError::from((ErrorKind::Io, message));
                        vec![Err(err); batch.len()]
                    };
                    let Some(cluster) = cluster else {
                        return failed("the store was dropped");
                    };
                    let timeout = cluster.timeout;
                    let conn = match tokio::time::timeout(timeout, cluster.commands()).await {
                        Ok(Ok(conn)) => conn,
                        Ok(Err(err)) => return vec![Err(err); batch.len()],
                        Err(_) => return failed("Redis did not answer in time"),
                    };
                    let mut conn = Conn::Cluster(conn);
                    let renewals = &cluster.renewals;
                    server::send(&cluster.script, &mut conn, &batch, timeout, true, renewals).await
                }
            },
        )
    }

    /// The commands connection (cheap to clone), connecting first if needed.
    pub(super) async fn commands(&self) -> Result<ClusterConnection, RedisError> {
        let connect = || async {
            match tokio::time::timeout(self.timeout, self.client.get_async_connection()).await {
                Ok(connected) => connected,
                Err(_) => Err(RedisError::from((
                    ::redis::ErrorKind::Io,
                    "the cluster did not answer in time",
                ))),
            }
        };
        self.commands.get_or_try_init(connect).await.cloned()
    }
}

fn text(value: Option<&Value>) -> Option<&str> {
    match value? {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The subscription task's state.
struct Subscriptions {
    routes: Routes,
    /// Channels to (re)subscribe at the next attempt.
    todo: HashSet<String>,
    /// Channels with an `SSUBSCRIBE` in flight.
    in_flight: HashSet<String>,
    /// Watchers waiting for their channel's confirmation.
    waiting: HashMap<String, Vec<oneshot::Sender<()>>>,
    backoff: Duration,
    /// When the next attempt (to connect, or to subscribe `todo`) may be made.
    retry_at: Instant,
    /// The cluster's renewals, forgotten when a connection to a master is
    /// lost: it may be restarting, or failing over to a replica that missed
    /// the last renewals, and the commands connection retries within a call
    /// without failing it.
    renewals: Arc<Renewals>,
}

impl Subscriptions {
    /// The state of a task that has subscribed to nothing yet.
    fn new(routes: Routes, renewals: Arc<Renewals>) -> Self {
        Self {
            renewals,
            routes,
            todo: HashSet::new(),
            in_flight: HashSet::new(),
            waiting: HashMap::new(),
            backoff: MIN_BACKOFF,
            retry_at: Instant::now(),
        }
    }

    fn routed(&self, channel: &str) -> bool {
        lock(&self.routes).contains_key(channel)
    }

    fn failed(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// One push from the subscription connection.
    fn push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let routes = lock(&self.routes);
                let Some(feed) = text(push.data.first()).and_then(|c| routes.get(c)) else {
                    return;
                };
                if let Some(Value::BulkString(payload)) = push.data.get(1) {
                    let payload = Bytes::copy_from_slice(payload);
                    // A message that is not the store's is ignored.
                    crate::scripts::live(&payload, |epoch, entry| {
                        feed.send(Feed::Live { epoch, entry });
                    });
                }
            }
            PushKind::SSubscribe => {
                let Some(channel) = text(push.data.first()) else {
                    return;
                };
                if let Some(feed) = lock(&self.routes).get(channel) {
                    // Whatever was published before this subscription and
                    // after the last message is read from the stream.
                    feed.send(Feed::Resync);
                }
                for reply in self.waiting.remove(channel).unwrap_or_default() {
                    let _ = reply.send(());
                }
            }
            PushKind::SUnsubscribe => {
                // Not asked for while routed: the slot left this master.
                if let Some(channel) = text(push.data.first()) {
                    if self.routed(channel) {
                        self.todo.insert(channel.to_owned());
                    }
                }
            }
            PushKind::Disconnection => {
                self.renewals.forget();
                // The crate reconnects and subscribes again by itself; this is
                // in case it cannot (the master is still down): every channel
                // is subscribed again until that is confirmed.
                let channels: Vec<String> = lock(&self.routes).keys().cloned().collect();
                self.todo.extend(channels);
                self.failed();
            }
            _ => {}
        }
    }
}

/// Keeps the subscriptions: subscribes each routed channel on its slot's
/// master, again whenever it may have been lost, and routes messages; ends
/// when the cluster is dropped.
async fn pubsub(
    client: ClusterClient,
    routes: Routes,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    timeout: Duration,
    renewals: Arc<Renewals>,
) {
    let mut state = Subscriptions::new(routes, renewals);
    let mut conn: Option<ClusterConnection> = None;
    let (done_tx, mut done) = mpsc::unbounded_channel::<(String, bool)>();
    let mut audit = tokio::time::interval(AUDIT_EVERY);
    audit.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    audit.tick().await;
    loop {
        let due = Instant::now() >= state.retry_at;
        if conn.is_none() && due {
            match tokio::time::timeout(timeout, client.get_async_connection()).await {
                Ok(Ok(connected)) => conn = Some(connected),
                _ => state.failed(),
            }
        }
        if let (Some(conn), true) = (&conn, Instant::now() >= state.retry_at) {
            for channel in std::mem::take(&mut state.todo) {
                if !state.routed(&channel) || !state.in_flight.insert(channel.clone()) {
                    continue;
                }
                let (mut conn, done) = (conn.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let subscribed = tokio::time::timeout(timeout, conn.ssubscribe(&channel)).await;
                    let _ = done.send((channel, matches!(subscribed, Ok(Ok(())))));
                });
            }
        }
        let waiting = conn.is_none() || !state.todo.is_empty();
        tokio::select! {
            request = control.recv() => match request {
                None => return,
                Some(Control::Subscribe(channel, reply)) => {
                    state.waiting.entry(channel.clone()).or_default().push(reply);
                    state.todo.insert(channel);
                }
                Some(Control::Unsubscribe(channel)) => {
                    // Unless a new feeder took the channel meanwhile.
                    if !state.routed(&channel) {
                        state.todo.remove(&channel);
                        state.waiting.remove(&channel);
                        if let Some(conn) = &conn {
                            sunsubscribe(conn.clone(), channel, timeout);
                        }
                    }
                }
            },
            Some(push) = pushes.recv() => state.push(push),
            Some((channel, subscribed)) = done.recv() => {
                state.in_flight.remove(&channel);
                if !state.routed(&channel) {
                    if let (true, Some(conn)) = (subscribed, &conn) {
                        sunsubscribe(conn.clone(), channel, timeout);
                    }
                } else if subscribed {
                    state.backoff = MIN_BACKOFF;
                } else {
                    state.todo.insert(channel);
                    state.failed();
                }
            }
            () = tokio::time::sleep_until(state.retry_at), if waiting => {}
            _ = audit.tick() => {
                let channels: Vec<String> = lock(&state.routes).keys().cloned().collect();
                state.todo.extend(channels);
            }
        }
    }
}

fn sunsubscribe(mut conn: ClusterConnection, channel: String, timeout: Duration) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, conn.sunsubscribe(&channel)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_sse_hub::remote::FeedSender;

    fn state() -> (Subscriptions, mpsc::UnboundedReceiver<Feed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let routes = Routes::default();
        lock(&routes).insert("p:{room}:c".to_owned(), FeedSender::new(tx));
        (Subscriptions::new(routes, Arc::default()), rx)
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn pushes_route_messages_resync_and_resubscribe() {
        let (mut state, mut feed) = state();
        let epoch = tower_sse_hub::Epoch::random();
        let message = format!("3 {epoch} s\ndata: x\n\n");
        state.push(PushInfo {
            kind: PushKind::SMessage,
            data: vec![bulk("p:{room}:c"), bulk(&message)],
        });
        assert!(matches!(feed.try_recv(), Ok(Feed::Live { entry, .. }) if entry.offset == 3));
        state.push(PushInfo {
            kind: PushKind::SSubscribe,
            data: vec![bulk("p:{room}:c"), Value::Int(1)],
        });
        assert!(matches!(feed.try_recv(), Ok(Feed::Resync)));
        // Redis dropped it (the slot moved): subscribed again.
        state.push(PushInfo {
            kind: PushKind::SUnsubscribe,
            data: vec![bulk("p:{room}:c"), Value::Int(0)],
        });
        assert!(state.todo.contains("p:{room}:c"));
        // One this node left is not.
        state.todo.clear();
        state.push(PushInfo {
            kind: PushKind::SUnsubscribe,
            data: vec![bulk("p:{other}:c"), Value::Int(0)],
        });
        assert!(state.todo.is_empty());
    }

    #[tokio::test]
    async fn a_lost_connection_makes_the_node_renew_each_topic_again() {
        let (mut state, _feed) = state();
        let now = std::time::Instant::now();
        state.renewals.renewed("p:{room}:s", now);
        assert!(!state.renewals.due("p:{room}:s", 1_000, now));
        state.push(PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(state.renewals.due("p:{room}:s", 1_000, now));
        // And every routed channel is subscribed again.
        assert!(state.todo.contains("p:{room}:c"));
    }

    #[tokio::test]
    async fn malformed_pushes_are_ignored() {
        let (mut state, mut feed) = state();
        for (kind, data) in [
            (PushKind::SMessage, vec![]),
            (PushKind::SMessage, vec![Value::Nil, Value::Nil]),
            (PushKind::SMessage, vec![bulk("p:{room}:c")]),
            (
                PushKind::SMessage,
                vec![bulk("p:{room}:c"), bulk("garbage")],
            ),
            (PushKind::SMessage, vec![bulk("p:{room}:c"), Value::Int(7)]),
            (PushKind::SSubscribe, vec![]),
            (PushKind::SSubscribe, vec![Value::Int(1)]),
            (PushKind::SUnsubscribe, vec![Value::BulkString(vec![0xff])]),
            (PushKind::Other("x".to_owned()), vec![Value::Nil]),
        ] {
            state.push(PushInfo { kind, data });
        }
        assert!(feed.try_recv().is_err());
        assert!(state.todo.is_empty());
    }
}
