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

fn lose() -> Option<Lose> {
    Some(Arc::new(
        |topic: String| -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move {
                let Some(url) = redis_support::shared().await else {
                    return;
                };
                let pattern = format!("*:{{{topic}}}:*");
                let keys: Vec<String> =
                    redis_support::command(&url, ::redis::cmd("KEYS").arg(&pattern)).await;
                for key in keys {
                    let _: i64 = redis_support::command(&url, ::redis::cmd("DEL").arg(&key)).await;
                }
            })
        },
    ))
}

tower_sse_hub::contract_tests!(redis, |config| hub(config).await, lose());
