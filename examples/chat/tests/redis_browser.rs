//! Two Chromium pages on two nodes of the chat (two servers sharing Redis)
//! chat with each other through the real page (`tests/browser/cluster.test.mjs`).
//! Needs Redis (see `redis_support`), Node with `npm ci` in `tests/browser`, and
//! Chromium; SKIP without them unless `CI` is set.

#[allow(dead_code)]
#[path = "../../../tests/browser_support/mod.rs"]
mod browser_support;
#[path = "../../../crates/tower-sse-redis/tests/redis_support/mod.rs"]
mod redis_support;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use browser_support::{chromium, run_with};
use redis_support::{prefix, shared};
use tower_sse::Shutdown;
use tower_sse_hub::Hub;
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

async fn node(url: &str, prefix: &str) -> SocketAddr {
    let store = RedisStore::new(RedisConfig::new(url).prefix(prefix)).unwrap();
    let presence = Arc::new(RedisPresence::new(&store, Duration::from_secs(30)));
    let app = chat::app_with(
        Duration::from_secs(15),
        &Shutdown::new(),
        Hub::with_store(store),
        presence,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_on_two_nodes_chat() {
    let Some(chromium) = chromium() else { return };
    let Some(url) = shared().await else { return };
    let prefix = prefix("browser");
    let first = node(&url, &prefix).await;
    let second = node(&url, &prefix).await;
    let second = format!("http://{second}");
    let env = [("CHAT_URL_2", second.as_str())];
    run_with(
        &chromium,
        "cluster.test.mjs",
        format!("http://{first}"),
        None,
        &env,
    )
    .await;
}
