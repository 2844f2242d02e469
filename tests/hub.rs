//! Hub semantics: fan-out, ids, replay without gap or duplicate, stale cursors,
//! lag policies and cleanup.

use std::{thread, time::Duration};

use futures_util::{FutureExt, StreamExt};
use tower_sse::{EncodedEvent, Event, Hub, HubConfig, Lag, Subscriber};

/// Everything the subscriber has ready now, as text.
fn drain(sub: &mut Subscriber) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(Some(event)) = sub.next().now_or_never() {
        out.push(text(&event));
    }
    out
}

fn text(event: &EncodedEvent) -> String {
    String::from_utf8(event.as_bytes().to_vec()).unwrap()
}

/// The `id:` of each event.
fn ids(events: &[String]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            let line = e.lines().find(|l| l.starts_with("id: ")).unwrap();
            line[4..].parse().unwrap()
        })
        .collect()
}

#[test]
fn one_encoding_shared_by_every_subscriber() {
    let hub = Hub::new();
    let mut subs: Vec<_> = (0..3).map(|_| hub.subscribe("room")).collect();
    let mut other = hub.subscribe("elsewhere");
    assert_eq!(hub.subscriber_count("room"), 3);
    assert_eq!(hub.topic_count(), 2);

    // The hub's id replaces the event's own.
    let event = Event::message("hello\nworld").id("ignored").unwrap();
    assert_eq!(hub.publish("room", event), 1);
    assert_eq!(hub.publish("elsewhere", Event::message("x")), 2);
    assert_eq!(hub.publish("room", Event::message("again")), 3);
    assert_eq!(hub.last_id(), 3);

    let got: Vec<Vec<EncodedEvent>> = subs
        .iter_mut()
        .map(|s| {
            let mut v = Vec::new();
            while let Some(Some(e)) = s.next().now_or_never() {
                v.push(e);
            }
            v
        })
        .collect();
    for events in &got {
        assert_eq!(
            events.iter().map(text).collect::<Vec<_>>(),
            [
                "id: 1\ndata: hello\ndata: world\n\n",
                "id: 3\ndata: again\n\n"
            ]
        );
        // Same buffer, not a copy.
        assert_eq!(events[0].as_bytes().as_ptr(), got[0][0].as_bytes().as_ptr());
    }
    assert_eq!(drain(&mut other), ["id: 2\ndata: x\n\n"]);
}

#[test]
fn replay_is_exact_then_live() {
    let hub = Hub::new();
    let _keep = hub.subscribe("t");
    for n in 1..=5 {
        hub.publish("t", Event::message(format!("m{n}")));
    }
    let mut sub = hub.subscribe_after("t", Some("2"));
    hub.publish("t", Event::message("m6"));
    assert_eq!(
        drain(&mut sub),
        [
            "id: 3\ndata: m3\n\n",
            "id: 4\ndata: m4\n\n",
            "id: 5\ndata: m5\n\n",
            "id: 6\ndata: m6\n\n"
        ]
    );
    // Up to date: nothing replayed.
    let mut sub = hub.subscribe_after("t", Some("6"));
    assert!(drain(&mut sub).is_empty());
    // No cursor: live only.
    let mut sub = hub.subscribe_after("t", None);
    hub.publish("t", Event::message("m7"));
    assert_eq!(drain(&mut sub), ["id: 7\ndata: m7\n\n"]);
}

#[test]
fn replay_races_with_publishers_without_gap_or_duplicate() {
    const EVENTS: u64 = 3000;
    let hub = Hub::with_config(
        HubConfig::new()
            .history_len(EVENTS as usize)
            .queue_capacity(EVENTS as usize),
    );
    let _keep = hub.subscribe("t");
    let publisher = {
        let hub = hub.clone();
        thread::spawn(move || {
            for n in 1..=EVENTS {
                hub.publish("t", Event::message(n.to_string()));
                if n % 64 == 0 {
                    thread::yield_now();
                }
            }
        })
    };
    // Subscribe again and again while events are being published, each time
    // from a cursor just behind the newest id.
    let mut subs = Vec::new();
    while !publisher.is_finished() || subs.is_empty() {
        let last = hub.last_id();
        let cursor = last.saturating_sub(subs.len() as u64 % 7);
        subs.push((cursor, hub.subscribe_after("t", Some(&cursor.to_string()))));
        thread::yield_now();
    }
    publisher.join().unwrap();
    assert!(subs.len() > 1);
    for (cursor, mut sub) in subs {
        let got = ids(&drain(&mut sub));
        let want: Vec<u64> = (cursor + 1..=EVENTS).collect();
        assert_eq!(got, want, "subscriber from cursor {cursor}");
    }
}

#[test]
fn stale_cursor_gets_a_reset_then_the_history() {
    let hub = Hub::with_config(HubConfig::new().history_len(3));
    let _keep = hub.subscribe("t");
    for n in 1..=5 {
        hub.publish("t", Event::message(format!("m{n}")));
    }
    // 3, 4, 5 are kept; after 1, event 2 was evicted.
    let reset_then_history = [
        "event: reset\nid: 2\ndata: {\"after\":2}\n\n",
        "id: 3\ndata: m3\n\n",
        "id: 4\ndata: m4\n\n",
        "id: 5\ndata: m5\n\n",
    ];
    for cursor in [
        "1",
        "0",
        "999",
        "abc",
        "-1",
        "",
        " 4",
        "18446744073709551616",
    ] {
        let mut sub = hub.subscribe_after("t", Some(cursor));
        assert_eq!(drain(&mut sub), reset_then_history, "cursor {cursor:?}");
    }
    // After 2 is complete.
    let mut sub = hub.subscribe_after("t", Some("2"));
    assert_eq!(drain(&mut sub), reset_then_history[1..]);
}

#[test]
fn history_is_bounded_by_bytes() {
    // Each "id: N\ndata: xxxxxxxxxx\n\n" is 24 bytes: 50 bytes keep two.
    let hub = Hub::with_config(HubConfig::new().history_bytes(50));
    let _keep = hub.subscribe("t");
    for _ in 1..=4 {
        hub.publish("t", Event::message("x".repeat(10)));
    }
    let mut sub = hub.subscribe_after("t", Some("1"));
    let got = drain(&mut sub);
    assert_eq!(got[0], "event: reset\nid: 2\ndata: {\"after\":2}\n\n");
    assert_eq!(ids(&got[1..]), [3, 4]);
}

#[test]
fn a_topic_created_again_resets_old_cursors() {
    let hub = Hub::new();
    let sub = hub.subscribe("t");
    hub.publish("t", Event::message("a"));
    drop(sub);
    // Published while nobody listened: not kept.
    assert_eq!(hub.publish("t", Event::message("lost")), 2);
    let mut sub = hub.subscribe_after("t", Some("1"));
    assert_eq!(
        drain(&mut sub),
        ["event: reset\nid: 2\ndata: {\"after\":2}\n\n"]
    );
}

#[test]
fn a_subscriber_that_never_reads_is_disconnected_and_others_get_everything() {
    let hub = Hub::with_config(HubConfig::new().queue_capacity(4).lag(Lag::Disconnect {
        retry: Duration::from_millis(1500),
    }));
    let mut stuck = hub.subscribe("t");
    let mut reader = hub.subscribe("t");
    let mut got = Vec::new();
    for n in 1..=10 {
        hub.publish("t", Event::message(n.to_string()));
        got.extend(drain(&mut reader));
    }
    assert_eq!(ids(&got), (1..=10).collect::<Vec<_>>());
    assert_eq!(hub.subscriber_count("t"), 1);
    // The stuck one gets what was queued, then the hint, then the end.
    let mut rest = drain(&mut stuck);
    assert_eq!(rest.pop().unwrap(), ": lagged\nretry: 1500\n\n");
    assert_eq!(ids(&rest), [1, 2, 3, 4]);
    assert_eq!(stuck.next().now_or_never(), Some(None));
    // It resumes from the history where it stopped.
    let mut back = hub.subscribe_after("t", Some("4"));
    assert_eq!(ids(&drain(&mut back)), (5..=10).collect::<Vec<_>>());
}

#[test]
fn skip_policy_sends_a_gap_notice() {
    let hub = Hub::with_config(HubConfig::new().queue_capacity(2).lag(Lag::Skip));
    let mut slow = hub.subscribe("t");
    for n in 1..=6 {
        hub.publish("t", Event::message(n.to_string()));
    }
    assert_eq!(
        drain(&mut slow),
        [
            "id: 1\ndata: 1\n\n",
            "id: 2\ndata: 2\n\n",
            "event: gap\nid: 6\ndata: {\"skipped\":4}\n\n"
        ]
    );
    hub.publish("t", Event::message("7"));
    assert_eq!(drain(&mut slow), ["id: 7\ndata: 7\n\n"]);
    assert_eq!(hub.subscriber_count("t"), 1);
}

#[test]
fn state_returns_to_empty_when_everyone_leaves() {
    let hub = Hub::new();
    let subs: Vec<_> = (0..100)
        .map(|n| hub.subscribe(&format!("room{}", n % 10)))
        .collect();
    assert_eq!(hub.topic_count(), 10);
    assert_eq!(hub.subscriber_count("room3"), 10);
    hub.publish("room3", Event::message("x"));
    drop(subs);
    assert_eq!(hub.topic_count(), 0);
    assert_eq!(hub.subscriber_count("room3"), 0);
    // Publishing to nobody stores nothing.
    hub.publish("room3", Event::message("y"));
    hub.publish("new", Event::message("z"));
    assert_eq!(hub.topic_count(), 0);
    assert!(format!("{hub:?}").starts_with("Hub { topics: 0, last_id: 3,"));
}

#[test]
fn dropping_the_hub_ends_every_stream() {
    let hub = Hub::new();
    let mut sub = hub.subscribe("t");
    let clone = hub.clone();
    hub.publish("t", Event::message("last"));
    drop(hub);
    assert_eq!(drain(&mut sub), ["id: 1\ndata: last\n\n"]);
    assert_eq!(sub.next().now_or_never(), None, "a clone is still alive");
    clone.publish("t", Event::message("after"));
    drop(clone);
    assert_eq!(drain(&mut sub), ["id: 2\ndata: after\n\n"]);
    assert_eq!(sub.next().now_or_never(), Some(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_subscriber_is_woken_across_tasks() {
    let hub = Hub::new();
    let subs: Vec<_> = (0..50).map(|_| hub.subscribe("t")).collect();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|sub| tokio::spawn(sub.take(100).map(|e| text(&e)).collect::<Vec<_>>()))
        .collect();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 1..=100 {
                hub.publish("t", Event::message(n.to_string()));
                tokio::task::yield_now().await;
            }
        })
    };
    publisher.await.unwrap();
    for reader in readers {
        let got = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("hang guard")
            .unwrap();
        assert_eq!(ids(&got), (1..=100).collect::<Vec<_>>());
    }
    assert_eq!(hub.topic_count(), 0);
}
