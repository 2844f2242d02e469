//! Hub semantics: fan-out, per-topic ids with epochs, replay without gap or
//! duplicate, resets, retention without subscribers, hub-wide bounds, lag
//! policies, re-entrancy and a multi-threaded stress test.

use std::{sync::Arc, time::Duration};

use futures_util::{FutureExt, StreamExt};
use tower_sse::{EncodedEvent, Event};
use tower_sse_hub::{EventId, Hub, HubConfig, Lag, Subscriber};

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

/// The in-memory hub's futures are ready at once.
fn now<T>(future: impl std::future::Future<Output = T>) -> T {
    future.now_or_never().expect("ready at once in memory")
}

fn publish(hub: &Hub, topic: &str, data: &str) -> EventId {
    now(hub.publish(topic, Event::message(data))).unwrap()
}

fn subscribe(hub: &Hub, topic: &str, cursor: Option<&str>) -> Subscriber {
    now(hub.subscribe(topic, cursor)).unwrap()
}

/// The memory store's hub-wide count of history bytes, as its `Debug` shows it
/// (the store is behind `&dyn Store`).
fn history_bytes(hub: &Hub) -> usize {
    let debug = format!("{:?}", hub.store());
    debug
        .split("history_bytes: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("the memory store shows its history bytes")
}

fn msg(id: EventId, data: &str) -> String {
    format!("id: {id}\ndata: {data}\n\n")
}

#[test]
fn one_encoding_shared_by_every_subscriber_and_ids_per_topic() {
    let hub = Hub::new();
    let mut subs: Vec<_> = (0..3).map(|_| subscribe(&hub, "room", None)).collect();
    let mut other = subscribe(&hub, "elsewhere", None);
    assert_eq!((hub.subscriber_count("room"), hub.topic_count()), (3, 2));

    let a = publish(&hub, "room", "hello");
    let x = publish(&hub, "elsewhere", "x");
    let b = publish(&hub, "room", "again");
    // Contiguous offsets per topic, one epoch per topic.
    assert_eq!((a.offset(), b.offset(), x.offset()), (1, 2, 1));
    assert_eq!(a.epoch(), b.epoch());
    assert_ne!(a.epoch(), x.epoch());
    assert_eq!(hub.position("room"), Some(b));

    let got: Vec<Vec<EncodedEvent>> = subs
        .iter_mut()
        .map(|s| std::iter::from_fn(|| s.next().now_or_never().flatten()).collect())
        .collect();
    for events in &got {
        assert_eq!(
            events.iter().map(text).collect::<Vec<_>>(),
            [msg(a, "hello"), msg(b, "again")]
        );
    }
    // The same bytes, not copies.
    let ptr = |e: &EncodedEvent| e.as_bytes().as_ptr();
    assert_eq!(ptr(&got[0][0]), ptr(&got[2][0]));
    assert_eq!(drain(&mut other), [msg(x, "x")]);
}

#[test]
fn replay_is_exact_then_live() {
    let hub = Hub::new();
    let ids: Vec<_> = (1..=5)
        .map(|n| publish(&hub, "t", &format!("m{n}")))
        .collect();
    let mut sub = subscribe(&hub, "t", Some(&ids[1].to_string()));
    assert_eq!(sub.position(), ids[4]);
    let six = publish(&hub, "t", "m6");
    let expected: Vec<_> = [(2, "m3"), (3, "m4"), (4, "m5")]
        .iter()
        .map(|(i, d)| msg(ids[*i], d))
        .chain([msg(six, "m6")])
        .collect();
    assert_eq!(drain(&mut sub), expected);
    // Up to date: nothing to replay. No cursor: live only.
    let mut sub = subscribe(&hub, "t", Some(&six.to_string()));
    assert!(drain(&mut sub).is_empty());
    let mut live = subscribe(&hub, "t", None);
    let seven = publish(&hub, "t", "m7");
    assert_eq!(drain(&mut sub), [msg(seven, "m7")]);
    assert_eq!(drain(&mut live), [msg(seven, "m7")]);
    // Offset 0 of the current epoch: everything.
    let zero = EventId::new(0, seven.epoch()).to_string();
    assert_eq!(drain(&mut subscribe(&hub, "t", Some(&zero))).len(), 7);
}

#[test]
fn a_snapshot_follows_the_replay_and_precedes_live_events() {
    let hub = Hub::new();
    let one = publish(&hub, "t", "1");
    let two = publish(&hub, "t", "2");
    let snapshot = Event::message("snapshot").encode();
    let mut sub = subscribe(&hub, "t", Some(&one.to_string())).then(snapshot.clone());
    let three = publish(&hub, "t", "3");
    assert_eq!(
        drain(&mut sub),
        [msg(two, "2"), "data: snapshot\n\n".into(), msg(three, "3")]
    );
    let mut fresh = subscribe(&hub, "t", None).then(snapshot);
    let four = publish(&hub, "t", "4");
    assert_eq!(
        drain(&mut fresh),
        ["data: snapshot\n\n".to_owned(), msg(four, "4")]
    );
}

#[test]
fn history_outlives_subscribers() {
    let hub = Hub::new();
    let sub = subscribe(&hub, "solo", None);
    let seen = publish(&hub, "solo", "seen");
    drop(sub); // the only member's connection blips
    let missed = publish(&hub, "solo", "missed while away");
    assert_eq!(hub.subscriber_count("solo"), 0);
    assert_eq!(hub.topic_count(), 1);
    let mut back = subscribe(&hub, "solo", Some(&seen.to_string()));
    assert_eq!(drain(&mut back), [msg(missed, "missed while away")]);
}

#[test]
fn cursors_that_cannot_be_honoured_get_a_reset_then_the_history() {
    let hub = Hub::with_config(HubConfig::new().history_len(3));
    let ids: Vec<_> = (1..=5)
        .map(|n| publish(&hub, "t", &format!("m{n}")))
        .collect();
    let floor = EventId::new(2, ids[0].epoch());
    let reset = format!("event: reset\nid: {floor}\ndata: {{\"after\":\"{floor}\"}}\n\n");
    let history = [msg(ids[2], "m3"), msg(ids[3], "m4"), msg(ids[4], "m5")];
    let restarted = Hub::new(); // another process: another epoch
    let foreign = publish(&restarted, "t", "x");
    let future = EventId::new(6, ids[0].epoch());
    let max = EventId::new(u64::MAX, ids[0].epoch());
    for cursor in [
        ids[0].to_string(),                           // evicted
        EventId::new(1, foreign.epoch()).to_string(), // in range, wrong epoch
        foreign.to_string(),
        future.to_string(),
        max.to_string(),
        "3".into(), // the old numeric ids
        "18446744073709551616-00000000".into(),
        "garbage".into(),
        String::new(),
    ] {
        let mut sub = subscribe(&hub, "t", Some(&cursor));
        let got = drain(&mut sub);
        assert_eq!(got[0], reset, "{cursor:?}");
        assert_eq!(got[1..], history, "{cursor:?}");
    }
    // At the floor, the replay is still exact.
    assert_eq!(
        drain(&mut subscribe(&hub, "t", Some(&floor.to_string()))),
        history
    );
}

#[test]
fn history_is_bounded_by_bytes() {
    let hub = Hub::with_config(HubConfig::new().history_bytes(100));
    let ids: Vec<_> = (0..10)
        .map(|_| publish(&hub, "t", &"x".repeat(10)))
        .collect();
    // Each event is `id: N-EEEEEEEE\ndata: xxxxxxxxxx\n\n`, 33 or 34 bytes: 3 fit.
    let got = drain(&mut subscribe(&hub, "t", Some(&ids[0].to_string())));
    assert!(got[0].starts_with("event: reset\n"));
    let kept: Vec<_> = ids[7..]
        .iter()
        .map(|id| msg(*id, &"x".repeat(10)))
        .collect();
    assert_eq!(got[1..], kept);
}

#[tokio::test(start_paused = true)]
async fn retention_expires_after_the_last_publish_then_a_new_epoch_starts() {
    let ttl = Duration::from_secs(60);
    let hub = Hub::with_config(HubConfig::new().history_ttl(ttl));
    let old = hub.publish("t", Event::message("a")).await.unwrap();
    let kept = hub.subscribe("kept", None).await.unwrap();
    hub.publish("kept", Event::message("b")).await.unwrap();
    tokio::time::sleep(ttl / 2).await;
    assert_eq!(hub.topic_count(), 2, "within retention");
    let last = hub.publish("t", Event::message("c")).await.unwrap();
    tokio::time::sleep(ttl / 2 + Duration::from_secs(1)).await;
    assert_eq!(
        hub.topic_count(),
        2,
        "retention counts from the last publish"
    );
    // The background sweeper frees it within a sweep interval of expiry.
    tokio::time::sleep(ttl).await;
    assert_eq!(hub.topic_count(), 1, "a topic with a subscriber is kept");
    assert_eq!(hub.subscriber_count("kept"), 1);
    let mut back = hub.subscribe("t", Some(&last.to_string())).await.unwrap();
    let got = drain(&mut back);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("event: reset\n"), "{got:?}");
    let new = hub.publish("t", Event::message("d")).await.unwrap();
    assert_eq!(new.offset(), 1);
    assert_ne!(new.epoch(), old.epoch());
    drop(kept);
}

#[test]
fn hub_wide_bounds_hold_with_many_one_shot_topics() {
    let hub = Hub::with_config(
        HubConfig::new()
            .max_topics(1_000)
            .max_total_history_bytes(64 * 1024),
    );
    let keep = subscribe(&hub, "busy", None);
    for n in 0..20_000 {
        publish(&hub, &format!("one-shot-{n}"), "hello");
        assert!(hub.topic_count() <= 1_001, "{n}: {}", hub.topic_count());
    }
    // The oldest went first; the newest and the one with a subscriber stayed.
    assert_eq!(hub.position("one-shot-0"), None);
    assert!(hub.position("one-shot-19999").is_some());
    assert!(hub.position("busy").is_some());
    // Bytes: a topic with a subscriber is trimmed when nothing idle is left.
    let store = hub.store();
    for _ in 0..2_000 {
        publish(&hub, "busy", &"y".repeat(200));
    }
    assert!(store.topic_count() >= 1);
    drop(keep);
    let bytes = history_bytes(&hub);
    assert!(bytes <= 64 * 1024, "{bytes}");
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off_and_resumes_from_history() {
    let lag = Lag::Disconnect {
        retry: Duration::from_millis(500),
    };
    let hub = Hub::with_config(HubConfig::new().queue_capacity(4).lag(lag));
    let mut stuck = subscribe(&hub, "t", None);
    let mut reader = subscribe(&hub, "t", None);
    let mut last_seen = None;
    let mut ids = Vec::new();
    for n in 1..=10 {
        ids.push(publish(&hub, "t", &n.to_string()));
        assert_eq!(drain(&mut reader).len(), 1);
        if n == 2 {
            let got = drain(&mut stuck);
            assert_eq!(got.len(), 2);
            last_seen = Some(ids[1]);
        }
    }
    assert_eq!(drain(&mut stuck), [": lagged\nretry: 500\n\n"]);
    assert_eq!(stuck.next().now_or_never(), Some(None));
    assert_eq!(hub.subscriber_count("t"), 1);
    // Back with its cursor: exactly what it missed, from the history.
    let mut back = subscribe(&hub, "t", Some(&last_seen.unwrap().to_string()));
    let got = drain(&mut back);
    assert_eq!(got.len(), 8);
    assert_eq!(got[0], msg(ids[2], "3"));
}

#[test]
fn skip_policy_sends_a_gap_notice() {
    let hub = Hub::with_config(HubConfig::new().queue_capacity(2).lag(Lag::Skip));
    let mut slow = subscribe(&hub, "t", None);
    let ids: Vec<_> = (1..=6)
        .map(|n| publish(&hub, "t", &n.to_string()))
        .collect();
    let gap = format!("event: gap\nid: {}\ndata: {{\"skipped\":6}}\n\n", ids[5]);
    assert_eq!(drain(&mut slow), [gap]);
    let seven = publish(&hub, "t", "7");
    assert_eq!(drain(&mut slow), [msg(seven, "7")]);
    assert_eq!(hub.subscriber_count("t"), 1);
}

#[test]
fn publish_with_runs_outside_locks_so_it_may_call_back_into_the_hub() {
    let hub = Hub::new();
    let mut sub = subscribe(&hub, "a", None);
    let inner = hub.clone();
    let id = now(hub.publish_with("a", move |id| {
        // Re-entrant: the same topic and another one, and a subscribe.
        let nested = now(inner.publish("a", Event::message("nested"))).unwrap();
        now(inner.publish("b", Event::message("other"))).unwrap();
        drop(now(inner.subscribe("a", None)).unwrap());
        Event::message(format!("outer {id} after {nested}"))
    }))
    .unwrap();
    assert_eq!(id.offset(), 1);
    let got = drain(&mut sub);
    let nested = EventId::new(2, id.epoch());
    assert_eq!(
        got,
        [
            msg(id, &format!("outer {id} after {nested}")),
            msg(nested, "nested")
        ]
    );
}

#[test]
fn a_panicking_closure_leaves_an_empty_offset_and_the_topic_going() {
    let hub = Hub::new();
    let mut sub = subscribe(&hub, "t", None);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        now(hub.publish_with("t", |_| panic!("user bug")))
    }));
    assert!(caught.is_err());
    let next = publish(&hub, "t", "after");
    assert_eq!(next.offset(), 2);
    assert_eq!(drain(&mut sub), [msg(next, "after")]);
}

#[test]
fn dropping_the_hub_ends_every_stream() {
    let hub = Hub::new();
    let mut sub = subscribe(&hub, "t", None);
    let clone = hub.clone();
    let last = publish(&hub, "t", "last");
    drop(hub);
    assert_eq!(drain(&mut sub), [msg(last, "last")]);
    assert_eq!(sub.next().now_or_never(), None, "a clone is still alive");
    let after = publish(&clone, "t", "after");
    drop(clone);
    assert_eq!(drain(&mut sub), [msg(after, "after")]);
    assert_eq!(sub.next().now_or_never(), Some(None));
}

/// Several publisher threads on several topics, subscribers joining with cursors
/// mid-way: every subscriber gets each topic's events exactly once, in order.
#[test]
fn stress_publishers_and_subscribers_on_threads() {
    const TOPICS: usize = 4;
    const PER_PUBLISHER: usize = 2_000;
    let hub = Hub::with_config(
        HubConfig::new()
            .history_len(100_000)
            .queue_capacity(100_000),
    );
    let start: Vec<_> = (0..TOPICS)
        .map(|t| publish(&hub, &format!("t{t}"), "start"))
        .collect();
    let barrier = Arc::new(std::sync::Barrier::new(TOPICS * 2 + 1));
    let publishers: Vec<_> = (0..TOPICS * 2)
        .map(|p| {
            let (hub, barrier) = (hub.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for n in 0..PER_PUBLISHER {
                    publish(&hub, &format!("t{}", p % TOPICS), &format!("{p}:{n}"));
                }
            })
        })
        .collect();
    barrier.wait();
    // Subscribers from the start cursor, joining while publishers run.
    let readers: Vec<_> = (0..TOPICS * 3)
        .map(|r| {
            let t = r % TOPICS;
            let sub = subscribe(&hub, &format!("t{t}"), Some(&start[t].to_string()));
            std::thread::spawn(move || {
                futures_executor_block_on(sub.take(2 * PER_PUBLISHER).collect::<Vec<_>>())
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for (r, reader) in readers.into_iter().enumerate() {
        let got = reader.join().unwrap();
        let t = r % TOPICS;
        let mut next = [0usize; TOPICS * 2];
        for (i, event) in got.iter().enumerate() {
            let text = text(event);
            let id: EventId = text[4..text.find('\n').unwrap()].parse().unwrap();
            assert_eq!(id.offset(), 2 + i as u64, "contiguous, in order");
            let data = text.split("data: ").nth(1).unwrap().trim_end();
            let (p, n) = data.split_once(':').unwrap();
            let (p, n): (usize, usize) = (p.parse().unwrap(), n.parse().unwrap());
            assert_eq!(p % TOPICS, t);
            assert_eq!(n, next[p], "each publisher's events once, in order");
            next[p] += 1;
        }
    }
}

fn futures_executor_block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_subscriber_is_woken_across_tasks() {
    let hub = Hub::new();
    let mut readers = Vec::new();
    for _ in 0..50 {
        let sub = hub.subscribe("t", None).await.unwrap();
        readers.push(tokio::spawn(
            sub.take(100).map(|e| text(&e)).collect::<Vec<_>>(),
        ));
    }
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 1..=100 {
                ids.push(
                    hub.publish("t", Event::message(n.to_string()))
                        .await
                        .unwrap(),
                );
                tokio::task::yield_now().await;
            }
            ids
        })
    };
    let ids = publisher.await.unwrap();
    let expected: Vec<_> = ids
        .iter()
        .zip(1..)
        .map(|(id, n)| msg(*id, &n.to_string()))
        .collect();
    for reader in readers {
        let got = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("hang guard")
            .unwrap();
        assert_eq!(got, expected);
    }
}

#[test]
fn a_replay_is_capped_in_bytes_with_a_reset_then_the_newest_events() {
    // Each event `id: N-EEEEEEEE\ndata: xxxxxxxxxx\n\n` is 33 bytes (N < 10).
    let hub = Hub::with_config(HubConfig::new().max_replay_bytes(70));
    let ids: Vec<_> = (0..6)
        .map(|_| publish(&hub, "t", &"x".repeat(10)))
        .collect();
    let event = |n: usize| msg(ids[n], &"x".repeat(10));
    assert_eq!(event(0).len(), 33);
    // Two events fit in 70 bytes: after the oldest, a reset after ids[3], then 4, 5.
    let reset = format!(
        "event: reset\nid: {0}\ndata: {{\"after\":\"{0}\"}}\n\n",
        ids[3]
    );
    for cursor in [ids[0].to_string(), "garbage".into()] {
        let got = drain(&mut subscribe(&hub, "t", Some(&cursor)));
        assert_eq!(got, [reset.clone(), event(4), event(5)], "{cursor:?}");
    }
    // A replay that fits is exact, without a reset.
    let got = drain(&mut subscribe(&hub, "t", Some(&ids[3].to_string())));
    assert_eq!(got, [event(4), event(5)]);
    // No cursor: no replay, nothing capped.
    let mut live = subscribe(&hub, "t", None);
    assert!(drain(&mut live).is_empty());
    // A cap of 0 turns every replay into a reset, and live events still flow.
    let hub = Hub::with_config(HubConfig::new().max_replay_bytes(0));
    let first = publish(&hub, "t", "a");
    publish(&hub, "t", "b");
    let mut sub = subscribe(&hub, "t", Some(&first.to_string()));
    let got = drain(&mut sub);
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("event: reset\n"), "{got:?}");
    let live = publish(&hub, "t", "c");
    assert_eq!(drain(&mut sub), [msg(live, "c")]);
    assert_eq!(HubConfig::new().get_max_replay_bytes(), 1024 * 1024);
}

/// Runs `f` on a thread of its own and fails (rather than hangs) when it has
/// not returned within `limit`: a spin is reported, not waited for forever.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("returned in time (a spin never returns)")
}

#[test]
fn a_new_topic_past_the_bound_with_every_topic_in_use_is_refused_not_a_spin() {
    // Before: the new topic was created, then evicted as the only idle one
    // (itself), and the look-up looped for good with every shard locked.
    let (hub, kept) = within(Duration::from_secs(20), || {
        let hub = Hub::with_config(HubConfig::new().max_topics(3));
        let kept: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|t| subscribe(&hub, t, None))
            .collect();
        let err = now(hub.subscribe("d", None)).unwrap_err();
        assert!(matches!(err, tower_sse_hub::HubError::Full), "{err}");
        let err = now(hub.publish("e", Event::message("x"))).unwrap_err();
        assert!(matches!(err, tower_sse_hub::HubError::Full), "{err}");
        // Existing topics still work.
        publish(&hub, "a", "still here");
        assert_eq!(hub.topic_count(), 3);
        (hub, kept)
    });
    // Once a topic is idle, it makes room (after the short backoff).
    let mut kept = kept;
    drop(kept.remove(0));
    std::thread::sleep(Duration::from_millis(150));
    let d = subscribe(&hub, "d", None);
    assert_eq!(hub.topic_count(), 3);
    assert_eq!(hub.position("a"), None, "the idle topic was evicted");
    drop(d);
}

#[test]
fn topics_created_while_the_hub_closes_are_closed_too() {
    // Before: a topic created in a shard that `close` had already visited was
    // never closed, and its subscribers waited forever.
    for round in 0..20 {
        let hub = Hub::new();
        let store_hub = hub.clone();
        let creators: Vec<_> = (0..2)
            .map(|t| {
                let hub = hub.clone();
                std::thread::spawn(move || {
                    let mut subs = Vec::new();
                    for n in 0..300 {
                        match now(hub.subscribe(&format!("r{round}-t{t}-{n}"), None)) {
                            Ok(sub) => subs.push(sub),
                            Err(tower_sse_hub::HubError::Closed) => break,
                            Err(err) => panic!("{err}"),
                        }
                    }
                    subs
                })
            })
            .collect();
        store_hub.store().close();
        for creator in creators {
            for mut sub in creator.join().unwrap() {
                let end = within(Duration::from_secs(10), move || {
                    futures_executor_block_on(sub.next())
                });
                assert!(end.is_none(), "round {round}: every stream ends");
            }
        }
    }
}

#[test]
fn the_hub_wide_byte_count_never_wraps_under_concurrent_eviction() {
    // Publishers add to the count after their commit while evictions subtract
    // what a topic holds: the delta is applied under the topic's lock, so the
    // count never goes below zero (a wrap reads as a huge total and evicts
    // every idle topic at once).
    let hub = Hub::with_config(
        HubConfig::new()
            .max_topics(64)
            .max_total_history_bytes(8 * 1024),
    );
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (hub, done) = (hub.clone(), done.clone());
        std::thread::spawn(move || {
            let mut highest = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                highest = highest.max(history_bytes(&hub));
            }
            highest
        })
    };
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for n in 0..20_000 {
                    publish(&hub, &format!("p{p}-{}", n % 200), "some bytes of history");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let highest = watcher.join().unwrap();
    assert!(highest < 1 << 40, "the count wrapped: {highest}");
}
