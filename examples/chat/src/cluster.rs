//! The hub and presence: in this process, on Redis (`REDIS_URL`), on a Redis
//! Cluster (`REDIS_CLUSTER_URL`) or on NATS JetStream (`NATS_URL`), and the task that announces the `leave` of members
//! of nodes that died.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tower_sse_hub::{Hub, MemoryPresence, Presence};
use tower_sse_nats::{NatsBroker, NatsConfig, NatsPresence, NatsStore};
use tower_sse_redis::{RedisConfig, RedisPresence, RedisStore};

use crate::{
    config::Config,
    invalid_input,
    room::{hub_config, Chat},
};

/// The hub and presence the environment asks for: in this process, or shared
/// with the other nodes on Redis or NATS (then the app's
/// [`Options::announce_expired`](crate::routes::Options::announce_expired)
/// is to be set, to announce the members of nodes that died).
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
    Ok((hub, presence))
}

/// Every `every`, while the chat is up: announces the `leave` of the members
/// of nodes that died (or were cut off past `PRESENCE_TTL_MS`), and the `join`
/// of this node's members that were announced as gone that way and are still
/// here, through each room's presence batch (so a big room counts them).
pub(crate) async fn announce_expired(chat: Weak<Chat>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(chat) = chat.upgrade() else { return };
        // Unreachable: the entries stay queued for the next round.
        let expired = chat.presence.expired().await.unwrap_or_default();
        for (room, name) in expired {
            chat.announce_taken(&room, &name, false).await;
        }
        let restored = chat.presence.restored().await.unwrap_or_default();
        for (room, name) in restored {
            chat.announce_taken(&room, &name, true).await;
        }
    }
}
