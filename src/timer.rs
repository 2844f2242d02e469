//! [`Timer`]: where heartbeats and deadlines get their sleeps from.
//!
//! With the default `tokio` feature, [`TokioTimer`] is used and nothing needs to be
//! set. Without it (another runtime, or none), give the body or layer a `Timer` of
//! your own; with no timer at all, heartbeats and deadlines are off.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

/// A source of sleeps, implemented for the async runtime in use.
///
/// # Example
///
/// A timer for another runtime wraps its sleep type; here, tokio's, for brevity:
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use std::{pin::Pin, time::Duration};
/// use tower_sse::timer::{Sleep, Timer};
///
/// #[derive(Debug)]
/// struct MyTimer;
///
/// struct MySleep(Pin<Box<tokio::time::Sleep>>);
///
/// impl std::future::Future for MySleep {
///     type Output = ();
///     fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
///         self.0.as_mut().poll(cx)
///     }
/// }
///
/// impl Sleep for MySleep {
///     fn reset(mut self: Pin<&mut Self>, after: Duration) {
///         self.0.as_mut().reset(tokio::time::Instant::now() + after);
///     }
/// }
///
/// impl Timer for MyTimer {
///     fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>> {
///         Box::pin(MySleep(Box::pin(tokio::time::sleep(after))))
///     }
/// }
/// # }
/// ```
pub trait Timer: fmt::Debug + Send + Sync + 'static {
    /// A future that completes `after` from now.
    fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>>;
}

/// A sleep made by a [`Timer`]: a future that can be moved to a new deadline, so a
/// body re-arms one sleep instead of allocating a new one per heartbeat.
pub trait Sleep: Future<Output = ()> + Send + Sync {
    /// Moves the deadline to `after` from now; the sleep is pending again.
    fn reset(self: Pin<&mut Self>, after: Duration);
}

/// The timer of the default `tokio` feature, backed by `tokio::time`.
///
/// Needs a Tokio runtime with time enabled (`#[tokio::main]` has it). Paused time
/// (`tokio::time::pause`) is respected, which makes heartbeats testable. Polled
/// outside any Tokio runtime, its sleeps never complete (heartbeats and lifetimes
/// are then off) rather than panicking.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            Box::pin(tokio::time::sleep(after))
        } else {
            Box::pin(Never)
        }
    }
}

#[cfg(feature = "tokio")]
impl Sleep for tokio::time::Sleep {
    fn reset(self: Pin<&mut Self>, after: Duration) {
        tokio::time::Sleep::reset(self, deadline(after));
    }
}

/// `after` from now; a duration past what an `Instant` can hold (`Duration::MAX`)
/// means "about 30 years", as for `tokio::time::sleep`, never an overflow panic.
#[cfg(feature = "tokio")]
fn deadline(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// A sleep that never completes.
#[cfg(feature = "tokio")]
struct Never;

#[cfg(feature = "tokio")]
impl Future for Never {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

#[cfg(feature = "tokio")]
impl Sleep for Never {
    fn reset(self: Pin<&mut Self>, _: Duration) {}
}

/// The timer used when none is set: tokio's with the `tokio` feature, else none.
pub(crate) fn default_timer() -> Option<Arc<dyn Timer>> {
    #[cfg(feature = "tokio")]
    {
        // One shared allocation instead of one per stream.
        static TOKIO: std::sync::OnceLock<Arc<dyn Timer>> = std::sync::OnceLock::new();
        Some(TOKIO.get_or_init(|| Arc::new(TokioTimer)).clone())
    }
    #[cfg(not(feature = "tokio"))]
    {
        None
    }
}

/// A one-shot deadline armed on first poll, such as a stream's maximum lifetime.
pub(crate) struct Deadline {
    after: Duration,
    sleep: Option<Pin<Box<dyn Sleep>>>,
}

impl Deadline {
    pub(crate) fn new(after: Duration) -> Self {
        Self { after, sleep: None }
    }

    /// Ready once the deadline has passed; a missing timer means it never does.
    pub(crate) fn poll_expired(
        &mut self,
        timer: Option<&Arc<dyn Timer>>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let Some(timer) = timer else {
            return Poll::Pending;
        };
        let after = self.after;
        self.sleep
            .get_or_insert_with(|| timer.sleep(after))
            .as_mut()
            .poll(cx)
    }
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("after", &self.after)
            .field("armed", &self.sleep.is_some())
            .finish()
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn resetting_to_duration_max_does_not_panic() {
        let mut sleep = TokioTimer.sleep(Duration::MAX);
        sleep.as_mut().reset(Duration::MAX);
        tokio::time::advance(Duration::from_secs(86_400)).await;
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
    }
}
