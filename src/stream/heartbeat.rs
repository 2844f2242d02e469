//! [`KeepAlive`]: heartbeat comments sent while a stream is idle.

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;

use crate::{
    event::EncodedEvent,
    timer::{Sleep, Timer},
};

/// How heartbeats are sent: a comment written while the stream is idle, so that
/// proxies do not time the connection out and a vanished client is noticed by the
/// failed write.
///
/// The interval restarts after every event: a stream that sends events more often
/// than the interval never sends a heartbeat. A heartbeat is only ever written
/// between two events. The default is a `:` comment every 15 seconds.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_sse::KeepAlive;
///
/// let keep_alive = KeepAlive::new()
///     .interval(Duration::from_secs(10))
///     .text("ping");
/// assert_eq!(keep_alive.frame(), Some(b": ping\n\n".as_slice()));
/// assert_eq!(KeepAlive::disabled().frame(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KeepAlive {
    interval: Duration,
    /// `None` when disabled.
    frame: Option<Bytes>,
}

impl KeepAlive {
    /// The default interval, 15 seconds.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

    /// Heartbeats every 15 seconds, as an empty comment (`:` and a blank line).
    pub fn new() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            frame: Some(Bytes::from_static(b":\n\n")),
        }
    }

    /// No heartbeats from this setting.
    ///
    /// On an [`SseLayer`](crate::SseLayer), the layer writes none. On an
    /// [`SseBody`](crate::SseBody), the body writes none of its own: under an
    /// `SseLayer` the layer's heartbeats still apply, and without a layer the
    /// stream has none (see [the heartbeat rule](crate::layer#one-heartbeat-rule)).
    /// The one way to have no heartbeats on a stream, under a layer too, is
    /// [`SseBody::without_heartbeats`](crate::SseBody::without_heartbeats).
    pub fn disabled() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            frame: None,
        }
    }

    /// Sets the idle time after which a heartbeat is sent. A zero interval is
    /// raised to one millisecond, so an idle stream cannot spin.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets the comment text of the heartbeat (line breaks become several comment
    /// lines). Also enables heartbeats if they were disabled.
    pub fn text(mut self, text: &str) -> Self {
        self.frame = Some(EncodedEvent::comment(text).into_bytes());
        self
    }

    /// The idle time after which a heartbeat is sent.
    pub fn get_interval(&self) -> Duration {
        self.interval
    }

    /// The bytes of one heartbeat, or `None` when disabled.
    pub fn frame(&self) -> Option<&[u8]> {
        self.frame.as_deref()
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepAlive")
            .field("interval", &self.interval)
            .field("frame", &self.frame.as_deref().map(String::from_utf8_lossy))
            .finish()
    }
}

/// What an [`SseBody`](crate::SseBody) was told about its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyHeartbeat {
    /// Nothing: the default [`KeepAlive`].
    Unset,
    /// [`SseBody::keep_alive`](crate::SseBody::keep_alive) with heartbeats on.
    Own,
    /// [`SseBody::keep_alive`](crate::SseBody::keep_alive) with
    /// [`KeepAlive::disabled`]: the body sends none of its own.
    Disabled,
    /// [`SseBody::without_heartbeats`](crate::SseBody::without_heartbeats): no
    /// heartbeats on the stream, whoever would write them.
    Never,
}

/// Whose [`KeepAlive`] a stream's one heartbeat writer uses.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeartbeatSource<'a> {
    /// The body's own setting (default or set).
    Body,
    /// The layer's setting.
    Layer(&'a KeepAlive),
    /// No heartbeats at all.
    Nothing,
}

/// The heartbeat rule, decided here and nowhere else (documented in
/// [`crate::layer`], "One heartbeat rule"): `layer` is the `KeepAlive` of the
/// [`SseLayer`](crate::SseLayer) around the body, if one is linked to it.
///
/// 1. `without_heartbeats()`: none, with or without a layer;
/// 2. a `KeepAlive` with heartbeats on, set on the body: the body's;
/// 3. otherwise (nothing set, or `KeepAlive::disabled()`): the layer's, if
///    there is a layer; else the body's default when nothing was set, and none
///    after `disabled()`.
pub(crate) fn heartbeat_rule(
    body: BodyHeartbeat,
    layer: Option<&KeepAlive>,
) -> HeartbeatSource<'_> {
    match (body, layer) {
        (BodyHeartbeat::Never, _) => HeartbeatSource::Nothing,
        (BodyHeartbeat::Own, _) => HeartbeatSource::Body,
        (BodyHeartbeat::Unset | BodyHeartbeat::Disabled, Some(layer)) => {
            HeartbeatSource::Layer(layer)
        }
        (BodyHeartbeat::Unset, None) => HeartbeatSource::Body,
        (BodyHeartbeat::Disabled, None) => HeartbeatSource::Nothing,
    }
}

/// The per-stream heartbeat state: one lazily made sleep, re-armed in place.
///
/// Instead of resetting the timer after every event (a timer-wheel operation per
/// event), the stream marks itself active, and the sleep is re-armed once, when the
/// stream goes idle. That is when the idle interval starts, so the result is the
/// same as a reset per event, at one reset per burst.
pub(crate) struct Heartbeat {
    config: KeepAlive,
    sleep: Option<Pin<Box<dyn Sleep>>>,
    active: bool,
}

impl Heartbeat {
    pub(crate) fn new(config: KeepAlive) -> Self {
        Self {
            config,
            sleep: None,
            active: false,
        }
    }

    /// Whether heartbeats are on (a frame is configured).
    pub(crate) fn is_enabled(&self) -> bool {
        self.config.frame.is_some()
    }

    /// Records that the stream just produced something: the idle interval restarts.
    pub(crate) fn activity(&mut self) {
        self.active = true;
    }

    /// Called when the stream is idle (pending): the heartbeat frame if one is due.
    pub(crate) fn poll_due(
        &mut self,
        timer: Option<&Arc<dyn Timer>>,
        cx: &mut Context<'_>,
    ) -> Option<Bytes> {
        let frame = self.config.frame.as_ref()?;
        let timer = timer?;
        let interval = self.config.interval;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if std::mem::take(&mut self.active) {
                    sleep.as_mut().reset(interval);
                }
                sleep
            }
            None => {
                self.active = false;
                self.sleep.insert(timer.sleep(interval))
            }
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                // The caller polls again after a frame; the re-armed sleep registers then.
                sleep.as_mut().reset(interval);
                Some(frame.clone())
            }
            Poll::Pending => None,
        }
    }
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("config", &self.config)
            .field("armed", &self.sleep.is_some())
            .finish()
    }
}
