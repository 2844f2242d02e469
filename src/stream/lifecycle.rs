//! One lifecycle for every stream: idle heartbeats, graceful shutdown (with a
//! grace period), a maximum lifetime and the end report, shared by
//! [`SseBody`](crate::SseBody) and the layer's body so they cannot drift.
//!
//! A body drives it in three steps around each poll of its producer:
//!
//! 1. [`poll_control`](Lifecycle::poll_control) before the producer: a frame to
//!    write (a last event, a `retry:` hint) or the end, once a shutdown or the
//!    lifetime asks for it and the stream is at an event boundary (or the grace
//!    period is over);
//! 2. [`data`](Lifecycle::data) or [`finish`](Lifecycle::finish) with what the
//!    producer gave;
//! 3. [`poll_idle`](Lifecycle::poll_idle) when the producer is pending: a
//!    heartbeat if one is due at a boundary, after registering for a shutdown.
//!
//! Once a stop is due, nothing registers with the shutdown again (it has fired:
//! registering would wake the task at once, a busy loop); the grace timer wakes
//! the stream instead.

use std::{sync::Arc, task::Context, time::Duration};

use bytes::Bytes;

use crate::{
    request_info::RequestInfo,
    stream::end::{EndHandle, EndReport, Outcome},
    stream::heartbeat::Heartbeat,
    stream::link::Link,
    stream::permit::Permit,
    stream::report::Reporter,
    stream::shutdown::ShutdownListener,
    timer::{Deadline, Timer},
};

/// The grace period of a stream that reaches its lifetime mid-event.
const LIFETIME_GRACE: Duration = crate::stream::shutdown::Shutdown::DEFAULT_GRACE;

/// What a body does next, decided by the lifecycle.
#[derive(Debug)]
pub(crate) enum Control {
    /// Write this frame (a last event or a `retry:` hint); the end follows.
    Write(Bytes),
    /// The stream is over: answer `None`.
    End,
}

pub(crate) struct Lifecycle {
    heartbeat: Option<Heartbeat>,
    timer: Option<Arc<dyn Timer>>,
    reporter: Reporter,
    shutdown: Option<ShutdownListener>,
    /// The maximum lifetime, and the frame written when it is reached.
    lifetime: Option<Box<(Deadline, Option<Bytes>)>>,
    /// A stop is due: its reason, the frame to write first (with its event count),
    /// and the grace deadline, armed while the stream is not at a boundary.
    stopping: Option<Box<Stop>>,
    /// The last frame was written (or, for `SseBody`, is left over to write):
    /// the stream ends at the next poll that has nothing else to write.
    ending: Option<Outcome>,
    /// The layer's slot in its stream count, freed at the end.
    permit: Option<Permit>,
}

struct Stop {
    reason: Outcome,
    last: Option<(Bytes, u64)>,
    grace: Deadline,
}

impl Lifecycle {
    pub(crate) fn new(reporter: Reporter, timer: Option<Arc<dyn Timer>>) -> Self {
        Self {
            heartbeat: None,
            timer,
            reporter,
            shutdown: None,
            lifetime: None,
            stopping: None,
            ending: None,
            permit: None,
        }
    }

    /// Heartbeats; a disabled `KeepAlive` (or none) writes none.
    pub(crate) fn set_heartbeat(&mut self, heartbeat: Option<Heartbeat>) {
        self.heartbeat = heartbeat.filter(Heartbeat::is_enabled);
    }

    pub(crate) fn set_timer(&mut self, timer: Arc<dyn Timer>) {
        self.timer = Some(timer);
    }

    pub(crate) fn set_shutdown(&mut self, listener: ShutdownListener) {
        self.shutdown = Some(listener);
    }

    pub(crate) fn set_lifetime(&mut self, after: Duration, frame: Option<Bytes>) {
        self.lifetime = Some(Box::new((Deadline::new(after), frame)));
    }

    pub(crate) fn lifetime_frame_mut(&mut self) -> Option<&mut Option<Bytes>> {
        self.lifetime.as_mut().map(|lifetime| &mut lifetime.1)
    }

    pub(crate) fn set_permit(&mut self, permit: Permit) {
        self.permit = Some(permit);
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.reporter.is_finished()
    }

    /// Whether the stream's last frame is out (or left over to write): it ends
    /// at the next poll with nothing else to write.
    pub(crate) fn is_ending(&self) -> bool {
        self.ending.is_some()
    }

    /// The frame in hand is the stream's last: it ends, for `outcome`, at the
    /// next poll with nothing else to write.
    pub(crate) fn end_after_frame(&mut self, outcome: Outcome) {
        self.ending = Some(outcome);
    }

    /// Counts the opening frame (a `retry:` hint, a comment): bytes, no event,
    /// and no activity for the heartbeat.
    pub(crate) fn opening(&mut self, bytes: usize) {
        self.reporter.sent(0, bytes);
    }

    /// Adds a callback run once with the end report.
    pub(crate) fn on_end(&mut self, f: impl FnOnce(EndReport) + Send + 'static) {
        self.reporter.on_end(f);
    }

    /// The stream's end handle (made on first use).
    pub(crate) fn end_handle(&self) -> &EndHandle {
        self.reporter.handle()
    }

    /// Reports the end to `handle`, one made before the stream.
    pub(crate) fn set_end_handle(&mut self, handle: EndHandle) {
        self.reporter.set_handle(handle);
    }

    /// The request the stream answers, for its report and span.
    pub(crate) fn set_request(&mut self, request: Arc<RequestInfo>) {
        self.reporter.set_request(request);
    }

    /// The link to the other side of a layer, if any.
    pub(crate) fn link(&self) -> Option<&Arc<Link>> {
        self.reporter.link()
    }

    /// The link to the other side of a layer, made now if there is none yet.
    pub(crate) fn link_or_new(&mut self) -> Arc<Link> {
        if let Some(link) = self.reporter.link() {
            return link.clone();
        }
        let link = Arc::new(Link::default());
        self.reporter.set_link(link.clone());
        link
    }

    /// Starts the stream's metrics and span (once).
    pub(crate) fn observe(&mut self) {
        self.reporter.observe();
    }

    /// Whether a shutdown has been triggered (a frame in hand goes out alone).
    pub(crate) fn shutdown_triggered(&self) -> bool {
        self.stopping.is_some() || self.shutdown.as_ref().is_some_and(|l| l.is_triggered())
    }

    /// Step 1, before polling the producer: `Some` when the lifecycle decides.
    pub(crate) fn poll_control(
        &mut self,
        at_boundary: bool,
        cx: &mut Context<'_>,
    ) -> Option<Control> {
        if self.reporter.is_finished() {
            return Some(Control::End);
        }
        if let Some(reason) = self.ending.take() {
            self.finish(reason);
            return Some(Control::End);
        }
        if self.stopping.is_none() {
            self.check_stop(cx);
        }
        let stop = self.stopping.as_mut()?;
        if at_boundary {
            let stop = self.stopping.take()?;
            return Some(match stop.last {
                Some((bytes, events)) => {
                    self.reporter.sent(events, bytes.len());
                    self.ending = Some(stop.reason);
                    Control::Write(bytes)
                }
                None => {
                    self.finish(stop.reason);
                    Control::End
                }
            });
        }
        // Mid-event: wait for the boundary, but no longer than the grace period.
        if stop.grace.poll_expired(self.timer.as_ref(), cx).is_ready() {
            let reason = stop.reason.clone();
            self.stopping = None;
            self.finish(reason);
            return Some(Control::End);
        }
        None
    }

    fn check_stop(&mut self, cx: &mut Context<'_>) {
        if let Some(listener) = self.shutdown.as_ref().filter(|l| l.is_triggered()) {
            let last = listener.final_frame().map(|bytes| (bytes, 1));
            self.stopping = Some(Box::new(Stop {
                reason: Outcome::ShutDown,
                last,
                grace: Deadline::new(listener.grace()),
            }));
        } else if let Some(lifetime) = self.lifetime.as_mut() {
            let (deadline, frame) = &mut **lifetime;
            if deadline.poll_expired(self.timer.as_ref(), cx).is_ready() {
                self.stopping = Some(Box::new(Stop {
                    reason: Outcome::LifetimeReached,
                    last: frame.clone().map(|bytes| (bytes, 0)),
                    grace: Deadline::new(LIFETIME_GRACE),
                }));
            }
        }
    }

    /// Step 2: the producer gave `bytes` holding `events` complete events.
    pub(crate) fn data(&mut self, events: u64, bytes: usize) {
        self.reporter.sent(events, bytes);
        if let Some(heartbeat) = self.heartbeat.as_mut() {
            heartbeat.activity();
        }
    }

    /// Step 2: the stream ends after `last` (if any) is written.
    pub(crate) fn end_with(&mut self, last: Option<(Bytes, u64)>, reason: Outcome) -> Control {
        match last {
            Some((bytes, events)) => {
                self.reporter.sent(events, bytes.len());
                self.ending = Some(reason);
                Control::Write(bytes)
            }
            None => {
                self.finish(reason);
                Control::End
            }
        }
    }

    /// Step 3, the producer is pending: a heartbeat if one is due.
    pub(crate) fn poll_idle(&mut self, at_boundary: bool, cx: &mut Context<'_>) -> Option<Bytes> {
        if self.stopping.is_some() {
            // The grace timer (registered in step 1) wakes the stream.
            return None;
        }
        if at_boundary {
            if let Some(heartbeat) = self.heartbeat.as_mut() {
                if let Some(beat) = heartbeat.poll_due(self.timer.as_ref(), cx) {
                    self.reporter.heartbeat(beat.len());
                    return Some(beat);
                }
            }
        }
        if let Some(listener) = self.shutdown.as_ref() {
            listener.register(cx);
        }
        None
    }

    /// Reports the end now; later calls do nothing.
    pub(crate) fn finish(&mut self, reason: Outcome) {
        // Leave the counts of live streams as soon as the stream is over.
        self.shutdown = None;
        self.permit = None;
        self.heartbeat = None;
        self.reporter.finish(reason);
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        // Dropped unfinished with a stop due: reported here, where that is
        // known (`Outcome::reason` decides what it means). Otherwise the
        // reporter reports its drop itself, as the fields drop (after this, so
        // the permit and the shutdown count are still held then, as always).
        if !self.reporter.is_finished() && self.shutdown_triggered() {
            self.finish(Outcome::Dropped { stop_due: true });
        }
    }
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("heartbeat", &self.heartbeat)
            .field("reporter", &self.reporter)
            .field("shutdown", &self.shutdown)
            .field("stopping", &self.stopping.as_ref().map(|s| &s.reason))
            .finish_non_exhaustive()
    }
}
