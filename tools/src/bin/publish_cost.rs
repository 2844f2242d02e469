//! Instructions per publish, the hub against `tokio::sync::broadcast`, for
//! `valgrind --tool=callgrind` (immune to the wall-clock noise of a shared
//! machine; one thread, so it counts the work and not the contention, which
//! the criterion bench `publish from 2 threads` measures).
//!
//! ```sh
//! cargo build --release -p tower-sse-tools --bin publish_cost
//! tools/publish_cost.sh      # counts the three at 1, 16 and 1 024 topics
//! ```
//!
//! `publish_cost hub TOPICS N` publishes N chat messages round robin over
//! TOPICS topics of one `Hub`, each topic with a subscriber that does not
//! read (so every publish past the history's length evicts the oldest
//! event); `publish_cost publisher TOPICS N` does the same through one
//! `Publisher` per topic (`Hub::publisher`: the topic found once);
//! `publish_cost hub-prometheus TOPICS N` (built with `--features metrics`)
//! is `hub` with the hub's metrics recorded by the Prometheus exporter;
//! `publish_cost broadcast TOPICS N` sends the same event, encoded by
//! tower-sse, to one `broadcast` channel of capacity 1 024 per topic, as the
//! criterion bench's anchor does. Each run first fills every topic's history
//! (1 024 events: the default `history_len`, and the channels' capacity), so
//! that the publishes counted are the steady state a long-running topic is
//! in, each dropping the oldest event as it stores one. Two counts per side,
//! N = 10 000 and 30 000, cancel the start-up and the filling: the difference
//! divided by 20 000 is the cost of one publish.

use std::hint::black_box;

use futures_util::FutureExt;
use tower_sse::Event;
use tower_sse_hub::Hub;

/// Events a topic's history holds by default (and the channels' capacity).
const FULL: usize = 1_024;

/// The chat message of the criterion bench.
const DATA: &str = r#"{"id":1,"room":"lobby","name":"alice","text":"hello everyone, how is it going today?","ts":1795460162100}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(kind), Some(topics), Some(n)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: publish_cost hub|hub-prometheus|publisher|broadcast TOPICS N");
        std::process::exit(2);
    };
    let topics: usize = topics.parse().expect("TOPICS: a number");
    let n: usize = n.parse().expect("N: a number");
    // The filling of the histories, then the publishes counted.
    let n = topics * FULL + n;
    let names: Vec<String> = (0..topics).map(|t| format!("topic-{t}")).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    match kind.as_str() {
        "hub" | "hub-prometheus" => {
            if kind == "hub-prometheus" {
                install_prometheus();
            }
            let (hub, _subs) = subscribed_hub(&names);
            for i in 0..n {
                let published = hub.publish(&names[i % topics], Event::message(DATA));
                black_box(published.now_or_never().unwrap().unwrap());
            }
        }
        "publisher" => {
            let (hub, _subs) = subscribed_hub(&names);
            let mut publishers: Vec<_> = names.iter().map(|t| hub.publisher(t)).collect();
            for i in 0..n {
                let published = publishers[i % topics].publish(Event::message(DATA));
                black_box(published.now_or_never().unwrap().unwrap());
            }
        }
        "broadcast" => {
            let channels: Vec<_> = (0..topics)
                .map(|_| tokio::sync::broadcast::channel::<tower_sse::EncodedEvent>(FULL))
                .collect();
            for i in 0..n {
                let (tx, _) = &channels[i % topics];
                black_box(tx.send(Event::message(DATA).encode()).unwrap());
            }
        }
        other => {
            eprintln!("unknown kind {other}: hub, hub-prometheus, publisher or broadcast");
            std::process::exit(2);
        }
    }
}

/// The hub's publish counter recorded by the Prometheus exporter, installed
/// before the hub is made (as it must be).
#[cfg(feature = "metrics")]
fn install_prometheus() {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("a recorder");
}

#[cfg(not(feature = "metrics"))]
fn install_prometheus() {
    eprintln!("hub-prometheus: build with --features metrics");
    std::process::exit(2);
}

/// A hub whose every topic of `names` has a subscriber that does not read.
fn subscribed_hub(names: &[String]) -> (Hub, Vec<tower_sse_hub::Subscriber>) {
    let hub = Hub::new();
    let subs = names
        .iter()
        .map(|t| hub.subscribe(t, None).now_or_never().unwrap().unwrap())
        .collect();
    (hub, subs)
}
