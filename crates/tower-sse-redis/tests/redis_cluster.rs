//! [`RedisStore`] on a Redis Cluster of three masters that these tests start
//! themselves (`redis_support::cluster`; killed at the end): the store
//! contract, presence, and open streams across a master restart and a slot
//! moved to another master while publishers publish and subscribers read,
//! each subscriber's history checked: every acknowledged publish seen exactly
//! once and in order, or a `reset` announced. Without `redis-server` and
//! `redis-cli` the tests print SKIP, unless `CI` is set: then they fail.

mod redis_support;

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use redis_support::{cluster::Cluster, data_of, prefix, text};
use tokio::sync::watch;
use tower_sse::Event;
use tower_sse_hub::{contract::Lose, EventId, Hub, HubConfig, Presence, Subscriber};
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

/// Fails under CI, says SKIP otherwise.
fn skip(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("this test needs redis-server and redis-cli and CI is set: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// The cluster the contract tests share, for the whole test process: its
/// servers end with the process (see `redis_support::cluster`).
fn shared() -> Option<&'static Cluster> {
    static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
    SHARED
        .get_or_init(|| match Cluster::start(false) {
            Ok(cluster) => Some(cluster),
            Err(e) => {
                skip(&e);
                None
            }
        })
        .as_ref()
}

/// A cluster of this test's own, killed when dropped.
async fn own(persist: bool) -> Option<Cluster> {
    match tokio::task::spawn_blocking(move || Cluster::start(persist))
        .await
        .unwrap()
    {
        Ok(cluster) => Some(cluster),
        Err(e) => {
            skip(&e);
            None
        }
    }
}

fn store(urls: &str, prefix: &str, hub: HubConfig) -> RedisStore {
    let config = RedisConfig::cluster(urls)
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .hub(hub);
    RedisStore::new(config).expect("a store")
}

async fn cluster_hub(config: HubConfig) -> Option<Hub> {
    let cluster = tokio::task::block_in_place(shared)?;
    let store = store(&cluster.urls(), &prefix("contract"), config);
    Some(Hub::with_store(store))
}

/// Deletes a topic's keys on whichever master holds them.
fn lose() -> Option<Lose> {
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(cluster) = shared() else { return };
                let ports = cluster.ports();
                tokio::task::spawn_blocking(move || {
                    let pattern = format!("*:{{{topic}}}:*");
                    for port in ports {
                        let keys = redis_support::cluster::cli(port, &["KEYS", &pattern])
                            .unwrap_or_default();
                        for key in keys.lines().filter(|k| !k.is_empty()) {
                            redis_support::cluster::cli(port, &["DEL", key]).unwrap();
                        }
                    }
                })
                .await
                .unwrap();
            })
        },
    ))
}

tower_sse_hub::contract_tests!(redis_cluster, |config| cluster_hub(config).await, lose());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_on_a_cluster() {
    let Some(cluster) = tokio::task::block_in_place(shared) else {
        return;
    };
    let prefix = prefix("presence");
    let node = || {
        let store = store(&cluster.urls(), &prefix, HubConfig::new());
        RedisPresence::new(&store, Duration::from_secs(30))
    };
    let (a, b) = (node(), node());
    // Rooms in different slots, so on different masters.
    let rooms: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    for room in &rooms {
        a.join(room, "alice").await.unwrap();
        b.join(room, "bob").await.unwrap();
    }
    for room in &rooms {
        assert_eq!(a.members(room).await.unwrap(), ["alice", "bob"]);
        b.leave(room, "bob").await.unwrap();
        assert_eq!(a.members(room).await.unwrap(), ["alice"]);
    }
    assert!(a.expired().await.unwrap().is_empty(), "no node died");
}

/// One event as a subscriber got it: its id, `event:` and data.
type Got = (Option<EventId>, String, String);

fn parse(text: &str) -> Got {
    let id = redis_support::id_of(text).parse().ok();
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .unwrap_or("")
        .to_owned();
    (id, kind, data_of(text).to_owned())
}

/// Every acknowledged publish (`acked`: its number and id, in order) is in
/// `got` exactly once, with its id, in order, unless a `reset` announced that
/// its epoch was lost; nothing is there twice; offsets only go up within an
/// epoch, and a new epoch comes after a `reset` to it. Returns the number of
/// resets.
fn check(who: &str, got: &[Got], acked: &[(u64, EventId)]) -> usize {
    let mut resets = Vec::new();
    let mut last: Option<EventId> = None;
    let mut seen: Vec<(u64, EventId)> = Vec::new();
    for (id, kind, data) in got {
        let id = id.unwrap_or_else(|| panic!("{who}: an event without an id: {data}"));
        if kind == "reset" {
            resets.push(id.epoch());
            last = Some(id);
            continue;
        }
        if data == "start" {
            last = Some(id);
            continue;
        }
        if let Some(last) = last {
            if id.epoch() == last.epoch() {
                assert!(id.offset() > last.offset(), "{who}: {id} after {last}");
            } else {
                assert!(
                    resets.last() == Some(&id.epoch()),
                    "{who}: epoch of {id} without a reset to it"
                );
            }
        }
        last = Some(id);
        let n: u64 = data.parse().unwrap_or_else(|_| panic!("{who}: {data:?}"));
        if let Some(&(before, _)) = seen.last() {
            assert!(
                n > before,
                "{who}: {n} after {before} (twice, or out of order)"
            );
        }
        seen.push((n, id));
    }
    let mut seen = seen.into_iter().peekable();
    for &(n, id) in acked {
        while seen.peek().is_some_and(|&(m, _)| m < n) {
            seen.next();
        }
        match seen.peek() {
            Some(&(m, got)) if m == n => {
                assert_eq!(got, id, "{who}: {n} with another id");
            }
            _ => assert!(
                resets.iter().any(|&epoch| epoch != id.epoch()),
                "{who}: acknowledged {n} ({id}) never seen, and no reset"
            ),
        }
    }
    resets.len()
}

/// Publishes `0, 1, 2, ...` to `topic` with idempotency keys, each until it is
/// acknowledged (a retry with the same key is exact), until `stop`; returns
/// the acknowledged ones with their ids.
async fn publisher(
    hub: Hub,
    topic: String,
    progress: Arc<Mutex<u64>>,
    stop: watch::Receiver<bool>,
) -> Vec<(u64, EventId)> {
    let mut acked = Vec::new();
    let run = async {
        for n in 0u64.. {
            if *stop.borrow() {
                break;
            }
            loop {
                let key = format!("{topic}-{n}");
                match hub
                    .publish_once(&topic, &key, |_| Event::message(n.to_string()))
                    .await
                {
                    Ok(id) => {
                        acked.push((n, id));
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            *progress.lock().unwrap() = n + 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("publishes succeed again within 120 s of the fault");
    acked
}

/// Reads `sub` until it got the data `last` (once `last` is known).
async fn reader(mut sub: Subscriber, mut last: watch::Receiver<Option<u64>>) -> Vec<Got> {
    let mut got: Vec<Got> = Vec::new();
    loop {
        let done = |got: &[Got], last: Option<u64>| {
            last.is_some_and(|last| {
                got.iter()
                    .any(|(_, kind, data)| kind.is_empty() && data == &last.to_string())
            })
        };
        if done(&got, *last.borrow()) {
            return got;
        }
        let next = futures_util::StreamExt::next(&mut sub);
        let guard = tokio::time::sleep(Duration::from_secs(60));
        tokio::select! {
            event = next => match event {
                Some(event) => got.push(parse(&text(&event))),
                None => panic!("the stream ended: {:?}", got.last()),
            },
            _ = last.changed() => {}
            () = guard => panic!("no event within 60 s; last: {:?}", got.last()),
        }
    }
}

/// Topics with publishers on one node and subscribers on two, while `fault`
/// runs once every topic has some events; returns each subscriber's topic and
/// check (resets seen).
async fn under_fault(
    cluster: Arc<Mutex<Cluster>>,
    topics: &[String],
    fault: impl FnOnce(&mut Cluster) -> Result<(), String> + Send + 'static,
) -> Vec<(String, usize)> {
    let urls = cluster.lock().unwrap().urls();
    let prefix = prefix("fault");
    let config = HubConfig::new().history_len(100_000);
    let nodes: Vec<Hub> = (0..2)
        .map(|_| Hub::with_store(store(&urls, &prefix, config.clone())))
        .collect();
    let (stop_tx, stop) = watch::channel(false);
    let mut readers = Vec::new();
    let mut publishers = Vec::new();
    let mut lasts = Vec::new();
    for topic in topics {
        let start = nodes[0]
            .publish(topic, Event::message("start"))
            .await
            .unwrap();
        let (tx, rx) = watch::channel(None::<u64>);
        lasts.push(tx);
        for node in [&nodes[0], &nodes[1], &nodes[1]] {
            let sub = node
                .subscribe(topic, Some(&start.to_string()))
                .await
                .unwrap();
            readers.push((topic.clone(), tokio::spawn(reader(sub, rx.clone()))));
        }
        let progress = Arc::new(Mutex::new(0));
        let task = tokio::spawn(publisher(
            nodes[0].clone(),
            topic.clone(),
            progress.clone(),
            stop.clone(),
        ));
        publishers.push((progress, task));
    }
    let progress = |publishers: &[(Arc<Mutex<u64>>, _)]| -> u64 {
        publishers
            .iter()
            .map(|(p, _)| *p.lock().unwrap())
            .min()
            .unwrap_or(0)
    };
    while progress(&publishers) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let faulty = cluster.clone();
    tokio::task::spawn_blocking(move || fault(&mut faulty.lock().unwrap()))
        .await
        .unwrap()
        .expect("the fault");
    // Some more events on every topic after the fault.
    let after = publishers
        .iter()
        .map(|(p, _)| *p.lock().unwrap())
        .max()
        .unwrap_or(0);
    while progress(&publishers) < after + 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_tx.send(true).unwrap();
    let mut acked = Vec::new();
    for ((_, task), last) in publishers.into_iter().zip(&lasts) {
        let done = task.await.unwrap();
        last.send(done.last().map(|&(n, _)| n)).unwrap();
        acked.push(done);
    }
    let mut resets = Vec::new();
    for (i, (topic, reader)) in readers.into_iter().enumerate() {
        let got = reader.await.unwrap();
        let index = topics.iter().position(|t| *t == topic).unwrap();
        let who = format!("subscriber {i} of {topic}");
        resets.push((topic, check(&who, &got, &acked[index])));
    }
    resets
}

/// Topics on every master: `room-0` ... `room-5`.
fn topics() -> Vec<String> {
    (0..6).map(|i| format!("room-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restart_loses_nothing_acknowledged() {
    let Some(cluster) = own(true).await else {
        return;
    };
    let topics = topics();
    let slot = cluster.slot(&format!("{{{}}}", topics[0]));
    let master = cluster.owner(slot);
    let cluster = Arc::new(Mutex::new(cluster));
    let resets = under_fault(cluster, &topics, move |cluster| {
        cluster.restart(master, Duration::from_millis(300))
    })
    .await;
    // Persistent (fsynced) masters: nothing lost, so no reset either.
    assert!(resets.iter().all(|(_, n)| *n == 0), "{resets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_resets_its_topics_in_band() {
    let Some(cluster) = own(false).await else {
        return;
    };
    let topics = topics();
    let slot = cluster.slot(&format!("{{{}}}", topics[0]));
    let master = cluster.owner(slot);
    let lost: Vec<String> = topics
        .iter()
        .filter(|t| cluster.owner(cluster.slot(&format!("{{{t}}}"))) == master)
        .cloned()
        .collect();
    let cluster = Arc::new(Mutex::new(cluster));
    let resets = under_fault(cluster, &topics, move |cluster| {
        cluster.restart(master, Duration::from_millis(300))
    })
    .await;
    // Without persistence the master's topics lost their history: their open
    // streams got the reset (and, by the check, everything acknowledged
    // since); the other masters' topics lost nothing.
    for (topic, n) in &resets {
        assert_eq!(*n >= 1, lost.contains(topic), "{topic}: {resets:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_under_subscribers_loses_nothing() {
    let Some(cluster) = own(false).await else {
        return;
    };
    let topics = topics();
    let slot = cluster.slot(&format!("{{{}}}", topics[0]));
    let from = cluster.owner(slot);
    let cluster = Arc::new(Mutex::new(cluster));
    let moved = cluster.clone();
    let resets = under_fault(cluster, &topics, move |cluster| {
        let to = (from + 1) % 3;
        cluster.move_slot(slot, from, to)?;
        // And on to the third master.
        cluster.move_slot(slot, to, (to + 1) % 3)
    })
    .await;
    assert!(resets.iter().all(|(_, n)| *n == 0), "{resets:?}");
    let moved = moved.lock().unwrap();
    assert_eq!(moved.owner(slot), (from + 2) % 3, "the slot moved twice");
}

/// `EVALSHA` calls on every master of `cluster` so far.
fn script_calls(cluster: &Cluster) -> u64 {
    cluster
        .ports()
        .into_iter()
        .filter_map(|port| redis_support::cluster::cli(port, &["INFO", "commandstats"]).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
        })
        .sum()
}

/// Concurrent publishes to one topic on a cluster share script calls (each
/// topic's batches are its own: a call's keys are in one slot), each with its
/// own id, in order, and a reader on another node gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_on_a_cluster_are_batched_per_topic() {
    let Some(cluster) = tokio::task::block_in_place(shared) else {
        return;
    };
    let prefix = prefix("cbatch");
    let hub = Hub::with_store(store(&cluster.urls(), &prefix, HubConfig::new()));
    let topics = topics();
    for topic in &topics {
        hub.publish(topic, Event::message("0")).await.unwrap();
    }
    let before = script_calls(cluster);
    let publishers: Vec<_> = (0..48)
        .map(|p| {
            let (hub, topic) = (hub.clone(), topics[p % topics.len()].clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..10 {
                    let data = format!("{p}.{i}");
                    let id = hub.publish(&topic, Event::message(data.clone())).await;
                    ids.push((id.unwrap(), data));
                }
                (topic, ids)
            })
        })
        .collect();
    let mut acked: std::collections::HashMap<String, Vec<(EventId, String)>> = Default::default();
    for done in publishers {
        let (topic, ids) = done.await.unwrap();
        assert!(ids.windows(2).all(|w| w[0].0.offset() < w[1].0.offset()));
        acked.entry(topic).or_default().extend(ids);
    }
    let calls = script_calls(cluster) - before;
    assert!(
        calls < 480,
        "{calls} script calls for 480 publishes: batched"
    );
    let reader = Hub::with_store(store(&cluster.urls(), &prefix, HubConfig::new()));
    for (topic, mut ids) in acked {
        ids.sort_by_key(|(id, _)| id.offset());
        let offsets: Vec<u64> = ids.iter().map(|(id, _)| id.offset()).collect();
        assert_eq!(offsets, (2..=81).collect::<Vec<_>>(), "{topic}");
        let start = EventId::new(1, ids[0].0.epoch()).to_string();
        let mut sub = reader.subscribe(&topic, Some(&start)).await.unwrap();
        for (id, data) in &ids {
            let event = redis_support::next(&mut sub).await.unwrap();
            assert_eq!(redis_support::id_of(&event), id.to_string());
            assert_eq!(data_of(&event), data);
        }
    }
}
