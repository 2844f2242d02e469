//! The [`Store`](crate::Store) contract as a test kit: one async function per
//! promise, run through the `Hub` API, so that every store (in this crate and
//! in store crates of their own) is held to the same promises: one order per
//! topic, acknowledged means stored, epochs, retention without subscribers,
//! replay then live with no gap or duplicate, lag that never blocks, the
//! replay cap, quiet topics that keep their history while subscribed, epoch
//! changes in-band, idempotent publish, and streams of several topics (one
//! cursor resumes every topic exactly; a topic reset among others).
//!
//! A store crate calls [`contract_tests!`](crate::contract_tests) in a test
//! file, which writes one `#[tokio::test]` per promise (the crate needs
//! `tokio` with `macros` and `rt-multi-thread` among its dev-dependencies):
//!
//! ```ignore
//! tower_sse_hub::contract_tests!(
//!     my_store,
//!     |config| Some(Hub::with_store(MyStore::new(config))),
//!     None // or Some(Lose): how to make the store lose a topic's history
//! );
//! ```
//!
//! or [`run_contract`] to run them all in one test. Each function panics with
//! what went wrong when its store breaks the promise: it is meant for tests.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tower_sse::{EncodedEvent, Event};

use crate::{Cursor, EventId, Hub, HubConfig, MultiSubscriber, Subscriber};

const GUARD: Duration = Duration::from_secs(60);

fn text(event: &EncodedEvent) -> String {
    String::from_utf8(event.as_bytes().to_vec()).unwrap()
}

/// The `id:` and data of an event.
fn parse(event: &EncodedEvent) -> (Option<EventId>, String, String) {
    let text = text(event);
    let mut id = None;
    let mut kind = String::new();
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            kind = v.to_owned();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data = v.to_owned();
        }
    }
    (id, kind, data)
}

async fn next(sub: &mut Subscriber) -> Option<EncodedEvent> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *sub), cx)).await
}

async fn take(sub: &mut Subscriber, n: usize) -> Vec<EncodedEvent> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let next = tokio::time::timeout(GUARD, next(sub))
            .await
            .expect("hang guard");
        got.push(next.expect("stream ended"));
    }
    got
}

/// Contiguous offsets, and each publisher's events in its own order.
pub async fn one_order_per_topic(hub: Hub, topic: &str) {
    let start = hub.publish(topic, Event::message("start")).await.unwrap();
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(
            hub.subscribe(topic, Some(&start.to_string()))
                .await
                .unwrap(),
        );
    }
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (hub, topic) = (hub.clone(), topic.to_owned());
            tokio::spawn(async move {
                for n in 0..80 {
                    hub.publish(&topic, Event::message(format!("{p}:{n}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let mut orders = Vec::new();
    for reader in &mut readers {
        let got = take(reader, 240).await; // within the lag bound
        let mut next = [0; 3];
        for (i, event) in got.iter().enumerate() {
            let (id, _, data) = parse(event);
            let id = id.unwrap();
            assert_eq!(
                (id.offset(), id.epoch()),
                (start.offset() + 1 + i as u64, start.epoch())
            );
            let (p, n) = data.split_once(':').unwrap();
            let (p, n): (usize, usize) = (p.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[p]);
            next[p] += 1;
        }
        orders.push(got.iter().map(text).collect::<Vec<_>>());
    }
    assert!(orders.windows(2).all(|w| w[0] == w[1]), "one total order");
}

/// A publish to a topic nobody is subscribed to is stored and replayable.
pub async fn acknowledged_means_stored(hub: Hub, topic: &str) {
    let first = hub
        .publish(topic, Event::message("to nobody"))
        .await
        .unwrap();
    let second = hub
        .publish(topic, Event::message("still nobody"))
        .await
        .unwrap();
    assert_eq!(second.offset(), first.offset() + 1);
    let before = EventId::new(first.offset() - 1, first.epoch()).to_string();
    let mut sub = hub.subscribe(topic, Some(&before)).await.unwrap();
    let got: Vec<_> = take(&mut sub, 2).await.iter().map(parse).collect();
    assert_eq!(got[0], (Some(first), String::new(), "to nobody".into()));
    assert_eq!(got[1], (Some(second), String::new(), "still nobody".into()));
}

/// A cursor of another epoch, or from the future, is never replayed from.
pub async fn other_epochs_get_a_reset(hub: Hub, topic: &str) {
    let id = hub.publish(topic, Event::message("a")).await.unwrap();
    let other = crate::Epoch::from_bits(id.epoch().bits() ^ 1);
    for cursor in [
        EventId::new(id.offset(), other),
        EventId::new(id.offset() + 5, id.epoch()),
    ] {
        let mut sub = hub
            .subscribe(topic, Some(&cursor.to_string()))
            .await
            .unwrap();
        let (reset_id, kind, data) = parse(&take(&mut sub, 1).await[0]);
        assert_eq!(kind, "reset", "{cursor}");
        let reset_id = reset_id.unwrap();
        assert_eq!(reset_id.epoch(), id.epoch());
        assert_eq!(data, format!("{{\"after\":\"{reset_id}\"}}"));
    }
}

/// Replay and live events meet with no gap and no duplicate while a publisher
/// runs.
pub async fn replay_then_live(hub: Hub, topic: &str) {
    let start = hub.publish(topic, Event::message("0")).await.unwrap();
    let publisher = {
        let (hub, topic) = (hub.clone(), topic.to_owned());
        tokio::spawn(async move {
            for n in 1..=200 {
                // Within the lag bound even if no reader has run yet.
                hub.publish(&topic, Event::message(n.to_string()))
                    .await
                    .unwrap();
                if n % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut subs = Vec::new();
    for _ in 0..5 {
        subs.push(
            hub.subscribe(topic, Some(&start.to_string()))
                .await
                .unwrap(),
        );
        tokio::task::yield_now().await;
    }
    publisher.await.unwrap();
    for sub in &mut subs {
        let got: Vec<String> = take(sub, 200).await.iter().map(|e| parse(e).2).collect();
        assert_eq!(got, (1..=200).map(|n| n.to_string()).collect::<Vec<_>>());
    }
}

/// A subscriber that never reads holds up neither publishers nor other readers,
/// and is told when it reads at last.
pub async fn lag_never_blocks(hub: Hub, topic: &str) {
    let mut stuck = hub.subscribe(topic, None).await.unwrap();
    let mut reader = hub.subscribe(topic, None).await.unwrap();
    for i in 0..3 * CAPACITY {
        let published =
            tokio::time::timeout(GUARD, hub.publish(topic, Event::message(i.to_string())));
        published
            .await
            .expect("publish never waits for readers")
            .unwrap();
        assert_eq!(parse(&take(&mut reader, 1).await[0]).2, i.to_string());
    }
    let drain = async {
        let mut rest = Vec::new();
        while let Some(event) = next(&mut stuck).await {
            rest.push(event);
        }
        rest
    };
    let rest = tokio::time::timeout(GUARD, drain)
        .await
        .expect("the stuck subscriber's stream ends");
    assert_eq!(
        rest.last().map(text).as_deref(),
        Some(": lagged\nretry: 1000\n\n")
    );
}

/// A replay is cut to the newest events that fit `max_replay_bytes`, after a
/// `reset` naming the id after which it is complete.
pub async fn replay_is_capped(hub: Hub, topic: &str) {
    let before = hub.publish(topic, Event::message("first")).await.unwrap();
    let mut last = before;
    for n in 0..200 {
        // 200 events of about 130 bytes: twice the cap.
        let data = format!("{n:03}:{}", "x".repeat(100));
        last = hub.publish(topic, Event::message(data)).await.unwrap();
    }
    let mut sub = hub
        .subscribe(topic, Some(&before.to_string()))
        .await
        .unwrap();
    let (reset_id, kind, _) = parse(&take(&mut sub, 1).await[0]);
    assert_eq!(kind, "reset", "a replay past the cap starts with a reset");
    let after = reset_id.unwrap();
    assert!(after.offset() > before.offset());
    let count = (last.offset() - after.offset()) as usize;
    let replay = take(&mut sub, count).await;
    let bytes: usize = replay.iter().map(|e| e.len()).sum();
    assert!(bytes <= MAX_REPLAY, "{bytes} bytes replayed");
    assert!(
        bytes > MAX_REPLAY / 2,
        "the newest events that fit: {bytes}"
    );
    assert_eq!(parse(replay.last().unwrap()).0, Some(last));
}

/// A topic with a subscriber keeps its history and epoch however long it stays
/// quiet, past the retention TTL.
pub async fn quiet_topics_with_subscribers_stay(hub: Hub, topic: &str) {
    let first = hub.publish(topic, Event::message("one")).await.unwrap();
    let mut sub = hub.subscribe(topic, None).await.unwrap();
    tokio::time::sleep(4 * QUIET_TTL).await;
    let second = hub.publish(topic, Event::message("two")).await.unwrap();
    assert_eq!(
        (second.epoch(), second.offset()),
        (first.epoch(), first.offset() + 1),
        "the same history, not a new epoch"
    );
    let (id, kind, data) = parse(&take(&mut sub, 1).await[0]);
    assert_eq!(
        (id, kind.as_str(), data.as_str()),
        (Some(second), "", "two")
    );
    // And it is still replayable from the first event.
    let mut back = hub
        .subscribe(topic, Some(&first.to_string()))
        .await
        .unwrap();
    assert_eq!(parse(&take(&mut back, 1).await[0]).0, Some(second));
}

/// When the store loses a topic's history under open streams, they stay open:
/// each gets the `reset` in-band, then the new epoch's events.
pub async fn epoch_changes_reach_open_streams(hub: Hub, topic: &str, lose: &Lose) {
    let old = hub.publish(topic, Event::message("old")).await.unwrap();
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(hub.subscribe(topic, None).await.unwrap());
    }
    lose(topic.to_owned()).await;
    let new = hub.publish(topic, Event::message("new")).await.unwrap();
    assert_ne!(new.epoch(), old.epoch(), "the history was lost");
    let again = hub.publish(topic, Event::message("again")).await.unwrap();
    for sub in &mut subs {
        let got: Vec<_> = take(sub, 3).await.iter().map(parse).collect();
        let (reset, kind, data) = &got[0];
        assert_eq!(kind, "reset");
        let reset = reset.unwrap();
        assert_eq!(reset.epoch(), new.epoch());
        assert!(reset.offset() < new.offset());
        assert_eq!(data, &format!("{{\"after\":\"{reset}\"}}"));
        assert_eq!(got[1], (Some(new), String::new(), "new".into()));
        assert_eq!(got[2], (Some(again), String::new(), "again".into()));
    }
    // A cursor of the lost epoch gets the reset, then the new epoch from its start.
    let mut back = hub.subscribe(topic, Some(&old.to_string())).await.unwrap();
    let got: Vec<_> = take(&mut back, 3).await.iter().map(parse).collect();
    assert_eq!(got[0].1, "reset");
    assert_eq!(got[1].0, Some(new));
    assert_eq!(got[2].0, Some(again));
}

/// A publish with a key already used stores nothing and answers with the
/// first id, also when both run at once.
pub async fn idempotent_publish(hub: Hub, topic: &str) {
    let mut sub = hub.subscribe(topic, None).await.unwrap();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (hub, topic) = (hub.clone(), topic.to_owned());
            tokio::spawn(async move {
                hub.publish_once(&topic, "msg-1", |id| Event::message(format!("1 {id}")))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for racer in racers {
        ids.push(racer.await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one id: {ids:?}");
    let retry = hub
        .publish_once(topic, "msg-1", |_| Event::message("again"))
        .await
        .unwrap();
    assert_eq!(retry, ids[0]);
    let other = hub
        .publish_once(topic, "msg-2", |_| Event::message("2"))
        .await
        .unwrap();
    assert_eq!(other.offset(), ids[0].offset() + 1, "stored once");
    let got: Vec<_> = take(&mut sub, 2).await.iter().map(parse).collect();
    assert_eq!(
        got[0],
        (Some(ids[0]), String::new(), format!("1 {}", ids[0]))
    );
    assert_eq!(got[1], (Some(other), String::new(), "2".into()));
    let err = hub
        .publish_once(topic, "", |_| Event::message("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, crate::HubError::InvalidKey), "{err}");
}

async fn next_of_many(stream: &mut MultiSubscriber) -> EncodedEvent {
    let next =
        std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *stream), cx));
    tokio::time::timeout(GUARD, next)
        .await
        .expect("hang guard")
        .expect("stream ended")
}

/// The cursor, kind and data of an event of a multi-topic stream.
fn parse_many(event: &EncodedEvent) -> (Option<Cursor>, String, String) {
    let text = text(event);
    let cursor = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .and_then(|id| id.parse().ok());
    let kind = text
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .unwrap_or_default();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_default();
    (cursor, kind.to_owned(), data.to_owned())
}

/// One stream of four topics, read in short sessions while every topic is
/// published to at once: each session reconnects with the last cursor it
/// received, and every topic's events arrive exactly once, in order.
pub async fn many_topics_resume_exactly(hub: Hub, topic: &str) {
    const PER_TOPIC: usize = 60;
    let topics: Vec<String> = (0..4).map(|i| format!("{topic}-{i}")).collect();
    let mut stream = hub.subscribe_many(&topics, None).await.unwrap();
    let publishers: Vec<_> = topics
        .iter()
        .map(|t| {
            let (hub, t) = (hub.clone(), t.clone());
            tokio::spawn(async move {
                for n in 0..PER_TOPIC {
                    hub.publish(&t, Event::message(format!("{t} {n}")))
                        .await
                        .unwrap();
                    if n % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let mut seen = vec![0usize; topics.len()];
    let mut cursor: Option<Cursor> = None;
    let mut session = 0;
    while seen.iter().sum::<usize>() < PER_TOPIC * topics.len() {
        // A session reads up to 7 events, then the client reconnects.
        for _ in 0..7 {
            if seen.iter().sum::<usize>() == PER_TOPIC * topics.len() {
                break;
            }
            let (id, kind, data) = parse_many(&next_of_many(&mut stream).await);
            assert_eq!(kind, "", "session {session}: {data}");
            let (t, n) = data.rsplit_once(' ').unwrap();
            let i = topics.iter().position(|x| x == t).unwrap();
            assert_eq!(n.parse::<usize>().unwrap(), seen[i], "{t}: once, in order");
            seen[i] += 1;
            cursor = Some(id.expect("a cursor on every event"));
        }
        drop(stream);
        let last = cursor.as_ref().map(ToString::to_string);
        stream = hub.subscribe_many(&topics, last.as_deref()).await.unwrap();
        session += 1;
    }
    for p in publishers {
        p.await.unwrap();
    }
}

/// A topic whose history no longer holds the client's position gets a
/// `reset` naming it, while the other topics of the stream resume exactly;
/// a topic added to the stream starts from now, one left out is not opened.
pub async fn a_topic_reset_among_others(hub: Hub, topic: &str) {
    let (a, b, c) = (
        format!("{topic}-a"),
        format!("{topic}-b"),
        format!("{topic}-c"),
    );
    let mut stream = hub.subscribe_many(&[&a, &b], None).await.unwrap();
    hub.publish(&a, Event::message("a 0")).await.unwrap();
    let (cursor, ..) = parse_many(&next_of_many(&mut stream).await);
    let cursor = cursor.unwrap().to_string();
    drop(stream);
    // Away: `a` runs past its history, `b` gets two events, `c` one.
    for n in 1..=4 * CAPACITY + 8 {
        hub.publish(&a, Event::message(format!("a {n}")))
            .await
            .unwrap();
    }
    hub.publish(&b, Event::message("b 1")).await.unwrap();
    hub.publish(&b, Event::message("b 2")).await.unwrap();
    hub.publish(&c, Event::message("c old")).await.unwrap();
    let mut stream = hub
        .subscribe_many(&[&a, &b, &c], Some(&cursor))
        .await
        .unwrap();
    assert_eq!(stream.topics().collect::<Vec<_>>(), [&a, &b, &c]);
    let mut b_seen = Vec::new();
    let mut a_reset = None;
    let mut a_after = 0;
    while b_seen.len() < 2 || a_reset.is_none() || a_after == 0 {
        let (id, kind, data) = parse_many(&next_of_many(&mut stream).await);
        let id = id.expect("a cursor on every event");
        match kind.as_str() {
            "reset" => {
                assert!(
                    data.starts_with(&format!("{{\"topic\":\"{a}\",\"after\":\"")),
                    "{data}"
                );
                assert!(a_reset.is_none(), "one reset");
                a_reset = id.get(&a);
            }
            "" if data.starts_with("b ") => b_seen.push(data),
            "" if data.starts_with("a ") => {
                assert!(a_reset.is_some(), "the reset comes before `a`'s events");
                a_after += 1;
            }
            _ => panic!("unexpected {kind}: {data}"),
        }
    }
    assert_eq!(b_seen, ["b 1", "b 2"], "`b` resumes exactly");
    // `c` was not in the cursor: it starts from now, with nothing replayed.
    let c_new = hub.publish(&c, Event::message("c new")).await.unwrap();
    loop {
        let (id, kind, data) = parse_many(&next_of_many(&mut stream).await);
        if data.starts_with("c ") {
            assert_eq!((kind.as_str(), data.as_str()), ("", "c new"));
            assert_eq!(id.unwrap().get(&c), Some(c_new));
            break;
        }
        assert!(data.starts_with("a "), "{kind}: {data}");
    }
}

/// The lag bound of the tested hubs; the history holds four times as much.
pub const CAPACITY: usize = 256;
/// The replay cap of the tested hubs.
pub const MAX_REPLAY: usize = 16 * 1024;
/// The retention of the quiet-topic test.
pub const QUIET_TTL: Duration = Duration::from_millis(1500);

/// The hub configuration every store is tested with.
pub fn config() -> HubConfig {
    HubConfig::new()
        .queue_capacity(CAPACITY)
        .history_len(4 * CAPACITY)
        .max_replay_bytes(MAX_REPLAY)
}

/// Makes the store lose one topic's history, as a broker restarted empty
/// would; `None` for a store that cannot lose it under subscribers.
pub type Lose = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs every promise against the hubs `make` builds (one per promise, from
/// the configuration it is given), on topics named after `name`; `lose` as
/// for [`contract_tests!`](crate::contract_tests).
pub async fn run_contract<F, Fut>(name: &str, make: F, lose: Option<Lose>)
where
    F: Fn(HubConfig) -> Fut,
    Fut: Future<Output = Hub>,
{
    let topic = |promise: &str| format!("contract-{name}-{}-{promise}", std::process::id());
    one_order_per_topic(make(config()).await, &topic("order")).await;
    acknowledged_means_stored(make(config()).await, &topic("stored")).await;
    other_epochs_get_a_reset(make(config()).await, &topic("epochs")).await;
    replay_then_live(make(config()).await, &topic("handover")).await;
    lag_never_blocks(make(config()).await, &topic("lag")).await;
    replay_is_capped(make(config()).await, &topic("capped")).await;
    let quiet = config().history_ttl(QUIET_TTL);
    quiet_topics_with_subscribers_stay(make(quiet).await, &topic("quiet")).await;
    if let Some(lose) = lose {
        epoch_changes_reach_open_streams(make(config()).await, &topic("epoch"), &lose).await;
    }
    idempotent_publish(make(config()).await, &topic("once")).await;
    many_topics_resume_exactly(make(config()).await, &topic("many")).await;
    a_topic_reset_among_others(make(config()).await, &topic("reset-one")).await;
}

/// One `#[tokio::test]` per promise of the [store contract](crate::contract)
/// for the store that `$hub` builds (an async expression using `$config: HubConfig`,
/// giving `Option<Hub>`: `None` skips the tests, for a broker that is not
/// there); `$lose` (an expression giving `Option<Lose>`) makes the store lose
/// a topic's history, `None` for a store that cannot lose it under
/// subscribers.
#[macro_export]
macro_rules! contract_tests {
    ($store:ident, |$config:ident| $hub:expr, $lose:expr) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;
            use $crate::contract::{config, Lose, QUIET_TTL};
            use $crate::{Hub, HubConfig};

            async fn contract_hub_with($config: HubConfig) -> Option<Hub> {
                $hub
            }

            async fn contract_hub() -> Option<Hub> {
                contract_hub_with(config()).await
            }

            fn contract_topic(name: &str) -> String {
                format!(
                    "contract-{}-{}-{name}",
                    stringify!($store),
                    std::process::id()
                )
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_order_per_topic() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::one_order_per_topic(hub, &contract_topic("order")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acknowledged_means_stored() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::acknowledged_means_stored(hub, &contract_topic("stored")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn other_epochs_get_a_reset() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::other_epochs_get_a_reset(hub, &contract_topic("epochs")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replay_then_live() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::replay_then_live(hub, &contract_topic("handover")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lag_never_blocks() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::lag_never_blocks(hub, &contract_topic("lag")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replay_is_capped() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::replay_is_capped(hub, &contract_topic("capped")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn quiet_topics_with_subscribers_stay() {
                let config = config().history_ttl(QUIET_TTL);
                let Some(hub) = contract_hub_with(config).await else {
                    return;
                };
                $crate::contract::quiet_topics_with_subscribers_stay(hub, &contract_topic("quiet"))
                    .await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn epoch_changes_reach_open_streams() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                let lose: Option<Lose> = $lose;
                let Some(lose) = lose else { return };
                $crate::contract::epoch_changes_reach_open_streams(
                    hub,
                    &contract_topic("epoch"),
                    &lose,
                )
                .await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn idempotent_publish() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::idempotent_publish(hub, &contract_topic("once")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_topics_resume_exactly() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::many_topics_resume_exactly(hub, &contract_topic("many")).await;
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_topic_reset_among_others() {
                let Some(hub) = contract_hub().await else {
                    return;
                };
                $crate::contract::a_topic_reset_among_others(hub, &contract_topic("reset-one"))
                    .await;
            }
        }
    };
}
