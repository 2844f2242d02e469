//! The store contract (`tower_sse_hub::contract`) on a [`RedisStore`], on the
//! shared Redis of `.ci/run` (`REDIS_URL`), with a key prefix of its own per
//! test. Losing a topic's history is its keys deleted, as a Redis restarted
//! empty or flushed leaves them.

mod redis_support;

use std::{future::Future, pin::Pin, sync::Arc};

use tower_sse_hub::{contract::Lose, Hub, HubConfig};

async fn hub(config: HubConfig) -> Option<Hub> {
    let url = redis_support::shared().await?;
    Some(redis_support::node(
        &url,
        &redis_support::prefix("contract"),
        config,
    ))
}

/// Deletes every key of `topic` on the server at `url`.
async fn delete_topic(url: &str, topic: &str) {
    let pattern = format!("*:{{{topic}}}:*");
    let keys: Vec<String> = redis_support::command(url, ::redis::cmd("KEYS").arg(&pattern)).await;
    for key in keys {
        let _: i64 = redis_support::command(url, ::redis::cmd("DEL").arg(&key)).await;
    }
}

fn lose() -> Option<Lose> {
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(url) = redis_support::shared().await else {
                    return;
                };
                delete_topic(&url, &topic).await;
            })
        },
    ))
}

tower_sse_hub::contract_tests!(redis, |config| hub(config).await, lose());

/// The same contract with topics spread over two Redis "servers" by
/// rendezvous hashing: databases 1 and 2 of the shared server, which the
/// store sees as two URLs (one connection and one Pub/Sub link each).
async fn sharded_hub(config: HubConfig) -> Option<Hub> {
    let url = redis_support::shared().await?;
    let urls = sharded_urls(&url);
    Some(redis_support::node(
        &urls.join(","),
        &redis_support::prefix("contract-sharded"),
        config,
    ))
}

fn sharded_urls(url: &str) -> [String; 2] {
    let base = url.trim_end_matches('/');
    [format!("{base}/1"), format!("{base}/2")]
}

fn lose_sharded() -> Option<Lose> {
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(url) = redis_support::shared().await else {
                    return;
                };
                for url in sharded_urls(&url) {
                    delete_topic(&url, &topic).await;
                }
            })
        },
    ))
}

tower_sse_hub::contract_tests!(
    redis_sharded,
    |config| sharded_hub(config).await,
    lose_sharded()
);
