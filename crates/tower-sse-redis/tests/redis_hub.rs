//! The hub on Redis with several nodes (separate hubs, each on its own
//! `RedisStore`, sharing one Redis): the store contract across nodes, and
//! faults. Needs `redis-server`; see `redis_support`.

mod redis_support;

use std::collections::HashSet;

use futures_util::future::join_all;
use redis_support::{command, data_of, id_of, kill_clients, next, node, prefix, shared, Private};
use tower_sse::Event;
use tower_sse_hub::{EventId, HubConfig, HubError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_total_order_per_topic_across_nodes_under_concurrent_publishers() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("order");
    let nodes: Vec<_> = (0..3)
        .map(|_| node(&url, &prefix, HubConfig::new()))
        .collect();
    let mut subs = Vec::new();
    for hub in &nodes {
        subs.push(hub.subscribe("room", None).await.unwrap());
    }
    // Two publishers on every node, 20 events each.
    let publishers = nodes.iter().enumerate().flat_map(|(n, hub)| {
        (0..2).map(move |p| {
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..20 {
                    let data = format!("{n}.{p}.{i}");
                    ids.push(hub.publish("room", Event::message(data)).await.unwrap());
                }
                ids
            })
        })
    });
    let acked: Vec<EventId> = join_all(publishers.collect::<Vec<_>>())
        .await
        .into_iter()
        .flat_map(Result::unwrap)
        .collect();
    let offsets: HashSet<u64> = acked.iter().map(EventId::offset).collect();
    assert_eq!(
        offsets,
        (1..=120).collect(),
        "every publish got its own offset, no hole"
    );
    let mut seen = Vec::new();
    for sub in &mut subs {
        let mut got = Vec::new();
        for _ in 0..120 {
            got.push(next(sub).await.unwrap());
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "node 2 saw node 1's order");
    assert_eq!(seen[0], seen[2], "node 3 saw node 1's order");
    let ids: Vec<EventId> = seen[0].iter().map(|e| id_of(e).parse().unwrap()).collect();
    assert_eq!(
        ids.iter().map(EventId::offset).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
    assert!(acked.iter().all(|id| id.epoch() == ids[0].epoch()));
    // Each publisher's events arrive in the order it published them.
    for n in 0..3 {
        for p in 0..2 {
            let mine: Vec<&str> = seen[0]
                .iter()
                .map(|e| data_of(e))
                .filter(|d| d.starts_with(&format!("{n}.{p}.")))
                .collect();
            let expected: Vec<String> = (0..20).map(|i| format!("{n}.{p}.{i}")).collect();
            assert_eq!(mine, expected);
        }
    }
}

#[tokio::test]
async fn resume_on_another_node_then_live_from_a_third() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("resume");
    let (a, b, c) = (
        node(&url, &prefix, HubConfig::new()),
        node(&url, &prefix, HubConfig::new()),
        node(&url, &prefix, HubConfig::new()),
    );
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(
            a.publish("t", Event::message(format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    // A client that had event 2 from node A comes back through node B.
    let cursor = ids[1].to_string();
    let mut sub = b.subscribe("t", Some(&cursor)).await.unwrap();
    assert_eq!(sub.position(), ids[4]);
    for (i, id) in ids.iter().enumerate().skip(2) {
        assert_eq!(
            next(&mut sub).await.unwrap(),
            format!("id: {id}\ndata: m{}\n\n", i + 1)
        );
    }
    let six = c.publish("t", Event::message("m6")).await.unwrap();
    assert_eq!(
        next(&mut sub).await.unwrap(),
        format!("id: {six}\ndata: m6\n\n")
    );
    // `publish_with`'s id is the real one in the delivered bytes.
    let seven = a
        .publish_with("t", |id| Event::message(format!("{{\"id\":\"{id}\"}}")))
        .await
        .unwrap();
    let got = next(&mut sub).await.unwrap();
    assert_eq!(
        got,
        format!("id: {seven}\ndata: {{\"id\":\"{seven}\"}}\n\n")
    );
    // A cursor from another epoch, or no id at all, gets the reset notice.
    let foreign = EventId::new(3, tower_sse_hub::Epoch::random()).to_string();
    for cursor in [foreign.as_str(), "garbage"] {
        let mut sub = c.subscribe("t", Some(cursor)).await.unwrap();
        let reset = next(&mut sub).await.unwrap();
        assert!(reset.starts_with("event: reset\n"), "{reset}");
    }
}

#[tokio::test]
async fn history_outlives_subscribers_and_is_bounded() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("bounded");
    let config = HubConfig::new().history_len(3);
    let a = node(&url, &prefix, config.clone());
    let b = node(&url, &prefix, config);
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(
            a.publish("t", Event::message(format!("m{i}")))
                .await
                .unwrap(),
        );
    }
    // Events 3, 4 and 5 are kept: a cursor at 2 is exact, one at 1 is not.
    let mut exact = b.subscribe("t", Some(&ids[1].to_string())).await.unwrap();
    assert_eq!(id_of(&next(&mut exact).await.unwrap()), ids[2].to_string());
    let mut late = b.subscribe("t", Some(&ids[0].to_string())).await.unwrap();
    let reset = next(&mut late).await.unwrap();
    assert_eq!(
        reset,
        format!(
            "event: reset\nid: {0}\ndata: {{\"after\":\"{0}\"}}\n\n",
            ids[1]
        )
    );
    assert_eq!(id_of(&next(&mut late).await.unwrap()), ids[2].to_string());
}

#[tokio::test]
async fn publish_fails_fast_when_redis_is_unreachable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hub = node(
        &format!("redis://127.0.0.1:{port}"),
        "down",
        HubConfig::new(),
    );
    let err = hub.publish("t", Event::message("x")).await.unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err}");
    let err = hub.subscribe("t", None).await.unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn reset_after_flushall() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let (a, b) = (
        node(&url, "p", HubConfig::new()),
        node(&url, "p", HubConfig::new()),
    );
    let mut live = b.subscribe("t", None).await.unwrap();
    let first = a.publish("t", Event::message("before")).await.unwrap();
    assert_eq!(id_of(&next(&mut live).await.unwrap()), first.to_string());
    let () = command(&url, &mut redis::cmd("FLUSHALL")).await;
    let after = a.publish("t", Event::message("after")).await.unwrap();
    assert_ne!(
        after.epoch(),
        first.epoch(),
        "a new epoch once Redis lost the topic"
    );
    assert_eq!(after.offset(), 1);
    let zero = EventId::new(0, after.epoch());
    let reset = format!("event: reset\nid: {zero}\ndata: {{\"after\":\"{zero}\"}}\n\n");
    // The open stream stays open: the reset in-band, then the new epoch.
    assert_eq!(next(&mut live).await.unwrap(), reset);
    assert_eq!(
        next(&mut live).await.unwrap(),
        format!("id: {after}\ndata: after\n\n")
    );
    // A client that comes back with a cursor of the lost epoch gets the same.
    let mut back = b.subscribe("t", Some(&first.to_string())).await.unwrap();
    assert_eq!(next(&mut back).await.unwrap(), reset);
    assert_eq!(
        next(&mut back).await.unwrap(),
        format!("id: {after}\ndata: after\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_pubsub_connections_loses_nothing() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let (a, b) = (
        node(&url, "p", HubConfig::new()),
        node(&url, "p", HubConfig::new()),
    );
    let mut sub = b.subscribe("t", None).await.unwrap();
    let publisher = tokio::spawn(async move {
        let (mut ids, mut kills) = (Vec::new(), 0);
        for i in 0..200 {
            ids.push(a.publish("t", Event::message(i.to_string())).await.unwrap());
            if i % 40 == 20 {
                kills += kill_clients(&url, "pubsub").await;
            }
        }
        // Killed while it was connected, at least once (not always: it may be
        // reconnecting when the next kill comes).
        assert!(kills >= 1, "the Pub/Sub connections were killed");
        ids
    });
    let mut got = Vec::new();
    for _ in 0..200 {
        got.push(id_of(&next(&mut sub).await.unwrap()).to_owned());
    }
    let acked: Vec<String> = publisher
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, acked, "every acknowledged event, once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_mid_stream() {
    let Some(mut redis) = Private::start_persistent().await else {
        return;
    };
    let url = redis.url();
    let (a, b) = (
        node(&url, "p", HubConfig::new()),
        node(&url, "p", HubConfig::new()),
    );
    let mut sub = b.subscribe("t", None).await.unwrap();
    let one = a.publish("t", Event::message("1")).await.unwrap();
    assert_eq!(id_of(&next(&mut sub).await.unwrap()), one.to_string());
    redis.stop();
    let err = a.publish("t", Event::message("lost")).await.unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err}");
    redis.run().await.unwrap();
    // The node reconnects by itself; the open stream goes on in the same epoch.
    let two = loop {
        match a.publish("t", Event::message("2")).await {
            Ok(id) => break id,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    assert_eq!((two.offset(), two.epoch()), (2, one.epoch()));
    assert_eq!(
        next(&mut sub).await.unwrap(),
        format!("id: {two}\ndata: 2\n\n")
    );
}

#[tokio::test]
async fn topics_spread_over_two_servers() {
    let Some(first) = Private::start().await else {
        return;
    };
    let Some(second) = Private::start().await else {
        return;
    };
    let urls = format!("{},{}", first.url(), second.url());
    let reversed = format!("{},{}", second.url(), first.url());
    let a = node(&urls, "p", HubConfig::new());
    let b = node(&reversed, "p", HubConfig::new());
    let topics: Vec<String> = (0..40).map(|i| format!("room-{i}")).collect();
    let mut subs = Vec::new();
    for topic in &topics {
        subs.push(b.subscribe(topic, None).await.unwrap());
    }
    for topic in &topics {
        a.publish(topic, Event::message(topic.as_str()))
            .await
            .unwrap();
    }
    for (topic, sub) in topics.iter().zip(&mut subs) {
        assert_eq!(data_of(&next(sub).await.unwrap()), topic);
    }
    let on_first: usize = command(&first.url(), &mut redis::cmd("DBSIZE")).await;
    let on_second: usize = command(&second.url(), &mut redis::cmd("DBSIZE")).await;
    assert_eq!(
        on_first + on_second,
        2 * topics.len(),
        "a stream and a hash per topic"
    );
    assert!(
        on_first > 0 && on_second > 0,
        "both servers hold topics: {on_first}, {on_second}"
    );
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_and_holds_up_no_one() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("lag");
    let retry = std::time::Duration::from_millis(250);
    let config = HubConfig::new()
        .queue_capacity(2)
        .lag(tower_sse_hub::Lag::Disconnect { retry });
    let (a, b) = (
        node(&url, &prefix, config.clone()),
        node(&url, &prefix, config),
    );
    let mut stuck = b.subscribe("t", None).await.unwrap();
    let mut reader = b.subscribe("t", None).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(a.publish("t", Event::message(i.to_string())).await.unwrap());
        // The reader keeps up; the stuck one reads nothing.
        assert_eq!(id_of(&next(&mut reader).await.unwrap()), ids[i].to_string());
    }
    assert_eq!(next(&mut stuck).await.unwrap(), ": lagged\nretry: 250\n\n");
    assert_eq!(next(&mut stuck).await, None);
    assert_eq!(b.subscriber_count("t"), 1);
}

#[tokio::test]
async fn an_expired_topic_starts_a_new_epoch() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("ttl");
    let config = HubConfig::new().history_ttl(std::time::Duration::from_millis(100));
    let a = node(&url, &prefix, config.clone());
    let first = a.publish("t", Event::message("old")).await.unwrap();
    // Redis drops both keys once the TTL has passed since the last publish.
    let stream = format!("{prefix}:{{t}}:s");
    loop {
        let exists: i64 = command(&url, redis::cmd("EXISTS").arg(&stream)).await;
        if exists == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let b = node(&url, &prefix, config);
    let mut sub = b.subscribe("t", Some(&first.to_string())).await.unwrap();
    let reset = next(&mut sub).await.unwrap();
    assert!(reset.starts_with("event: reset\n"), "{reset}");
    assert_ne!(sub.position().epoch(), first.epoch());
}

/// A busy topic's keys are renewed once per renewal window (a sixteenth of
/// the TTL, at most a second), to the TTL plus that window: never less than a
/// TTL after the last publish. Keys Redis lost meanwhile are renewed at once.
#[tokio::test]
async fn a_busy_topic_s_retention_is_renewed_once_per_window_and_never_short() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("renew");
    let ttl = std::time::Duration::from_secs(16);
    let a = node(&url, &prefix, HubConfig::new().history_ttl(ttl));
    let (stream, meta) = (format!("{prefix}:{{t}}:s"), format!("{prefix}:{{t}}:m"));
    let pttls = || async {
        let s: i64 = command(&url, redis::cmd("PTTL").arg(&stream)).await;
        let m: i64 = command(&url, redis::cmd("PTTL").arg(&meta)).await;
        (s, m)
    };
    // TTL 16 s: renewed to 17 s, at most once a second.
    const RENEWED: i64 = 17_000;
    a.publish("t", Event::message("1")).await.unwrap();
    let (s, m) = pttls().await;
    assert!(s > RENEWED - 500 && s <= RENEWED, "{s}");
    assert!(m > RENEWED - 500 && m <= RENEWED, "{m}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let before = std::time::Instant::now();
    a.publish("t", Event::message("2")).await.unwrap();
    let (s2, m2) = pttls().await;
    assert!(
        s2 <= s - 250 && m2 <= m - 250,
        "not renewed within the window"
    );
    // Still at least a TTL past this publish.
    let floor = i64::try_from(ttl.as_millis()).unwrap()
        - i64::try_from(before.elapsed().as_millis()).unwrap();
    assert!(s2 >= floor && m2 >= floor, "{s2} {m2} >= {floor}");
    // Keys Redis lost (flushed, evicted, restarted empty) come back with
    // their retention, though the node renewed them within the window.
    let _: i64 = command(&url, redis::cmd("DEL").arg(&stream).arg(&meta)).await;
    let id = a.publish("t", Event::message("3")).await.unwrap();
    assert_eq!(id.offset(), 1, "a new epoch");
    let (s3, m3) = pttls().await;
    assert!(s3 > RENEWED - 500 && m3 > RENEWED - 500, "{s3} {m3}");
    // Past the window, the next publish renews again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    a.publish("t", Event::message("4")).await.unwrap();
    let (s4, m4) = pttls().await;
    assert!(s4 > RENEWED - 500 && m4 > RENEWED - 500, "{s4} {m4}");
}

#[tokio::test]
async fn a_node_listens_only_to_topics_with_local_subscribers() {
    let Some(url) = shared().await else { return };
    let prefix = prefix("listen");
    let (a, b) = (
        node(&url, &prefix, HubConfig::new()),
        node(&url, &prefix, HubConfig::new()),
    );
    let channel = format!("{prefix}:{{t}}:c");
    let listeners = || async {
        let counts: Vec<(String, i64)> =
            command(&url, redis::cmd("PUBSUB").arg("NUMSUB").arg(&channel)).await;
        counts[0].1
    };
    a.publish("t", Event::message("stored, heard by no one"))
        .await
        .unwrap();
    assert_eq!(listeners().await, 0, "publishing does not subscribe");
    let sub = b.subscribe("t", None).await.unwrap();
    assert_eq!((listeners().await, b.topic_count()), (1, 1));
    drop(sub);
    // The node lets the topic go a moment after its last subscriber left.
    while b.topic_count() > 0 || listeners().await > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The history is still in Redis for the next subscriber, on any node.
    let mut again = a.subscribe("t", Some("garbage")).await.unwrap();
    assert!(next(&mut again)
        .await
        .unwrap()
        .starts_with("event: reset\n"));
    assert_eq!(
        data_of(&next(&mut again).await.unwrap()),
        "stored, heard by no one"
    );
}

#[tokio::test]
async fn dropping_the_last_hub_handle_ends_the_streams() {
    let Some(url) = shared().await else { return };
    let hub = node(&url, &prefix("close"), HubConfig::new());
    let mut sub = hub.subscribe("t", None).await.unwrap();
    let id = hub.publish("t", Event::message("last")).await.unwrap();
    // Delivered through Pub/Sub: read before the close, which ends the stream
    // after what the node's copy holds.
    assert_eq!(
        next(&mut sub).await.unwrap(),
        format!("id: {id}\ndata: last\n\n")
    );
    drop(hub);
    assert_eq!(next(&mut sub).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_timed_out_is_never_stored_later() {
    // Before: the script waited in the paused Redis and ran after the pause,
    // so a publish answered as failed was stored and delivered.
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let config = tower_sse_redis::RedisConfig::new(&url)
        .prefix("late")
        .timeout(std::time::Duration::from_millis(300));
    let hub = tower_sse_hub::Hub::with_store(tower_sse_redis::RedisStore::new(config).unwrap());
    let first = hub.publish("t", Event::message("before")).await.unwrap();
    let mut sub = hub.subscribe("t", None).await.unwrap();
    let () = command(
        &url,
        redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE"),
    )
    .await;
    let err = hub
        .publish_once("t", "k-1", |_| Event::message("during the pause"))
        .await
        .unwrap_err();
    assert!(matches!(err, HubError::Unavailable(_)), "{err}");
    // Well after the pause: the script ran then, and refused to store.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let top: Option<u64> = command(&url, redis::cmd("HGET").arg("late:{t}:m").arg("t")).await;
    assert_eq!(
        top,
        Some(first.offset()),
        "nothing stored after the deadline"
    );
    // The retry with the same key is stored once, and is what the reader gets next.
    let retry = hub
        .publish_once("t", "k-1", |_| Event::message("retried"))
        .await
        .unwrap();
    assert_eq!(retry.offset(), first.offset() + 1);
    let again = hub
        .publish_once("t", "k-1", |_| Event::message("retried"))
        .await
        .unwrap();
    assert_eq!(again, retry, "a second retry gets the first id");
    let got = next(&mut sub).await.unwrap();
    assert_eq!(data_of(&got), "retried");
}
