//! The hub and presence: in this process, on Redis (`REDIS_URL`), on a Redis
//! Cluster (`REDIS_CLUSTER_URL`) or on NATS JetStream (`NATS_URL`), and the task that announces the `leave` of members
//! of nodes that died.

use std::{sync::Arc, time::Duration};

use tower_sse_hub::{Hub, MemoryPresence, Presence};
use tower_sse_nats::{NatsBroker, NatsConfig, NatsPresence, NatsStore};
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

use crate::{
    config::Config,
    invalid_input,
    room::{hub_config, presence_event},
};

/// The hub and presence the environment asks for: in this process, or shared
/// with the other nodes on Redis or NATS (then a task announces the `leave` of
/// members of nodes that died, and the `join` of this node's members announced
/// gone while it was cut off).
///
/// # Errors
///
/// A URL that is not one.
pub async fn connect(config: &Config) -> std::io::Result<(Hub, Arc<dyn Presence>)> {
    let ttl = config.presence_ttl;
    let redis = match (&config.redis_url, &config.redis_cluster_url) {
        (Some(urls), _) => Some(("REDIS_URL", RedisConfig::new(urls))),
        (None, Some(urls)) => Some(("REDIS_CLUSTER_URL", RedisConfig::cluster(urls))),
        (None, None) => None,
    };
    let (hub, presence): (Hub, Arc<dyn Presence>) = if let Some((var, redis)) = redis {
        let redis = redis.prefix("chat").hub(hub_config());
        let store = RedisStore::new(redis).map_err(|e| invalid_input(format!("{var}: {e}")))?;
        let presence = RedisPresence::new(&store, ttl);
        (Hub::with_store(store), Arc::new(presence))
    } else if let Some(url) = &config.nats_url {
        let nats = NatsConfig::new(url).prefix("chat");
        let timeout = nats.get_timeout();
        let broker = NatsBroker::connect(nats)
            .await
            .map_err(|e| invalid_input(format!("NATS_URL: {e}")))?;
        let presence = NatsPresence::with_broker(&broker, ttl);
        let store = NatsStore::with_broker(broker, hub_config(), timeout);
        (Hub::with_store(store), Arc::new(presence))
    } else {
        let hub = Hub::with_config(hub_config());
        return Ok((hub, Arc::new(MemoryPresence::new())));
    };
    tokio::spawn(announce_expired(hub.clone(), presence.clone(), ttl / 3));
    Ok((hub, presence))
}

/// Every `every`: publishes the `leave` of the members of nodes that died (or
/// were cut off from Redis past `PRESENCE_TTL_MS`), and the `join` of this
/// node's members that were announced as gone that way and are still here.
pub async fn announce_expired(hub: Hub, presence: Arc<dyn Presence>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Redis unreachable: the entries stay queued for the next round.
        let expired = presence.expired().await.unwrap_or_default();
        for (room, name) in expired {
            let _ = hub
                .publish_with(&room, |id| presence_event("leave", id, &room, &name))
                .await;
        }
        let restored = presence.restored().await.unwrap_or_default();
        for (room, name) in restored {
            let _ = hub
                .publish_with(&room, |id| presence_event("join", id, &room, &name))
                .await;
        }
    }
}
