//! The link between an [`SseBody`](crate::SseBody) and the layer around it, so a
//! stream has one heartbeat writer and one true end reason.
//!
//! While its inner service handles a request (its `call` and each poll of its
//! future), the layer listens on the thread: the first `SseBody` made then
//! links itself, so a body built by any constructor (`SseBody::new`,
//! `response(body)`, `into_response`, axum's `IntoResponse`) is found. [`SseBody::into_response`](crate::SseBody::into_response)
//! also puts the body's link in the response's extensions, for bodies made
//! elsewhere (a spawned task). Through the link:
//!
//! - the layer hands the body its [`KeepAlive`], used unless the body was given
//!   one itself, and writes no heartbeat of its own once the body is polled;
//! - the end reason is shared: the layer's reason (shutdown, lifetime) replaces
//!   the `ClientGone` the inner body reports when it is dropped, and the inner
//!   body's reason (a failure, its own shutdown) is the layer's when the body ends.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
};

use crate::{EndReason, KeepAlive};

#[derive(Debug, Default)]
pub(crate) struct Link {
    /// The body has been polled: it is inside the response, and writes heartbeats.
    polled: AtomicBool,
    /// A layer wraps the stream: it records the stream's metrics and span.
    layered: AtomicBool,
    /// The layer's heartbeat, for a body that was given none.
    keep_alive: OnceLock<KeepAlive>,
    /// The first end reason either side recorded.
    reason: Mutex<Option<EndReason>>,
}

/// A response extension carrying the body's link (set by `into_response`).
#[derive(Clone, Debug)]
pub(crate) struct LinkExt(pub(crate) Arc<Link>);

/// What the layer listening on this thread has seen.
enum Offer {
    /// No layer is handling a request here.
    Closed,
    /// A layer is handling a request; no body has been made yet.
    Open,
    /// The first body made has linked itself (or the layer already has a body).
    Taken(Option<Arc<Link>>),
}

thread_local! {
    static OFFER: RefCell<Offer> = const { RefCell::new(Offer::Closed) };
}

impl Link {
    pub(crate) fn mark_polled(&self) {
        self.polled.store(true, Ordering::Release);
    }

    pub(crate) fn is_polled(&self) -> bool {
        self.polled.load(Ordering::Acquire)
    }

    pub(crate) fn mark_layered(&self, keep_alive: &KeepAlive) {
        let _ = self.keep_alive.set(keep_alive.clone());
        self.layered.store(true, Ordering::Release);
    }

    pub(crate) fn is_layered(&self) -> bool {
        self.layered.load(Ordering::Acquire)
    }

    pub(crate) fn keep_alive(&self) -> Option<&KeepAlive> {
        self.keep_alive.get()
    }

    /// The reason recorded so far, if any.
    pub(crate) fn reason(&self) -> Option<EndReason> {
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the end: `ClientGone` (a dropped body) gives way to a reason the
    /// other side recorded first; any other reason is kept if it is the first.
    pub(crate) fn settle(&self, reason: EndReason) -> EndReason {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(first) if reason.is_client_gone() => first.clone(),
            Some(_) => reason,
            None => {
                if !reason.is_client_gone() {
                    *slot = Some(reason.clone());
                }
                reason
            }
        }
    }

    /// Runs `f` (the inner service's `call`, or a poll of its future) with a
    /// link open to the first body made meanwhile on this thread; that body's
    /// link ends up in `found`. Costs no allocation when no body is made.
    pub(crate) fn listen<R>(found: &mut Option<Arc<Link>>, f: impl FnOnce() -> R) -> R {
        struct Restore<'a> {
            prev: Option<Offer>,
            found: &'a mut Option<Arc<Link>>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let prev = self.prev.take().unwrap_or(Offer::Closed);
                let seen = OFFER.with(|o| o.replace(prev));
                if let (Offer::Taken(Some(link)), None) = (seen, &self.found) {
                    *self.found = Some(link);
                }
            }
        }
        let offer = match found {
            Some(_) => Offer::Taken(None),
            None => Offer::Open,
        };
        let prev = OFFER.with(|o| o.replace(offer));
        let _restore = Restore {
            prev: Some(prev),
            found,
        };
        f()
    }

    /// A link for a body being made while a layer listens (the first body only).
    pub(crate) fn claim() -> Option<Arc<Link>> {
        OFFER.with(|o| {
            let mut offer = o.borrow_mut();
            if !matches!(*offer, Offer::Open) {
                return None;
            }
            let link = Arc::new(Link::default());
            *offer = Offer::Taken(Some(link.clone()));
            Some(link)
        })
    }
}
