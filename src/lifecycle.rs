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
    keep_alive::Heartbeat,
    layer::Permit,
    shutdown::ShutdownListener,
    timer::{Deadline, Timer},
    tracker::Tracker,
    EndReason,
};

/// The grace period of a stream that reaches its lifetime mid-event.
const LIFETIME_GRACE: Duration = crate::Shutdown::DEFAULT_GRACE;

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
    pub(crate) tracker: Tracker,
    shutdown: Option<ShutdownListener>,
    /// The maximum lifetime, and the frame written when it is reached.
    lifetime: Option<Box<(Deadline, Option<Bytes>)>>,
    /// A stop is due: its reason, the frame to write first (with its event count),
    /// and the grace deadline, armed while the stream is not at a boundary.
    stopping: Option<Box<Stop>>,
    /// The last frame was written (or, for `SseBody`, is owed): the stream ends
    /// at the next poll that has nothing else to write.
    pub(crate) ending: Option<EndReason>,
    /// The layer's slot in its stream count, freed at the end.
    permit: Option<Permit>,
}

struct Stop {
    reason: EndReason,
    last: Option<(Bytes, u64)>,
    grace: Deadline,
}

impl Lifecycle {
    pub(crate) fn new(tracker: Tracker, timer: Option<Arc<dyn Timer>>) -> Self {
        Self {
            heartbeat: None,
            timer,
            tracker,
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
        self.tracker.is_finished()
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
        if self.tracker.is_finished() {
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
                    self.tracker.sent(events, bytes.len());
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
                reason: EndReason::Shutdown,
                last,
                grace: Deadline::new(listener.grace()),
            }));
        } else if let Some(lifetime) = self.lifetime.as_mut() {
            let (deadline, frame) = &mut **lifetime;
            if deadline.poll_expired(self.timer.as_ref(), cx).is_ready() {
                self.stopping = Some(Box::new(Stop {
                    reason: EndReason::Lifetime,
                    last: frame.clone().map(|bytes| (bytes, 0)),
                    grace: Deadline::new(LIFETIME_GRACE),
                }));
            }
        }
    }

    /// Step 2: the producer gave `bytes` holding `events` complete events.
    pub(crate) fn data(&mut self, events: u64, bytes: usize) {
        self.tracker.sent(events, bytes);
        if let Some(heartbeat) = self.heartbeat.as_mut() {
            heartbeat.activity();
        }
    }

    /// Step 2: the stream ends after `last` (if any) is written.
    pub(crate) fn end_with(&mut self, last: Option<(Bytes, u64)>, reason: EndReason) -> Control {
        match last {
            Some((bytes, events)) => {
                self.tracker.sent(events, bytes.len());
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
                    self.tracker.heartbeat(beat.len());
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
    pub(crate) fn finish(&mut self, reason: EndReason) {
        // Leave the counts of live streams as soon as the stream is over.
        self.shutdown = None;
        self.permit = None;
        self.heartbeat = None;
        self.tracker.finish(reason);
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        // Dropped unfinished after a shutdown was triggered: the server closed the
        // connection at the end of the grace period (a client that stopped
        // reading), or the client left meanwhile; either way the stream ended
        // because of the shutdown. (Otherwise the tracker reports `ClientGone`.)
        if !self.tracker.is_finished() && self.shutdown_triggered() {
            self.finish(EndReason::Shutdown);
        }
    }
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("heartbeat", &self.heartbeat)
            .field("tracker", &self.tracker)
            .field("shutdown", &self.shutdown)
            .field("stopping", &self.stopping.as_ref().map(|s| &s.reason))
            .finish_non_exhaustive()
    }
}
