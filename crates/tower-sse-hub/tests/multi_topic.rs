//! Streams of several topics: hostile cursors, authorization, limits.

use std::time::Duration;

use futures_util::StreamExt;
use tower_sse::Event;
use tower_sse_hub::{Cursor, Epoch, EventId, Hub, HubError, MultiSubscriber, MAX_TOPICS};

const GUARD: Duration = Duration::from_secs(30);

async fn next(stream: &mut MultiSubscriber) -> (String, String, String) {
    let event = tokio::time::timeout(GUARD, stream.next())
        .await
        .expect("hang guard")
        .expect("stream ended");
    let text = String::from_utf8(event.as_bytes().to_vec()).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    (field("id: "), field("event: "), field("data: "))
}

#[tokio::test]
async fn a_crafted_cursor_opens_nothing_and_breaks_nothing() {
    let hub = Hub::new();
    let secret = hub.publish("secret", Event::message("s")).await.unwrap();
    let mine = hub.publish("mine", Event::message("m")).await.unwrap();
    // A cursor that positions `secret` (and `mine` far ahead, in another epoch).
    let mut crafted = Cursor::new();
    crafted.set("secret", EventId::new(0, secret.epoch()));
    crafted.set("mine", EventId::new(u64::MAX, Epoch::from_bits(7)));
    for last in [
        Some(crafted.to_string()),
        Some("m1.////".to_owned()),
        Some("m1.".to_owned() + &"A".repeat(4000)),
        Some(mine.to_string()),
        Some("\u{0}".to_owned()),
        None,
    ] {
        let mut stream = hub
            .subscribe_many(&["mine"], last.as_deref())
            .await
            .unwrap();
        assert_eq!(stream.topics().collect::<Vec<_>>(), ["mine"]);
        let next_id = hub.publish("mine", Event::message("live")).await.unwrap();
        loop {
            let (id, kind, data) = next(&mut stream).await;
            let cursor: Cursor = id.parse().unwrap();
            assert_eq!(cursor.get("secret"), None, "{last:?}");
            assert_ne!(data, "s", "{last:?}: never the secret topic");
            if data == "live" {
                assert_eq!(kind, "");
                assert_eq!(cursor.get("mine"), Some(next_id));
                break;
            }
        }
    }
}

#[tokio::test]
async fn authorization_refuses_some_or_all() {
    let hub = Hub::new();
    let user = "ann";
    let allow = |user: &&str, topic: &str| topic.starts_with(&format!("{user}/"));
    let refused = hub
        .subscribe_authorized(&user, &["bob/inbox"], None, allow)
        .await
        .unwrap_err();
    assert!(matches!(refused, HubError::Refused), "{refused}");
    let mut stream = hub
        .subscribe_authorized(
            &user,
            &["ann/inbox", "bob/inbox", "ann/alerts"],
            None,
            allow,
        )
        .await
        .unwrap();
    assert_eq!(
        stream.topics().collect::<Vec<_>>(),
        ["ann/inbox", "ann/alerts"]
    );
    let (id, kind, data) = next(&mut stream).await;
    assert_eq!(
        (id.as_str(), kind.as_str(), data.as_str()),
        ("", "refused", r#"{"topics":["bob/inbox"]}"#)
    );
    hub.publish("bob/inbox", Event::message("not yours"))
        .await
        .unwrap();
    hub.publish("ann/alerts", Event::message("yours"))
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.2, "yours");
}

#[tokio::test]
async fn one_to_sixty_four_distinct_topics() {
    let hub = Hub::new();
    let none: [&str; 0] = [];
    assert!(matches!(
        hub.subscribe_many(&none, None).await,
        Err(HubError::InvalidTopics)
    ));
    let many: Vec<String> = (0..=MAX_TOPICS).map(|i| format!("t{i}")).collect();
    assert!(matches!(
        hub.subscribe_many(&many, None).await,
        Err(HubError::InvalidTopics)
    ));
    // Repeats count once.
    let stream = hub
        .subscribe_many(&["a", "a", "b", "a"], None)
        .await
        .unwrap();
    assert_eq!(stream.topics().collect::<Vec<_>>(), ["a", "b"]);
    // 64 topics, each resumed from one cursor of about a kibibyte.
    let mut stream = hub.subscribe_many(&many[..MAX_TOPICS], None).await.unwrap();
    for topic in &many[..MAX_TOPICS] {
        hub.publish(topic, Event::message(topic.clone()))
            .await
            .unwrap();
    }
    let mut last = String::new();
    for _ in 0..MAX_TOPICS {
        last = next(&mut stream).await.0;
    }
    assert!(last.len() <= 1100, "{}", last.len());
    drop(stream);
    for topic in &many[..MAX_TOPICS] {
        hub.publish(topic, Event::message(format!("{topic} again")))
            .await
            .unwrap();
    }
    let mut stream = hub
        .subscribe_many(&many[..MAX_TOPICS], Some(&last))
        .await
        .unwrap();
    let mut again: Vec<String> = Vec::new();
    for _ in 0..MAX_TOPICS {
        again.push(next(&mut stream).await.2);
    }
    again.sort();
    let mut want: Vec<String> = many[..MAX_TOPICS]
        .iter()
        .map(|t| format!("{t} again"))
        .collect();
    want.sort();
    assert_eq!(again, want);
}

#[tokio::test]
async fn a_snapshot_per_topic_follows_its_replay() {
    let hub = Hub::new();
    let stream = hub.subscribe_many(&["a", "b"], None).await.unwrap();
    let position = hub
        .position("b")
        .unwrap_or(EventId::new(0, Epoch::from_bits(0)));
    let snapshot = Event::default()
        .event("state")
        .and_then(|e| e.id(position.to_string()))
        .unwrap()
        .data("b's state")
        .encode();
    let mut stream = stream
        .then("b", snapshot)
        .then("nope", Event::message("x").encode());
    let (id, kind, data) = next(&mut stream).await;
    assert_eq!((kind.as_str(), data.as_str()), ("state", "b's state"));
    assert!(
        id.parse::<Cursor>().is_ok(),
        "its id is the stream's cursor"
    );
}

#[tokio::test]
async fn latest_value_topics_start_with_their_state() {
    let hub = Hub::new().latest_value("widget/");
    hub.publish("widget/cpu", Event::message("cpu 10"))
        .await
        .unwrap();
    hub.publish("widget/cpu", Event::message("cpu 12"))
        .await
        .unwrap();
    hub.publish("widget/mem", Event::message("mem 3"))
        .await
        .unwrap();
    hub.publish("log", Event::message("old line"))
        .await
        .unwrap();
    let mut stream = hub
        .subscribe_many(&["widget/cpu", "widget/mem", "widget/disk", "log"], None)
        .await
        .unwrap();
    let mut first = [next(&mut stream).await, next(&mut stream).await];
    first.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(first[0].2, "cpu 12", "the latest state only");
    assert_eq!(first[1].2, "mem 3");
    // A widget with no state yet, and a plain topic: live from now.
    hub.publish("log", Event::message("new line"))
        .await
        .unwrap();
    let (id, _, data) = next(&mut stream).await;
    assert_eq!(data, "new line");
    // A reconnect with the cursor resumes; it does not replay the state again.
    drop(stream);
    hub.publish("widget/mem", Event::message("mem 4"))
        .await
        .unwrap();
    let mut stream = hub
        .subscribe_many(
            &["widget/cpu", "widget/mem", "widget/disk", "log"],
            Some(&id),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.2, "mem 4");
    // A plain subscriber too.
    let mut one = hub.subscribe("widget/mem", None).await.unwrap();
    let event = tokio::time::timeout(GUARD, one.next())
        .await
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(event.as_bytes())
        .unwrap()
        .contains("data: mem 4\n"));
    assert!(!hub.is_latest_value("log"));
}

#[tokio::test]
async fn across_topics_in_the_order_they_were_stored() {
    let hub = Hub::new();
    let topics = ["a", "b", "c"];
    let mut stream = hub.subscribe_many(&topics, None).await.unwrap();
    // Stored while nobody reads: the stream yields them in that order, not
    // topic by topic.
    let order = ["b", "a", "a", "c", "b", "c", "a"];
    for (n, topic) in order.iter().enumerate() {
        hub.publish(topic, Event::message(format!("{topic} {n}")))
            .await
            .unwrap();
    }
    for (n, topic) in order.iter().enumerate() {
        assert_eq!(next(&mut stream).await.2, format!("{topic} {n}"));
    }
    // A replay too.
    let (cursor, ..) = next_after_publish(&hub, &mut stream).await;
    drop(stream);
    for (n, topic) in order.iter().enumerate() {
        hub.publish(topic, Event::message(format!("again {topic} {n}")))
            .await
            .unwrap();
    }
    let mut stream = hub.subscribe_many(&topics, Some(&cursor)).await.unwrap();
    for (n, topic) in order.iter().enumerate() {
        assert_eq!(next(&mut stream).await.2, format!("again {topic} {n}"));
    }
}

#[tokio::test]
async fn across_topics_in_the_order_they_were_stored_by_many_threads() {
    // Each publish on a thread of its own, made once the one before it has
    // returned (the thread joined): the stream yields them in the order they
    // happened, live and in a replay, whichever threads made them.
    let hub = Hub::new();
    let topics = ["a", "b", "c", "d"];
    let order: Vec<&str> = (0..64).map(|n| topics[(n * 7 + n / 5) % 4]).collect();
    let runtime = tokio::runtime::Handle::current();
    let publish_each = |prefix: &str| {
        for (n, topic) in order.iter().enumerate() {
            let event = Event::message(format!("{prefix}{topic} {n}"));
            std::thread::scope(|s| {
                s.spawn(|| runtime.block_on(hub.publish(topic, event)).unwrap())
                    .join()
                    .unwrap();
            });
        }
    };
    let mut stream = hub.subscribe_many(&topics, None).await.unwrap();
    publish_each("");
    for (n, topic) in order.iter().enumerate() {
        assert_eq!(next(&mut stream).await.2, format!("{topic} {n}"));
    }
    let (cursor, ..) = next_after_publish(&hub, &mut stream).await;
    drop(stream);
    publish_each("again ");
    let mut stream = hub.subscribe_many(&topics, Some(&cursor)).await.unwrap();
    for (n, topic) in order.iter().enumerate() {
        assert_eq!(next(&mut stream).await.2, format!("again {topic} {n}"));
    }
}

async fn next_after_publish(hub: &Hub, stream: &mut MultiSubscriber) -> (String, String, String) {
    hub.publish("c", Event::message("mark")).await.unwrap();
    next(stream).await
}
