//! The [`Store`](tower_sse::hub::Store) contract (`src/hub/store.rs`), checked
//! once for every store through the `Hub` API: one order per topic,
//! acknowledged means stored, epochs, retention without subscribers, replay
//! then live with no gap or duplicate, and lag that never blocks. Each store
//! gets the same tests from `contract_tests!`.

use std::time::Duration;

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

/// The lag bound of the tested hubs; the history holds four times as much.
const CAPACITY: usize = 256;

/// The hub configuration every store is tested with.
pub fn config() -> HubConfig {
    HubConfig::new()
        .queue_capacity(CAPACITY)
        .history_len(4 * CAPACITY)
}

/// One test per promise for the store that `$hub` (an async expression) builds.
macro_rules! contract_tests {
    ($store:ident, $hub:expr) => {
        mod $store {
            use super::*;

            async fn hub() -> Option<Hub> {
                $hub
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
        }
    };
}

contract_tests!(memory, Some(Hub::with_config(config())));

#[cfg(feature = "redis")]
mod redis_support;

// The same tests on a `RedisStore` (the shared Redis of `.ci/run`), with a
// key prefix of its own per test.
#[cfg(feature = "redis")]
contract_tests!(redis, {
    let url = redis_support::shared().await;
    url.map(|url| redis_support::node(&url, &redis_support::prefix("contract"), config()))
});
