//! `Publisher`: publishing through a topic found once is `Hub::publish` to it,
//! ids, history and delivery alike, also when the topic is freed meanwhile.

use std::time::Duration;

use futures_util::StreamExt;
use tower_sse::Event;
use tower_sse_hub::{Hub, HubConfig, Store};

/// The data of the next `n` events a subscriber receives.
async fn next_data(sub: &mut tower_sse_hub::Subscriber, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let event = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on");
        let text = String::from_utf8(event.as_bytes().to_vec()).unwrap();
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("an event with data, not {text:?}"))
            .to_owned();
        seen.push(data);
    }
    seen
}

#[tokio::test]
async fn a_publisher_publishes_as_the_hub_does() {
    let hub = Hub::new();
    let mut sub = hub.subscribe("room", None).await.unwrap();
    let mut room = hub.publisher("room");
    assert_eq!(room.topic(), "room");
    let a = room.publish(Event::message("a")).await.unwrap();
    let b = hub.publish("room", Event::message("b")).await.unwrap();
    let c = room.publish(Event::message("c")).await.unwrap();
    let mut clone = room.clone();
    let d = clone.publish(Event::message("d")).await.unwrap();
    let offsets: Vec<u64> = [&a, &b, &c, &d].iter().map(|id| id.offset()).collect();
    assert_eq!(offsets, [1, 2, 3, 4]);
    assert_eq!(hub.position("room"), Some(d));
    assert_eq!(next_data(&mut sub, 4).await, ["a", "b", "c", "d"]);
    // Resume from `b`: the history is the one `Hub::publish` keeps.
    let mut resumed = hub.subscribe("room", Some(&b.to_string())).await.unwrap();
    assert_eq!(next_data(&mut resumed, 2).await, ["c", "d"]);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_topic_freed_meanwhile_is_made_again() {
    let ttl = Duration::from_secs(60);
    let hub = Hub::with_config(HubConfig::new().history_ttl(ttl));
    let mut feed = hub.publisher("feed");
    feed.publish(Event::message("before")).await.unwrap();
    assert_eq!(hub.topic_count(), 1);
    // No subscriber, past its retention: the sweeper frees it while the
    // publisher still holds it.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(hub.topic_count(), 0);
    assert_eq!(hub.position("feed"), None);
    let mut sub = hub.subscribe("feed", None).await.unwrap();
    let after = feed.publish(Event::message("after")).await.unwrap();
    assert_eq!(hub.topic_count(), 1, "made again, once");
    assert_eq!(hub.position("feed"), Some(after));
    assert_eq!(next_data(&mut sub, 1).await, ["after"]);
}

#[tokio::test]
async fn a_topic_evicted_at_the_bound_is_made_again() {
    let hub = Hub::with_config(HubConfig::new().max_topics(1));
    let mut a = hub.publisher("a");
    a.publish(Event::message("a1")).await.unwrap();
    // The bound is one topic: `b` evicts the idle `a`.
    hub.publish("b", Event::message("b1")).await.unwrap();
    assert_eq!(hub.position("a"), None);
    let mut sub = hub.subscribe("a", None).await;
    // `a` was made by the subscribe (evicting `b`), and the publisher finds it.
    let id = a.publish(Event::message("a2")).await.unwrap();
    assert_eq!(hub.position("a"), Some(id));
    assert_eq!(hub.topic_count(), 1);
    assert_eq!(next_data(sub.as_mut().unwrap(), 1).await, ["a2"]);
}

#[test]
fn publishers_on_two_threads_lose_nothing() {
    const EACH: usize = 2_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Room for every event, so the subscriber reads them after the fact.
        let hub = Hub::with_config(
            HubConfig::new()
                .history_len(2 * EACH)
                .queue_capacity(2 * EACH),
        );
        let mut sub = hub.subscribe("t", None).await.unwrap();
        let tasks: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|who| {
                let mut publisher = hub.publisher("t");
                tokio::spawn(async move {
                    for n in 0..EACH {
                        publisher
                            .publish(Event::message(format!("{who}{n}")))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let seen = next_data(&mut sub, 2 * EACH).await;
        for who in ["x", "y"] {
            let mine: Vec<&String> = seen.iter().filter(|d| d.starts_with(who)).collect();
            let expected: Vec<String> = (0..EACH).map(|n| format!("{who}{n}")).collect();
            assert_eq!(mine.len(), EACH, "every event of {who} once");
            assert!(
                mine.iter().zip(&expected).all(|(a, b)| *a == b),
                "{who} in order"
            );
        }
        assert_eq!(hub.position("t").unwrap().offset(), 2 * EACH as u64);
    });
}

/// A store that is not the hub's `MemoryStore` (one wrapped), so the hub and
/// its publishers go through the `Store` seam, as on a networked store.
#[derive(Debug, Default)]
struct Wrapped(tower_sse_hub::MemoryStore);

impl Store for Wrapped {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        key: Option<&'a str>,
        make: tower_sse_hub::MakeEvent<'a>,
    ) -> tower_sse_hub::StoreFuture<'a, Result<tower_sse_hub::EventId, tower_sse_hub::HubError>>
    {
        self.0.publish(topic, key, make)
    }

    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        last_event_id: Option<&'a str>,
    ) -> tower_sse_hub::StoreFuture<'a, Result<tower_sse_hub::Subscriber, tower_sse_hub::HubError>>
    {
        self.0.subscribe(topic, last_event_id)
    }

    fn subscriber_count(&self, topic: &str) -> usize {
        self.0.subscriber_count(topic)
    }

    fn topic_count(&self) -> usize {
        self.0.topic_count()
    }

    fn position(&self, topic: &str) -> Option<tower_sse_hub::EventId> {
        self.0.position(topic)
    }

    fn close(&self) {
        self.0.close();
    }
}

#[tokio::test]
async fn a_publisher_on_another_store_publishes_through_it_by_name() {
    let hub = Hub::with_store(Wrapped::default());
    let mut sub = hub.subscribe("room", None).await.unwrap();
    let mut room = hub.publisher("room");
    let a = room.publish(Event::message("a")).await.unwrap();
    let b = hub.publish("room", Event::message("b")).await.unwrap();
    let c = room.publish(Event::message("c")).await.unwrap();
    let offsets: Vec<u64> = [&a, &b, &c].iter().map(|id| id.offset()).collect();
    assert_eq!(offsets, [1, 2, 3]);
    assert_eq!(hub.position("room"), Some(c));
    assert_eq!(next_data(&mut sub, 3).await, ["a", "b", "c"]);
    let mut resumed = hub.subscribe("room", Some(&a.to_string())).await.unwrap();
    assert_eq!(next_data(&mut resumed, 2).await, ["b", "c"]);
}
