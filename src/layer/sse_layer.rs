use std::{sync::Arc, time::Duration};

use http::HeaderValue;
use tower_layer::Layer;

use super::{
    config::{Config, Lifetime, Limit},
    Sse,
};
use crate::{
    stream::end::EndReport, stream::heartbeat::KeepAlive, stream::shutdown::Shutdown, timer::Timer,
};

/// Applies [`Sse`] to a service: makes every SSE response it returns
/// production-safe. See the [module docs](crate::layer) for what it does.
///
/// Builder methods take and return the layer by value. Every service made by the
/// layer (and by its unchanged clones) shares one count of live streams, for
/// [`max_streams`](Self::max_streams) and [`live_streams`](Self::live_streams);
/// a clone that is configured differently gets a count of its own.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::{KeepAlive, Shutdown, SseLayer};
///
/// let shutdown = Shutdown::new();
/// let layer = SseLayer::new()
///     .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
///     .max_streams(10_000, Duration::from_secs(5))
///     .max_lifetime(Duration::from_secs(3600), Duration::from_secs(2))
///     .with_shutdown(&shutdown)
///     .on_end(|report| eprintln!("stream ended: {}", report.reason));
/// assert_eq!(layer.live_streams(), 0);
/// ```
///
/// With axum: a route returning axum's own `Sse` gets headers, heartbeats and
/// end reports; stack it with compression (see `examples/axum.rs`).
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use axum::{response::sse, routing::get, Router};
/// use tower_sse::{KeepAlive, Shutdown, SseLayer};
///
/// let shutdown = Shutdown::new();
/// let app: Router = Router::new()
///     .route("/sse", get(|| async {
///         sse::Sse::new(futures_util::stream::pending::<Result<sse::Event, Infallible>>())
///     }))
///     .layer(
///         SseLayer::new()
///             .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
///             .max_streams(5_000, Duration::from_secs(10))
///             .with_shutdown(&shutdown),
///     );
/// ```
#[derive(Clone, Debug, Default)]
pub struct SseLayer {
    config: Arc<Config>,
}

impl SseLayer {
    /// Heartbeats every 15 s, `cache-control: no-cache, no-transform`, no limits.
    pub fn new() -> Self {
        Self::default()
    }

    fn config(&mut self) -> &mut Config {
        if Arc::get_mut(&mut self.config).is_none() {
            // A clone being configured differently: its streams are its own.
            let mut config = (*self.config).clone();
            config.live = Arc::default();
            self.config = Arc::new(config);
        }
        Arc::make_mut(&mut self.config)
    }

    /// The heartbeat of every stream through the layer; [`KeepAlive::disabled`]
    /// turns it off. An [`SseBody`](crate::SseBody) that set a heartbeat of its
    /// own wins over it; one that set nothing, or [`KeepAlive::disabled`], gets
    /// it; one that said
    /// [`without_heartbeats`](crate::SseBody::without_heartbeats) has none. See
    /// [the heartbeat rule](crate::layer#one-heartbeat-rule).
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.config().keep_alive = keep_alive;
        self
    }

    /// The `cache-control` set on SSE responses (default `no-cache, no-transform`).
    pub fn cache_control(mut self, value: HeaderValue) -> Self {
        self.config().cache_control = value;
        self
    }

    /// Calls `f` with the [`EndReport`] of every SSE response, once, when it
    /// ends for any reason (the client leaving included). Several callbacks all
    /// run, in the order they were added (as with [`SseBody::on_end`](crate::SseBody::on_end)).
    /// It runs where the body ends or is dropped, usually the connection's task:
    /// keep it short.
    pub fn on_end(mut self, f: impl Fn(EndReport) + Send + Sync + 'static) -> Self {
        self.config().on_end.push(Arc::new(f));
        self
    }

    /// Ends every live SSE response of the layer when `shutdown` is triggered, at
    /// the next event boundary, after the trigger's last event if any.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.config().shutdown = Some(shutdown.clone());
        self
    }

    /// Allows at most `max` SSE streams at once. Over it, the answer is
    /// `503 Service Unavailable` with `retry-after` (whole seconds, at least 1)
    /// from `retry_after`. See [the rule](crate::layer#concurrency-limit).
    pub fn max_streams(mut self, max: usize, retry_after: Duration) -> Self {
        self.config().limit = Some(Limit::new(max, retry_after));
        self
    }

    /// Ends each stream cleanly once it has been open for `lifetime`, at an event
    /// boundary, writing `retry: <retry in ms>` first so the client reconnects
    /// after `retry`, possibly to another server.
    pub fn max_lifetime(mut self, lifetime: Duration, retry: Duration) -> Self {
        self.config().lifetime = Some(Lifetime {
            after: lifetime,
            retry,
        });
        self
    }

    /// The timer for heartbeats and lifetimes (default: tokio's, with the `tokio`
    /// feature; without a timer both are off).
    pub fn timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.config().timer = Some(timer);
        self
    }

    /// SSE streams open right now through this layer's services.
    pub fn live_streams(&self) -> usize {
        self.config.live.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = Sse<S>;

    fn layer(&self, inner: S) -> Sse<S> {
        Sse::from_config(inner, self.config.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_configured_differently_counts_its_own_streams() {
        let a = SseLayer::new();
        let same = a.clone();
        let b = a.clone().max_streams(1, Duration::from_secs(1));
        let permit = a.config.try_acquire().unwrap();
        assert_eq!((a.live_streams(), same.live_streams()), (1, 1));
        assert_eq!(b.live_streams(), 0);
        let _b = b.config.try_acquire().unwrap();
        assert!(b.config.try_acquire().is_none());
        drop(permit);
        assert_eq!(a.live_streams(), 0);
    }
}
