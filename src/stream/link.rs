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
        Arc, Mutex, OnceLock,
    },
};

use crate::{stream::end::EndReason, stream::heartbeat::KeepAlive};

/// Shared by the layer's body and the `SseBody` inside it (an `Arc`, one
/// strong count on each side).
///
/// The two sides normally run on the same task, one inside the other's poll
/// (the layer's body polls the inner body, and drops it), so the order of
/// their steps is program order; the atomics and the lock are there because a
/// body must be `Send + Sync`, and their orderings keep each flag's meaning
/// should the sides ever run on different threads.
#[derive(Debug, Default)]
pub(crate) struct Link {
    /// The body has been polled: it is inside the response, and writes
    /// heartbeats. Set once by the body's first poll (`Release`), read by the
    /// layer before each heartbeat decision (`Acquire`); never cleared.
    polled: AtomicBool,
    /// A layer wraps the stream: it records the stream's metrics and span. Set
    /// once by the layer when the response becomes a stream (`Release`, after
    /// `keep_alive`, so a side that sees it set finds the heartbeat too), read
    /// by the body on its first poll (`Acquire`).
    layered: AtomicBool,
    /// The layer's heartbeat, for a body that was given none. Written once, by
    /// the layer, before `layered`; a `OnceLock`, so reading it needs no lock.
    keep_alive: OnceLock<KeepAlive>,
    /// The first end reason either side recorded other than `ClientGone`.
    /// Written at most once, read and decided on under this lock only, in
    /// [`Outcome::reason`](crate::stream::end::Outcome::reason) (through
    /// [`first_reason`](Self::first_reason)), so the side that ends
    /// first wins whatever the threads.
    reason: Mutex<Option<EndReason>>,
}

/// A response extension carrying the body's link (set by `into_response`).
#[derive(Clone, Debug)]
pub(crate) struct LinkExt(pub(crate) Arc<Link>);

/// Whether a layer on this thread offers a link to the next body made.
enum Offer {
    /// No link is offered: no layer is handling a request here, or the one
    /// that is already has its body's link.
    Closed,
    /// A layer is handling a request and no body has been made yet: the next
    /// [`Link::claim`] takes a link.
    Open,
    /// The first body made meanwhile claimed this link; the layer picks it up
    /// when its `listen` returns.
    Claimed(Arc<Link>),
}

thread_local! {
    /// The layer's offer to the body being made on this thread, while the
    /// layer's service calls (or polls) the inner service.
    ///
    /// A thread-local, because the body can be made by any constructor, in any
    /// code the handler calls (`SseBody::new`, `response(body)`, axum's
    /// `IntoResponse`), none of which sees the layer or the request; the layer
    /// only knows that the body is made inside its call. It stays correct
    /// because the offer is open only for the span of that call on this
    /// thread: [`Link::listen`] sets it and restores the previous one after
    /// (a guard, so on panic too, and nested layers each see their own), and a
    /// body made on another thread (a spawned task) finds it closed and is
    /// found through [`LinkExt`] instead. A `RefCell`: only this thread ever
    /// touches it, and never re-entrantly (no user code runs while borrowed).
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

    /// The slot of the first end reason either side recorded, decided on and
    /// written under its lock by
    /// [`Outcome::reason`](crate::stream::end::Outcome::reason).
    pub(crate) fn first_reason(&self) -> &Mutex<Option<EndReason>> {
        &self.reason
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
                if let (Offer::Claimed(link), None) = (seen, &self.found) {
                    *self.found = Some(link);
                }
            }
        }
        let offer = match found {
            Some(_) => Offer::Closed,
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
            *offer = Offer::Claimed(link.clone());
            Some(link)
        })
    }
}
