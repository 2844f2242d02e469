//! `NatsBroker` against a real nats-server (2.9+): offsets, reads, trimming,
//! the live feed, idempotency, epochs.

mod support;

use std::time::Duration;

use support::{config, server};
use tokio::sync::mpsc;
use tower_sse_hub::{
    remote::{Append, Broker, Feed, FeedSender},
    HubConfig, HubError,
};
use tower_sse_nats::{NatsBroker, NatsConfig};

const STAND_IN: &str = "\u{1}id\u{1}";

fn hub() -> HubConfig {
    HubConfig::new()
}

async fn append(
    broker: &NatsBroker,
    topic: &str,
    data: &str,
    key: Option<&str>,
    config: &HubConfig,
) -> Result<tower_sse_hub::EventId, HubError> {
    let event = format!("id: {STAND_IN}\ndata: {data}\n\n");
    broker
        .append(
            topic,
            Append {
                event: event.as_bytes(),
                stand_in: STAND_IN,
                key,
                config,
            },
        )
        .await
}

async fn broker(url: &str, name: &str) -> NatsBroker {
    NatsBroker::connect(config(url, name)).await.unwrap()
}

#[tokio::test]
async fn appends_get_offsets_one_to_n_and_read_returns_them() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "order").await;
    let config = hub();
    let mut epoch = None;
    for n in 1..=5u64 {
        let id = append(&broker, "room", &n.to_string(), None, &config)
            .await
            .unwrap();
        assert_eq!(id.offset(), n);
        assert_eq!(*epoch.get_or_insert(id.epoch()), id.epoch());
    }
    let range = broker.read("room", 1, &config).await.unwrap();
    assert_eq!(Some(range.epoch), epoch);
    assert_eq!(range.top, 5);
    let offsets: Vec<u64> = range.entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5]);
    assert_eq!(
        range.entries[2].data,
        format!("id: {STAND_IN}\ndata: 3\n\n").as_bytes()
    );
    // From an offset.
    let range = broker.read("room", 4, &config).await.unwrap();
    let offsets: Vec<u64> = range.entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [4, 5]);
    // Past the top.
    let range = broker.read("room", 6, &config).await.unwrap();
    assert_eq!(range.top, 5);
    assert!(range.entries.is_empty());
    // The reads' consumers are deleted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stream = broker
            .jetstream()
            .get_stream(broker.stream_name("room"))
            .await
            .unwrap();
        if stream.cached_info().state.consumer_count == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "consumers left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_read_of_a_new_topic_gives_it_an_epoch() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "fresh").await;
    let config = hub();
    let range = broker.read("nobody yet", 1, &config).await.unwrap();
    assert_eq!(range.top, 0);
    assert!(range.entries.is_empty());
    let id = append(&broker, "nobody yet", "x", None, &config)
        .await
        .unwrap();
    assert_eq!((id.offset(), id.epoch()), (1, range.epoch));
}

#[tokio::test]
async fn a_read_after_trimming_starts_above_the_offset_asked() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "trim").await;
    let config = hub().history_len(3);
    for n in 1..=7 {
        append(&broker, "t", &n.to_string(), None, &config)
            .await
            .unwrap();
    }
    let range = broker.read("t", 1, &config).await.unwrap();
    assert_eq!(range.top, 7);
    let offsets: Vec<u64> = range.entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [5, 6, 7]);
    // A read asking for fewer than the stream holds gets the newest.
    let smaller = hub().history_len(2);
    let range = broker.read("t", 1, &smaller).await.unwrap();
    let offsets: Vec<u64> = range.entries.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [6, 7]);
}

#[tokio::test]
async fn the_stand_in_round_trips() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "standin").await;
    let config = hub();
    let odd = "é\r\n\u{0}: x";
    broker
        .append(
            "r",
            Append {
                event: b"data: a\n\n",
                stand_in: odd,
                key: Some("key with spaces\r\nand é"),
                config: &config,
            },
        )
        .await
        .unwrap();
    let range = broker.read("r", 1, &config).await.unwrap();
    assert_eq!(range.entries.len(), 1);
    assert_eq!(range.entries[0].stand_in, odd.as_bytes());
    assert_eq!(range.entries[0].data, &b"data: a\n\n"[..]);
}

#[tokio::test]
async fn concurrent_appends_with_one_key_store_one_event() {
    let Some(url) = server().await else { return };
    let config = config(&url, "idem");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        // Four nodes.
        let broker = NatsBroker::connect(config.clone()).await.unwrap();
        tasks.spawn(async move {
            append(&broker, "pay", "once", Some("order-17"), &hub())
                .await
                .unwrap()
        });
    }
    let mut ids = Vec::new();
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[0].offset(), 1);
    let broker = NatsBroker::connect(config).await.unwrap();
    let range = broker.read("pay", 1, &hub()).await.unwrap();
    assert_eq!(range.top, 1);
    // A later append with the key again: the same id.
    let again = append(&broker, "pay", "twice", Some("order-17"), &hub())
        .await
        .unwrap();
    assert_eq!(again, ids[0]);
}

#[tokio::test]
async fn a_deleted_stream_gives_a_new_epoch() {
    let Some(url) = server().await else { return };
    let shared = config(&url, "epoch");
    let broker = NatsBroker::connect(shared.clone()).await.unwrap();
    let other = NatsBroker::connect(shared).await.unwrap();
    let config = hub();
    let first = append(&broker, "e", "1", None, &config).await.unwrap();
    append(&broker, "e", "2", None, &config).await.unwrap();
    // Another node (same prefix) sees the same epoch.
    assert_eq!(
        other.read("e", 1, &config).await.unwrap().epoch,
        first.epoch()
    );
    broker
        .jetstream()
        .delete_stream(broker.stream_name("e"))
        .await
        .unwrap();
    // This node's cached epoch is stale: the append finds the new stream.
    let id = append(&broker, "e", "3", None, &config).await.unwrap();
    assert_eq!(id.offset(), 1);
    assert_ne!(id.epoch(), first.epoch());
    // The other node reads the new epoch.
    let range = other.read("e", 1, &config).await.unwrap();
    assert_eq!((range.epoch, range.top), (id.epoch(), 1));
    // Deleted again, read first: a new epoch again.
    broker
        .jetstream()
        .delete_stream(broker.stream_name("e"))
        .await
        .unwrap();
    let range = other.read("e", 1, &config).await.unwrap();
    assert_ne!(range.epoch, id.epoch());
    assert_eq!(range.top, 0);
}

#[tokio::test]
async fn renew_keeps_a_quiet_topic_s_epoch_past_its_ttl() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "renew").await;
    let config = hub()
        .history_ttl(Duration::from_millis(800))
        .idempotency_window(Duration::from_millis(500));
    let id = append(&broker, "quiet", "1", None, &config).await.unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        broker.renew("quiet", &config).await.unwrap();
    }
    let range = broker.read("quiet", 1, &config).await.unwrap();
    assert_eq!(range.epoch, id.epoch());
    assert_eq!(range.top, 1);
    assert!(range.entries.is_empty(), "the event itself expired");
    let next = append(&broker, "quiet", "2", None, &config).await.unwrap();
    assert_eq!((next.offset(), next.epoch()), (2, id.epoch()));
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Feed>) -> Feed {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("fed in time")
        .expect("feed open")
}

#[tokio::test]
async fn watch_feeds_what_is_stored_after_it_is_confirmed_in_order() {
    let Some(url) = server().await else { return };
    let config = config(&url, "watch");
    let broker = NatsBroker::connect(config.clone()).await.unwrap();
    let writer = NatsBroker::connect(config).await.unwrap();
    let hub = hub();
    let before = append(&writer, "w", "0", None, &hub).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    broker.watch("w", FeedSender::new(tx)).await.unwrap();
    for n in 1..=20 {
        append(&writer, "w", &n.to_string(), None, &hub)
            .await
            .unwrap();
    }
    for offset in 2..=21 {
        match recv(&mut rx).await {
            Feed::Live { epoch, entry } => {
                assert_eq!(epoch, before.epoch());
                assert_eq!(entry.offset, offset);
                assert_eq!(entry.stand_in, STAND_IN.as_bytes());
            }
            Feed::Resync => panic!("no loss"),
        }
    }
    broker.unwatch("w");
    append(&writer, "w", "late", None, &hub).await.unwrap();
    let late = tokio::time::timeout(Duration::from_millis(700), rx.recv()).await;
    assert!(
        matches!(late, Ok(None) | Err(_)),
        "nothing fed after unwatch"
    );
}

#[tokio::test]
async fn watch_of_a_topic_not_made_yet_feeds_from_its_first_event() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "watchnew").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    broker.watch("later", FeedSender::new(tx)).await.unwrap();
    let id = append(&broker, "later", "1", None, &hub()).await.unwrap();
    match recv(&mut rx).await {
        Feed::Live { epoch, entry } => assert_eq!((entry.offset, epoch), (1, id.epoch())),
        Feed::Resync => {}
    }
}

#[tokio::test]
async fn watch_resyncs_when_the_stream_is_replaced() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "watchdel").await;
    let hub = hub();
    let first = append(&broker, "d", "1", None, &hub).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    broker.watch("d", FeedSender::new(tx)).await.unwrap();
    broker
        .jetstream()
        .delete_stream(broker.stream_name("d"))
        .await
        .unwrap();
    let id = append(&broker, "d", "2", None, &hub).await.unwrap();
    assert_ne!(id.epoch(), first.epoch());
    // A resync, and never an entry labelled with the old epoch.
    let mut resynced = false;
    while !resynced {
        match recv(&mut rx).await {
            Feed::Resync => resynced = true,
            Feed::Live { epoch, .. } => assert_eq!(epoch, id.epoch()),
        }
    }
    // Fed live again after that.
    let next = append(&broker, "d", "3", None, &hub).await.unwrap();
    loop {
        match recv(&mut rx).await {
            Feed::Live { epoch, entry } if entry.offset == next.offset() => {
                assert_eq!(epoch, next.epoch());
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_within_the_timeout() {
    // Nothing listens on port 1; no server needed.
    let config = NatsConfig::new("nats://127.0.0.1:1")
        .prefix("down")
        .timeout(Duration::from_millis(300));
    let broker = NatsBroker::connect(config).await.unwrap();
    assert_eq!(broker.server_of("t"), "127.0.0.1:1");
    let started = std::time::Instant::now();
    let err = append(&broker, "t", "x", None, &hub()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(matches!(err, HubError::Unavailable(_)), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(broker.read("t", 1, &hub()).await.is_err());
    let bad = NatsBroker::connect(NatsConfig::new("nats://127.0.0.1:1").prefix("a.b")).await;
    assert!(bad.is_err());
}

/// The connection is lost and comes back: the feed says `Resync` (it may
/// have missed events), then feeds live again.
#[tokio::test]
async fn watch_resyncs_after_the_connection_comes_back() {
    let Some(url) = server().await else { return };
    let proxy = support::Proxy::to(support::addr()).await;
    let shared = config(&url, "reconnect");
    let via_proxy = NatsConfig::new(proxy.url())
        .prefix(shared.get_prefix())
        .timeout(Duration::from_millis(500));
    let watcher = NatsBroker::connect(via_proxy).await.unwrap();
    let writer = NatsBroker::connect(shared).await.unwrap();
    let hub = hub();
    append(&writer, "r", "1", None, &hub).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    watcher.watch("r", FeedSender::new(tx)).await.unwrap();
    proxy.cut();
    // Stored while this node is cut off.
    append(&writer, "r", "2", None, &hub).await.unwrap();
    proxy.heal();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut resynced = false;
    while !resynced {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(Feed::Resync)) => resynced = true,
            Ok(Some(Feed::Live { .. })) => {}
            other => panic!("no resync: {other:?}"),
        }
    }
    let id = append(&writer, "r", "3", None, &hub).await.unwrap();
    loop {
        match recv(&mut rx).await {
            Feed::Live { entry, .. } if entry.offset == id.offset() => break,
            _ => {}
        }
    }
}

/// A feed whose copy is gone stops, and its consumer is deleted.
#[tokio::test]
async fn a_feed_stops_once_its_copy_is_gone() {
    let Some(url) = server().await else { return };
    let broker = broker(&url, "gone").await;
    append(&broker, "g", "1", None, &hub()).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    broker.watch("g", FeedSender::new(tx)).await.unwrap();
    let consumers = || async {
        broker
            .jetstream()
            .get_stream(broker.stream_name("g"))
            .await
            .unwrap()
            .cached_info()
            .state
            .consumer_count
    };
    assert_eq!(consumers().await, 1);
    drop(rx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while consumers().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "consumer left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
