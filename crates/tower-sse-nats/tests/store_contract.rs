//! The store contract (`tower_sse_hub::contract`) on a [`NatsStore`], against
//! the `nats-server -js` at `NATS_URL` (default `127.0.0.1:4222`; `SKIP`
//! without one, a failure when `CI` is set). Losing a topic's history is its
//! stream deleted, as a server restarted on memory storage leaves it.

mod support;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tower_sse_hub::{contract::Lose, Hub, HubConfig};
use tower_sse_nats::{NatsBroker, NatsConfig, NatsStore};

/// One prefix for the whole run, so that `lose` finds the hubs' streams.
fn nats_config(url: &str) -> NatsConfig {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| support::prefix("contract"));
    NatsConfig::new(url)
        .prefix(prefix.clone())
        .memory_storage(true)
        .timeout(Duration::from_secs(2))
}

async fn hub(config: HubConfig) -> Option<Hub> {
    let url = support::server().await?;
    let store = NatsStore::connect(nats_config(&url), config).await.unwrap();
    Some(Hub::with_store(store))
}

fn lose() -> Option<Lose> {
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(url) = support::server().await else {
                    return;
                };
                let broker = NatsBroker::connect(nats_config(&url)).await.unwrap();
                let name = broker.stream_name(&topic);
                broker.jetstream().delete_stream(&name).await.unwrap();
            })
        },
    ))
}

tower_sse_hub::contract_tests!(nats, |config| hub(config).await, lose());
