//! The [`Store`](tower_sse::hub::Store) contract (`src/hub/store.rs`), checked
//! once for every store through the `Hub` API: one order per topic,
//! acknowledged means stored, epochs, retention without subscribers, replay
//! then live with no gap or duplicate, lag that never blocks, the replay cap,
//! quiet topics that keep their history while subscribed, epoch changes
//! in-band, and idempotent publish. Each store gets the same tests from
//! `contract_tests!`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use futures_util::StreamExt;
use tower_sse::{EncodedEvent, Event, EventId, Hub, HubConfig, Subscriber};

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

async fn take(sub: &mut Subscriber, n: usize) -> Vec<EncodedEvent> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let next = tokio::time::timeout(GUARD, sub.next())
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
    let other = tower_sse::hub::Epoch::from_bits(id.epoch().bits() ^ 1);
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
    let rest: Vec<_> = tokio::time::timeout(GUARD, stuck.by_ref().collect::<Vec<_>>())
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
    assert!(matches!(err, tower_sse::HubError::InvalidKey), "{err}");
}

/// The lag bound of the tested hubs; the history holds four times as much.
const CAPACITY: usize = 256;
/// The replay cap of the tested hubs.
const MAX_REPLAY: usize = 16 * 1024;
/// The retention of the quiet-topic test.
const QUIET_TTL: Duration = Duration::from_millis(1500);

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

/// One test per promise for the store that `$hub` (an async expression using
/// `$config`) builds; `$lose` (an async expression) gives its [`Lose`].
macro_rules! contract_tests {
    ($store:ident, |$config:ident| $hub:expr, $lose:expr) => {
        mod $store {
            use super::*;

            async fn hub_with($config: HubConfig) -> Option<Hub> {
                $hub
            }

            async fn hub() -> Option<Hub> {
                hub_with(config()).await
            }

            fn topic(name: &str) -> String {
                format!(
                    "contract-{}-{}-{name}",
                    stringify!($store),
                    std::process::id()
                )
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_order_per_topic() {
                let Some(hub) = hub().await else { return };
                super::one_order_per_topic(hub, &topic("order")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acknowledged_means_stored() {
                let Some(hub) = hub().await else { return };
                super::acknowledged_means_stored(hub, &topic("stored")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn other_epochs_get_a_reset() {
                let Some(hub) = hub().await else { return };
                super::other_epochs_get_a_reset(hub, &topic("epochs")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replay_then_live() {
                let Some(hub) = hub().await else { return };
                super::replay_then_live(hub, &topic("handover")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lag_never_blocks() {
                let Some(hub) = hub().await else { return };
                super::lag_never_blocks(hub, &topic("lag")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replay_is_capped() {
                let Some(hub) = hub().await else { return };
                super::replay_is_capped(hub, &topic("capped")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn quiet_topics_with_subscribers_stay() {
                let config = config().history_ttl(QUIET_TTL);
                let Some(hub) = hub_with(config).await else {
                    return;
                };
                super::quiet_topics_with_subscribers_stay(hub, &topic("quiet")).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn epoch_changes_reach_open_streams() {
                let Some(hub) = hub().await else { return };
                let lose: Option<Lose> = $lose;
                let Some(lose) = lose else { return };
                super::epoch_changes_reach_open_streams(hub, &topic("epoch"), &lose).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn idempotent_publish() {
                let Some(hub) = hub().await else { return };
                super::idempotent_publish(hub, &topic("once")).await;
            }
        }
    };
}

// In memory, a topic's history is never lost while it has subscribers.
contract_tests!(memory, |config| Some(Hub::with_config(config)), None);

#[cfg(feature = "redis")]
mod redis_support;

// The same tests on a `RedisStore` (the shared Redis of `.ci/run`), with a
// key prefix of its own per test.
// Losing a topic's history: its keys deleted, as a Redis restarted empty or
// flushed leaves them.
#[cfg(feature = "redis")]
contract_tests!(
    redis,
    |config| {
        let url = redis_support::shared().await;
        url.map(|url| redis_support::node(&url, &redis_support::prefix("contract"), config))
    },
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(url) = redis_support::shared().await else {
                    return;
                };
                let pattern = format!("*:{{{topic}}}:*");
                let keys: Vec<String> =
                    redis_support::command(&url, ::redis::cmd("KEYS").arg(&pattern)).await;
                for key in keys {
                    let _: i64 = redis_support::command(&url, ::redis::cmd("DEL").arg(&key)).await;
                }
            })
        }
    ))
);
