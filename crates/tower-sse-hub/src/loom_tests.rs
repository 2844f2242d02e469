//! Model checks of the topic log with `loom`: every interleaving of publishers,
//! readers, subscribe (with replay), lag, unsubscribe and close.
//!
//! ```text
//! RUSTFLAGS="--cfg tower_sse_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --lib hub::loom_tests
//! ```

use std::{
    future::poll_fn,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use loom::thread;

use super::{
    config::{HubConfig, Lag},
    topic::{Cursor, Topic},
};
use tower_sse::Event;

fn publish(topic: &Topic, config: &HubConfig, n: u32) {
    publish_counted(topic, config, n, None);
}

/// [`publish`], counting the topic's bytes into the hub-wide `total`.
fn publish_counted(topic: &Topic, config: &HubConfig, n: u32, total: Option<&AtomicUsize>) {
    let id = topic.reserve().expect("not removed");
    let event = Event::message(n.to_string()).encode();
    let wakers = topic.commit(id, Some(event), config, Instant::now(), total);
    wakers.into_iter().flatten().for_each(|w| w.wake());
}

/// Publishes in one critical section, as `Hub::publish` does on a memory store.
fn append(topic: &Topic, config: &HubConfig, n: u32) {
    let (_, wakers) = topic
        .append(&Event::message(n.to_string()), config, None)
        .expect("not removed");
    wakers.into_iter().flatten().for_each(|w| w.wake());
}

/// The data of each event read (an appended event has an `id:` line first).
fn data_of(events: &[String]) -> Vec<String> {
    let mut data: Vec<String> = events
        .iter()
        .map(|e| e[e.find("data: ").expect("a data line")..].to_owned())
        .collect();
    data.sort();
    data
}

/// Reads `n` events (or until the stream ends) and returns their data.
fn read(topic: &Topic, cursor: &mut Cursor, config: &HubConfig, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    loom::future::block_on(async {
        while got.len() < n {
            match poll_fn(|cx| topic.poll_next(cursor, config, cx)).await {
                Some(event) => got.push(String::from_utf8_lossy(event.as_bytes()).into_owned()),
                None => break,
            }
        }
    });
    got
}

fn data(n: u32) -> String {
    format!("data: {n}\n\n")
}

#[test]
fn no_lost_wakeup_no_duplicate_with_two_publishers() {
    loom::model(|| {
        let config = Arc::new(HubConfig::new().lag(Lag::Skip));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut cursor = Cursor::new(&topic.subscribe(None).unwrap());
        let publishers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let (topic, config) = (topic.clone(), config.clone());
                thread::spawn(move || publish(&topic, &config, n))
            })
            .collect();
        let got = read(&topic, &mut cursor, &config, 2);
        for p in publishers {
            p.join().unwrap();
        }
        // Both, once each, in offset order (whichever reserved first).
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, [data(1), data(2)]);
    });
}

#[test]
fn replay_then_live_has_no_gap_or_duplicate() {
    loom::model(|| {
        let config = Arc::new(HubConfig::new().lag(Lag::Skip));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        publish(&topic, &config, 1);
        let cursor = topic.position().to_string();
        let publisher = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || {
                publish(&topic, &config, 2);
                publish(&topic, &config, 3);
            })
        };
        // Subscribes from offset 1 while 2 and 3 are being published.
        let joined = topic.subscribe(Some(&cursor)).unwrap();
        assert!(joined.reset.is_none());
        let mut reader = Cursor::new(&joined);
        let got = read(&topic, &mut reader, &config, 2);
        publisher.join().unwrap();
        assert_eq!(got, [data(2), data(3)]);
    });
}

#[test]
fn unsubscribe_races_with_publish() {
    loom::model(|| {
        let config = Arc::new(HubConfig::new());
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let cursor = Cursor::new(&topic.subscribe(None).unwrap());
        // The hub-wide byte count (not modelled: only its owner's lock is).
        let total = Arc::new(AtomicUsize::new(0));
        let publisher = {
            let (topic, config, total) = (topic.clone(), config.clone(), total.clone());
            thread::spawn(move || publish_counted(&topic, &config, 1, Some(&total)))
        };
        topic.unsubscribe(cursor.slot);
        publisher.join().unwrap();
        assert_eq!(topic.subscriber_count(), 0);
        // Removed, it gives back what it counted: all of its one event.
        let counted = total.load(Relaxed);
        assert_eq!(counted, topic_bytes(1));
        assert_eq!(topic.try_remove(None), Some(counted));
    });
}

fn topic_bytes(n: u32) -> usize {
    data(n).len()
}

#[test]
fn a_lagging_reader_is_cut_off_with_notice_never_silently() {
    loom::model(|| {
        let lag = Lag::Disconnect {
            retry: Duration::from_secs(1),
        };
        let config = Arc::new(HubConfig::new().queue_capacity(1).lag(lag));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut cursor = Cursor::new(&topic.subscribe(None).unwrap());
        let publisher = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || (1..=3).for_each(|n| publish(&topic, &config, n)))
        };
        // Until the three events or the end: a reader that keeps up gets all
        // three and no notice; a lost wake-up would block here (loom reports it).
        let lagged = ": lagged\nretry: 1000\n\n".to_owned();
        let mut got = Vec::new();
        while got.iter().filter(|e| **e != lagged).count() < 3 {
            let next = read(&topic, &mut cursor, &config, 1);
            if next.is_empty() {
                break;
            }
            got.extend(next);
        }
        publisher.join().unwrap();
        // A prefix of the events in order, then (if it fell behind) the notice
        // and the end; never a silent hole.
        let events: Vec<_> = got.iter().take_while(|e| **e != lagged).cloned().collect();
        assert_eq!(
            events,
            (1..=events.len() as u32).map(data).collect::<Vec<_>>()
        );
        if events.len() < 3 {
            assert_eq!(got.last(), Some(&lagged));
            assert_eq!(topic.subscriber_count(), 0);
        }
    });
}

#[test]
fn close_ends_a_waiting_reader() {
    loom::model(|| {
        let config = Arc::new(HubConfig::new());
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut cursor = Cursor::new(&topic.subscribe(None).unwrap());
        let closer = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || {
                publish(&topic, &config, 1);
                topic.close().into_iter().flatten().for_each(|w| w.wake());
            })
        };
        let got = read(&topic, &mut cursor, &config, usize::MAX);
        closer.join().unwrap();
        assert_eq!(got, [data(1)]);
    });
}

#[test]
fn a_rebase_reaches_a_waiting_reader_in_band() {
    use super::id::Epoch;
    loom::model(|| {
        let config = Arc::new(HubConfig::new().lag(Lag::Skip));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut reader = Cursor::new(&topic.subscribe(None).unwrap());
        publish(&topic, &config, 1);
        let epoch = Epoch::from_bits(topic.position().epoch().bits() ^ 1);
        let broker = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || {
                // The broker lost the history: the copy starts over, then the
                // new epoch's first event arrives.
                for waker in topic.rebase(epoch, 0).into_iter().flatten() {
                    waker.wake();
                }
                publish(&topic, &config, 2);
            })
        };
        let mut got = Vec::new();
        while got.last() != Some(&data(2)) && got.len() < 3 {
            got.extend(read(&topic, &mut reader, &config, 1));
        }
        broker.join().unwrap();
        let reset = format!("event: reset\nid: 0-{epoch}\ndata: {{\"after\":\"0-{epoch}\"}}\n\n");
        // Event 1 if it was read before the rebase (else it is gone with the
        // old history, which the reset says), then the reset, then event 2:
        // never a hang, never event 1 after the reset.
        let with_first = [data(1), reset.clone(), data(2)];
        let without = [reset, data(2)];
        assert!(got == with_first || got == without, "{got:?}");
    });
}

#[test]
fn one_step_and_two_step_publishes_interleave() {
    // `append` (reserve and commit in one step) beside a publisher holding a
    // reserved slot: the reader gets both, once each, in offset order, and is
    // woken for each (a reserved slot before an appended one holds it back).
    loom::model(|| {
        let config = Arc::new(HubConfig::new().lag(Lag::Skip));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut cursor = Cursor::new(&topic.subscribe(None).unwrap());
        let two_step = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || publish(&topic, &config, 1))
        };
        let one_step = {
            let (topic, config) = (topic.clone(), config.clone());
            thread::spawn(move || append(&topic, &config, 2))
        };
        let got = read(&topic, &mut cursor, &config, 2);
        two_step.join().unwrap();
        one_step.join().unwrap();
        assert_eq!(data_of(&got), [data(1), data(2)]);
    });
}

#[test]
fn two_one_step_publishes_reach_a_waiting_reader() {
    loom::model(|| {
        let config = Arc::new(HubConfig::new().lag(Lag::Skip));
        let topic = Arc::new(Topic::new(Arc::from("t"), Instant::now()));
        let mut cursor = Cursor::new(&topic.subscribe(None).unwrap());
        let publishers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let (topic, config) = (topic.clone(), config.clone());
                thread::spawn(move || append(&topic, &config, n))
            })
            .collect();
        let got = read(&topic, &mut cursor, &config, 2);
        for p in publishers {
            p.join().unwrap();
        }
        // In offset order: the first id is offset 1.
        assert!(got[0].starts_with("id: 1-"), "{got:?}");
        assert!(got[1].starts_with("id: 2-"), "{got:?}");
        assert_eq!(data_of(&got), [data(1), data(2)]);
    });
}
