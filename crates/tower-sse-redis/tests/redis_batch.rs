//! Concurrent publishes to one Redis server share script calls (batches):
//! each still gets its own id, in order per topic, its own idempotency and its
//! own error, and is acknowledged only once stored. Each test has a private
//! `redis-server` (it pauses Redis, kills connections and counts calls); see
//! `redis_support`.

mod redis_support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use redis_support::{command, data_of, id_of, kill_clients, next, prefix, Private};
use tower_sse::Event;
use tower_sse_hub::{EventId, Hub, HubConfig, HubError};
use tower_sse_redis::{RedisConfig, RedisStore};

fn node(urls: &str, prefix: &str, timeout: Duration) -> Hub {
    let config = RedisConfig::new(urls)
        .prefix(prefix)
        .timeout(timeout)
        .hub(HubConfig::new().history_len(10_000));
    Hub::with_store(RedisStore::new(config).expect("a store"))
}

/// `EVALSHA` calls on the server at `url` so far.
async fn script_calls(url: &str) -> u64 {
    let info: String = command(url, redis::cmd("INFO").arg("commandstats")).await;
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (at most 5 s) until the server at `url` has run `PEXPIRE` more than
/// `publishes` times two: a topic's first publish renews its two keys (later
/// ones within the renewal window do not), and so does the renewal script of
/// a node with a subscriber.
async fn renewed(url: &str, publishes: u64) {
    for _ in 0..500 {
        let info: String = command(url, redis::cmd("INFO").arg("commandstats")).await;
        let pexpires: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_pexpire:calls="))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if pexpires > publishes * 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the subscribed node never renewed its topic");
}

/// The calls a node keeps in flight to one server at once.
const CALLS: usize = 4;

/// Publishes [`CALLS`] events (`in flight 1`, ...) on `topic`, each from a
/// task of its own, 50 ms apart: the node sends each at once as a call of its
/// own, stuck while the writes are paused, so that what is queued next goes
/// in one call after them.
async fn fill_calls(
    hub: &Hub,
    topic: &'static str,
) -> Vec<tokio::task::JoinHandle<Result<EventId, HubError>>> {
    let mut tasks = Vec::new();
    for i in 1..=CALLS {
        tasks.push(tokio::spawn({
            let hub = hub.clone();
            async move {
                hub.publish(topic, Event::message(format!("in flight {i}")))
                    .await
            }
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tasks
}

/// The ids the tasks of [`fill_calls`] got.
async fn ids_of(tasks: Vec<tokio::task::JoinHandle<Result<EventId, HubError>>>) -> Vec<EventId> {
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    ids
}

/// The offsets the tasks of [`fill_calls`] got.
async fn offsets_of(tasks: Vec<tokio::task::JoinHandle<Result<EventId, HubError>>>) -> Vec<u64> {
    ids_of(tasks).await.iter().map(EventId::offset).collect()
}

/// Pauses the writes of the server at `url` for `ms`: the call in flight
/// waits in Redis, and the publishes behind it queue up for the next batch.
async fn pause_writes(url: &str, ms: u64) {
    let () = command(url, redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("WRITE")).await;
}

/// 64 publishers, 25 publishes each, over 5 topics, on `urls`: every publish
/// gets its own offset, each publisher's in the order it published, each
/// topic's offsets are 1..=N with no hole, and every event is read back with
/// the id its publisher got.
async fn concurrent_publishes(urls: &str, servers: &[String]) {
    const PUBLISHERS: usize = 64;
    const EACH: usize = 25;
    const TOPICS: usize = 5;
    let prefix = prefix("batch");
    let hub = node(urls, &prefix, Duration::from_secs(5));
    let mut before = 0;
    for url in servers {
        before += script_calls(url).await;
    }
    let publishers = (0..PUBLISHERS).map(|p| {
        let hub = hub.clone();
        tokio::spawn(async move {
            let topic = format!("t{}", p % TOPICS);
            let mut ids = Vec::new();
            for i in 0..EACH {
                let id = hub
                    .publish(&topic, Event::message(format!("{p}.{i}")))
                    .await
                    .unwrap();
                ids.push((format!("{p}.{i}"), id));
            }
            (topic, ids)
        })
    });
    let mut acked: HashMap<String, Vec<(String, EventId)>> = HashMap::new();
    for done in join_all(publishers.collect::<Vec<_>>()).await {
        let (topic, ids) = done.unwrap();
        assert!(
            ids.windows(2).all(|w| w[0].1.offset() < w[1].1.offset()),
            "one publisher's ids ascend: {ids:?}"
        );
        acked.entry(topic).or_default().extend(ids);
    }
    let mut after = 0;
    for url in servers {
        after += script_calls(url).await;
    }
    let calls = after - before;
    let publishes = (PUBLISHERS * EACH) as u64;
    assert!(
        calls < publishes,
        "{calls} script calls for {publishes} publishes: batched"
    );
    // Read back from another node: every acknowledged event is stored.
    let reader = node(urls, &prefix, Duration::from_secs(5));
    for (topic, mut ids) in acked {
        ids.sort_by_key(|(_, id)| id.offset());
        let offsets: Vec<u64> = ids.iter().map(|(_, id)| id.offset()).collect();
        let n = (PUBLISHERS / TOPICS + usize::from(topic.as_str() < "t4")) * EACH;
        assert_eq!(offsets, (1..=n as u64).collect::<Vec<_>>(), "{topic}");
        // From offset 0 of the topic's epoch: its whole history.
        let start = EventId::new(0, ids[0].1.epoch()).to_string();
        let mut sub = reader.subscribe(&topic, Some(&start)).await.unwrap();
        for (data, id) in &ids {
            let event = next(&mut sub).await.unwrap();
            assert_eq!(
                (id_of(&event), data_of(&event)),
                (id.to_string().as_str(), data.as_str())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_to_several_topics_share_calls_and_keep_their_order() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    concurrent_publishes(&url, std::slice::from_ref(&url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_publishes_are_batched_per_server() {
    let (Some(a), Some(b)) = (Private::start().await, Private::start().await) else {
        return;
    };
    let urls = [a.url(), b.url()];
    concurrent_publishes(&urls.join(","), &urls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_twice_in_one_batch_is_stored_once() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = node(&url, "idem", Duration::from_secs(2));
    // Loads the script and learns Redis's clock.
    hub.publish("warm", Event::message("up")).await.unwrap();
    let () = command(&url, redis::cmd("CONFIG").arg("RESETSTAT")).await;
    pause_writes(&url, 500).await;
    let in_flight = fill_calls(&hub, "t").await;
    // Both queue behind the calls in flight: the next call has both.
    let retries: Vec<_> = (0..2)
        .map(|_| {
            let hub = hub.clone();
            tokio::spawn(async move {
                hub.publish_once("t", "k-1", |_| Event::message("once"))
                    .await
            })
        })
        .collect();
    assert_eq!(offsets_of(in_flight).await, [1, 2, 3, 4]);
    let ids = ids_of(retries).await;
    assert_eq!(ids[0], ids[1], "the same key gets the same id");
    assert_eq!(ids[0].offset(), 5);
    assert_eq!(
        script_calls(&url).await,
        CALLS as u64 + 1,
        "the two retries shared a call"
    );
    let top: Option<u64> = command(&url, redis::cmd("HGET").arg("idem:{t}:m").arg("t")).await;
    assert_eq!(top, Some(5), "stored once");
    let len: u64 = command(&url, redis::cmd("XLEN").arg("idem:{t}:s")).await;
    assert_eq!(len, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_fails_in_a_batch_fails_alone() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = node(&url, "err", Duration::from_secs(2));
    hub.publish("bad", Event::message("up")).await.unwrap();
    let () = command(&url, redis::cmd("CONFIG").arg("RESETSTAT")).await;
    // The topic's stream is no longer a stream: its XADD fails.
    let _: i64 = command(&url, redis::cmd("DEL").arg("err:{bad}:s")).await;
    let () = command(&url, redis::cmd("SET").arg("err:{bad}:s").arg("x")).await;
    pause_writes(&url, 500).await;
    let in_flight = fill_calls(&hub, "good").await;
    // Polled in this order by one task (`join_all` polls its futures in
    // turn), so they queue in this order: spawned tasks may start in any.
    let batch = ["good", "bad", "good"].map(|topic| hub.publish(topic, Event::message("x")));
    let (got, in_flight) = tokio::join!(join_all(batch), offsets_of(in_flight));
    assert_eq!(in_flight, [1, 2, 3, 4]);
    assert_eq!(
        script_calls(&url).await,
        CALLS as u64 + 1,
        "one call each in flight, then the three in one call"
    );
    let err = got[1].as_ref().unwrap_err();
    assert!(
        matches!(err, HubError::Unavailable(_)) && err.to_string().contains("WRONGTYPE"),
        "{err}"
    );
    let offsets: Vec<u64> = [&got[0], &got[2]]
        .iter()
        .map(|r| r.as_ref().unwrap().offset())
        .collect();
    assert_eq!(offsets, [5, 6], "the others of the batch are stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_fails_every_publish_of_its_batch_and_hangs_none() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = node(&url, "kill", Duration::from_secs(3));
    hub.publish("t0", Event::message("up")).await.unwrap();
    // Nothing runs for 2 s: the publishes' deadlines (half the timeout) pass.
    pause_writes(&url, 2_000).await;
    let started = Instant::now();
    let spawn = |topic: String| {
        let hub = hub.clone();
        tokio::spawn(async move { hub.publish(&topic, Event::message("lost")).await })
    };
    let mut publishes = vec![spawn("t0".to_owned())];
    tokio::time::sleep(Duration::from_millis(100)).await;
    publishes.extend((0..20).map(|i| spawn(format!("t{}", i % 4))));
    // The first call, then the batch of twenty sent on a new connection.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        kill_clients(&url, "normal").await;
    }
    for publish in publishes {
        let done = tokio::time::timeout(Duration::from_secs(5), publish)
            .await
            .expect("no publish hangs")
            .unwrap();
        let err = done.expect_err("its call was lost");
        assert!(matches!(err, HubError::Unavailable(_)), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "failed with the connection, not by timing out: {:?}",
        started.elapsed()
    );
    // After the pause: nothing of those was stored, and publishing works.
    tokio::time::sleep(Duration::from_millis(2_200).saturating_sub(started.elapsed())).await;
    let top: Option<u64> = command(&url, redis::cmd("HGET").arg("kill:{t0}:m").arg("t")).await;
    assert_eq!(top, Some(1), "nothing stored");
    // Publishing works. When the batch of twenty went out before the first
    // kill (a loaded machine runs the spawned publishers late, and four calls
    // may be in flight), the second kill closed a connection the node had
    // just opened and not used yet: a commands connection learns of that on
    // its next call (RESP2 has no disconnection notice), which fails, unsent
    // (a broken pipe), and reconnects. So at most one failure, storing nothing.
    let id = match hub.publish("t0", Event::message("after")).await {
        Ok(id) => id,
        Err(HubError::Unavailable(_)) => hub.publish("t0", Event::message("after")).await.unwrap(),
        Err(other) => panic!("{other}"),
    };
    assert_eq!(id.offset(), 2, "the failed one stored nothing");
}

/// Calls of `command` run on the server at `url` so far (scripts' included).
async fn command_calls(url: &str, command_name: &str) -> u64 {
    let info: String = command(url, redis::cmd("INFO").arg("commandstats")).await;
    let prefix = format!("cmdstat_{command_name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A batch's events to one topic go out as one message: a live subscriber on
/// another node gets every event once, in order, with the id its publisher
/// got, from those messages alone (it never reads the stream again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_subscriber_on_another_node_gets_every_batched_event_once_in_order() {
    const PUBLISHERS: usize = 64;
    const EACH: usize = 20;
    const TOPICS: usize = 4;
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let publisher = node(&url, "live", Duration::from_secs(5));
    let reader = node(&url, "live", Duration::from_secs(5));
    let mut subs = Vec::new();
    for t in 0..TOPICS {
        let topic = format!("t{t}");
        // The topic exists, and the script is loaded.
        publisher
            .publish(&topic, Event::message("0"))
            .await
            .unwrap();
        subs.push(reader.subscribe(&topic, None).await.unwrap());
    }
    let () = command(&url, redis::cmd("CONFIG").arg("RESETSTAT")).await;
    let publishers = (0..PUBLISHERS).map(|p| {
        let hub = publisher.clone();
        tokio::spawn(async move {
            let topic = p % TOPICS;
            let mut ids = Vec::new();
            for i in 0..EACH {
                let data = format!("{p}.{i}");
                let id = hub
                    .publish(&format!("t{topic}"), Event::message(data.clone()))
                    .await
                    .unwrap();
                ids.push((id, data));
            }
            (topic, ids)
        })
    });
    let mut acked = vec![Vec::new(); TOPICS];
    for done in join_all(publishers.collect::<Vec<_>>()).await {
        let (topic, ids) = done.unwrap();
        acked[topic].extend(ids);
    }
    let publishes = (PUBLISHERS * EACH) as u64;
    let messages = command_calls(&url, "publish").await;
    assert!(
        messages < publishes,
        "{messages} messages for {publishes} publishes: several events per message"
    );
    for (topic, mut ids) in acked.into_iter().enumerate() {
        ids.sort_by_key(|(id, _)| id.offset());
        for (id, data) in &ids {
            let event = tokio::time::timeout(Duration::from_secs(5), next(&mut subs[topic]))
                .await
                .expect("every event arrives")
                .unwrap();
            assert_eq!(
                (id_of(&event), data_of(&event)),
                (id.to_string().as_str(), data.as_str()),
                "t{topic}"
            );
        }
        let more = tokio::time::timeout(Duration::from_millis(100), next(&mut subs[topic])).await;
        assert!(more.is_err(), "each event once: {more:?}");
    }
    assert_eq!(
        command_calls(&url, "xrevrange").await,
        0,
        "the reader never read the streams again: the messages carried everything"
    );
}

/// A batch trims each topic's stream exactly to the history bound (the
/// topic's last event of the batch carries the `MAXLEN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_publishes_trim_each_stream_exactly() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let config = RedisConfig::new(&url)
        .prefix("trim")
        .hub(HubConfig::new().history_len(10));
    let hub = Hub::with_store(RedisStore::new(config).expect("a store"));
    let publishers = (0..64).map(|p| {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                let topic = format!("t{}", p % 3);
                hub.publish(&topic, Event::message(format!("{p}.{i}")))
                    .await
                    .unwrap();
            }
        })
    });
    join_all(publishers.collect::<Vec<_>>()).await;
    for t in 0..3 {
        let stream = format!("trim:{{t{t}}}:s");
        let top: u64 = command(
            &url,
            redis::cmd("HGET").arg(format!("trim:{{t{t}}}:m")).arg("t"),
        )
        .await;
        let len: u64 = command(&url, redis::cmd("XLEN").arg(&stream)).await;
        assert_eq!(len, 10, "t{t}");
        let first: Vec<(String, Vec<(String, String)>)> = command(
            &url,
            redis::cmd("XRANGE")
                .arg(&stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1),
        )
        .await;
        assert_eq!(
            first[0].0,
            format!("{}-0", top - 9),
            "t{t} keeps the newest"
        );
    }
}

/// A batch in which one of a topic's events is not stored (its idempotency
/// key was stored by an earlier event of the batch) still gives the topic's
/// live subscribers each stored event once, in order, from its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_a_batch_with_a_refused_event_carries_the_stored_ones() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = node(&url, "gap", Duration::from_secs(2));
    let reader = node(&url, "gap", Duration::from_secs(2));
    let first = hub.publish("t", Event::message("first")).await.unwrap();
    let mut sub = reader.subscribe("t", None).await.unwrap();
    // The reader's node renews the topic's retention once it has a
    // subscriber (a script call of its own, at its next tick): let it, so
    // that the calls counted below are the publishes'.
    renewed(&url, 1).await;
    let () = command(&url, redis::cmd("CONFIG").arg("RESETSTAT")).await;
    pause_writes(&url, 500).await;
    let in_flight = fill_calls(&hub, "t").await;
    // Queued behind the calls in flight: the next call has all four.
    let mut queued = Vec::new();
    for (key, data) in [
        (Some("k"), "a"),
        (None, "b"),
        (Some("k"), "a again"),
        (None, "c"),
    ] {
        let hub = hub.clone();
        queued.push(tokio::spawn(async move {
            match key {
                Some(key) => hub.publish_once("t", key, |_| Event::message(data)).await,
                None => hub.publish("t", Event::message(data)).await,
            }
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_ids = ids_of(in_flight).await;
    let ids = ids_of(queued).await;
    assert_eq!(ids[0], ids[2], "the key's second event is the first's");
    assert_eq!(
        script_calls(&url).await,
        CALLS as u64 + 1,
        "the four shared a call"
    );
    let offsets: Vec<u64> = ids.iter().map(EventId::offset).collect();
    let in_flight_offsets: Vec<u64> = in_flight_ids.iter().map(EventId::offset).collect();
    assert_eq!(
        (first.offset(), in_flight_offsets, offsets),
        (1, vec![2, 3, 4, 5], vec![6, 7, 6, 8])
    );
    let in_flight_data: Vec<String> = (1..=CALLS).map(|i| format!("in flight {i}")).collect();
    let expected = in_flight_ids
        .iter()
        .zip(&in_flight_data)
        .map(|(id, data)| (*id, data.as_str()))
        .chain([(ids[0], "a"), (ids[1], "b"), (ids[3], "c")]);
    for (id, data) in expected {
        let event = next(&mut sub).await.unwrap();
        assert_eq!(
            (id_of(&event), data_of(&event)),
            (id.to_string().as_str(), data)
        );
    }
    assert_eq!(
        command_calls(&url, "xrevrange").await,
        0,
        "from the messages"
    );
}

/// A node on `url` whose topics keep their history 16 s: their keys are
/// renewed to 17 s, at most once a second.
fn renewing_node(url: &str, prefix: &str) -> Hub {
    redis_support::node(
        url,
        prefix,
        HubConfig::new().history_ttl(Duration::from_secs(16)),
    )
}

/// The two keys of topic `t` under `prefix`.
fn keys_of_t(prefix: &str) -> [String; 2] {
    [format!("{prefix}:{{t}}:s"), format!("{prefix}:{{t}}:m")]
}

/// Publishes to `t` (its keys renewed), then makes both keys expire in 5 s,
/// as if Redis came back from an older snapshot, and checks that a publish
/// within the renewal window does not renew them.
async fn shortened_and_not_renewed(hub: &Hub, url: &str, prefix: &str) {
    hub.publish("t", Event::message("1")).await.unwrap();
    for key in keys_of_t(prefix) {
        let _: i64 = command(url, redis::cmd("PEXPIRE").arg(key).arg(5_000)).await;
    }
    hub.publish("t", Event::message("2")).await.unwrap();
    let [stream, _] = keys_of_t(prefix);
    let left: i64 = command(url, redis::cmd("PTTL").arg(stream)).await;
    assert!(
        left <= 5_000,
        "not renewed within the window: {left} ms left"
    );
}

/// Both keys of `t` were renewed by the last publish: more than the TTL left.
async fn assert_renewed(url: &str, prefix: &str) {
    for key in keys_of_t(prefix) {
        let left: i64 = command(url, redis::cmd("PTTL").arg(&key)).await;
        assert!(left > 16_000, "{key} renewed: {left} ms left");
    }
}

/// A call that fails (here its connection is killed) makes the node renew each
/// topic at its next call, within the renewal window too: Redis may have come
/// back from an older snapshot, whose keys expire sooner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_call_the_next_publish_renews_its_topic() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = renewing_node(&url, "lost");
    shortened_and_not_renewed(&hub, &url, "lost").await;
    // A call lost with its connection.
    pause_writes(&url, 300).await;
    let lost = tokio::spawn({
        let hub = hub.clone();
        async move { hub.publish("t", Event::message("3")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    kill_clients(&url, "normal").await;
    assert!(lost.await.unwrap().is_err(), "its call was lost");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The next publish renews both keys.
    let id = hub.publish("t", Event::message("4")).await.unwrap();
    assert_eq!(id.offset(), 3, "the lost one was not stored");
    assert_renewed(&url, "lost").await;
}

/// A Pub/Sub connection lost (here killed; Redis restarting looks the same)
/// makes the node renew each topic at its next call, within the renewal
/// window too, although no call failed: the commands connection may come back
/// by itself (it does on RESP3), onto a Redis restored from an older snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_pubsub_connection_is_lost_the_next_publish_renews_its_topic() {
    let Some(redis) = Private::start().await else {
        return;
    };
    let url = redis.url();
    let hub = renewing_node(&url, "gone");
    let numsub = || {
        let url = url.clone();
        async move {
            let counts: Vec<redis::Value> =
                command(&url, redis::cmd("PUBSUB").arg("NUMSUB").arg("gone:{t}:c")).await;
            counts.get(1) == Some(&redis::Value::Int(1))
        }
    };
    // A subscriber, so that the node's Pub/Sub connection is in Pub/Sub mode.
    let _subscriber = hub.subscribe("t", None).await.unwrap();
    assert!(numsub().await, "subscribed");
    shortened_and_not_renewed(&hub, &url, "gone").await;
    kill_clients(&url, "pubsub").await;
    // Back, and subscribed again (bounded: 40 looks, 25 ms apart).
    let mut back = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if numsub().await {
            back = true;
            break;
        }
    }
    assert!(back, "the Pub/Sub connection came back");
    // No call failed, yet the next publish renews both keys.
    hub.publish("t", Event::message("3")).await.unwrap();
    assert_renewed(&url, "gone").await;
}
