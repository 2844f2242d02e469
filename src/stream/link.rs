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
//!
//! The same listening offers the request's [`EndHandle`] to a handler that asks
//! for it (the axum extractor, through [`claim_handle`]) when the layer did not
//! put one in the request's extensions: a plain request makes no handle unless
//! its handler wants one.

use std::{
    cell::{Cell, RefCell},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use crate::{stream::end::EndHandle, stream::end::EndReason, stream::heartbeat::KeepAlive};

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

/// What a layer listening on this thread offers, by kind: to the next body
/// made, its link; to a handler that asks, the request's end handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Offer {
    /// Nothing is offered: no layer is handling a request here, or the one
    /// that is has its body's link already, or put the handle in the
    /// request's extensions.
    #[default]
    Closed,
    /// A layer is handling a request and has none yet: the next
    /// [`Link::claim`] (or [`claim_handle`]) makes one.
    Open,
    /// Made while the layer listens, and kept in [`CLAIMED`]; the layer picks
    /// it up when its `listen` returns.
    Claimed,
}

/// The offers of the innermost layer listening on this thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offers {
    link: Offer,
    handle: Offer,
}

impl Offers {
    /// What a layer offers while it listens: a link unless it has one, and
    /// its handle as it holds it.
    #[inline]
    fn of(found: &Option<Arc<Link>>, handle: &HandleOffer) -> Self {
        Self {
            link: match found {
                Some(_) => Offer::Closed,
                None => Offer::Open,
            },
            handle: match handle {
                HandleOffer::Closed => Offer::Closed,
                HandleOffer::Open => Offer::Open,
                HandleOffer::Claimed(_) => Offer::Claimed,
            },
        }
    }

    fn any_claimed(self) -> bool {
        self.link == Offer::Claimed || self.handle == Offer::Claimed
    }
}

/// What was made under the innermost listening layer: its `Claimed` offers.
#[derive(Default)]
struct Claimed {
    link: Option<Arc<Link>>,
    handle: Option<EndHandle>,
}

/// The request's [`EndHandle`] as the layer holds it: made only when asked
/// for (by the `EndHandle` extractor) for a request that got none in its
/// extensions, so a plain request costs no handle.
#[derive(Debug, Default)]
pub(crate) enum HandleOffer {
    /// Not offered: the handle is in the request's extensions, or it was
    /// resolved already.
    #[default]
    Closed,
    /// Made on the first [`claim_handle`] while the layer listens.
    Open,
    /// Made: every later claim for this request gets it too, and the layer
    /// reports the stream to it.
    Claimed(EndHandle),
}

thread_local! {
    /// The offers of the layer listening on this thread, to the body being
    /// made and to the handler asking for its end handle, while the layer's
    /// service calls (or polls) the inner service.
    ///
    /// A thread-local, because the body can be made by any constructor, in any
    /// code the handler calls (`SseBody::new`, `response(body)`, axum's
    /// `IntoResponse`), none of which sees the layer or the request; the layer
    /// only knows that the body is made inside its call. It stays correct
    /// because the offer is open only for the span of that call on this
    /// thread: [`Link::listen`] sets it and restores the previous one after
    /// (a guard, so on panic too, and nested layers each see their own), and a
    /// body made on another thread (a spawned task) finds it closed and is
    /// found through [`LinkExt`] instead.
    ///
    /// Plain flags (`Copy`, no destructor), so that setting and restoring
    /// them around every call and poll is a plain write; what is made lives
    /// in [`CLAIMED`], touched only when something is.
    static OFFER: Cell<Offers> = const {
        Cell::new(Offers {
            link: Offer::Closed,
            handle: Offer::Closed,
        })
    };

    /// What was made under the innermost listening layer: holds something
    /// exactly when that layer's [`OFFER`] says `Claimed`. A layer that starts
    /// listening while an outer one holds something here keeps the outer's
    /// aside and puts it back when done. Borrowed only for short steps that
    /// call no user code.
    static CLAIMED: RefCell<Claimed> = const {
        RefCell::new(Claimed {
            link: None,
            handle: None,
        })
    };
}

/// What a quick [`Link::listen`] found made when its offers changed (`seen`,
/// as `f` left them): a body's link or a handle, in [`CLAIMED`], which held
/// nothing before. Out of line: most requests make neither.
#[cold]
#[inline(never)]
fn pick_up(seen: Offers, found: &mut Option<Arc<Link>>, handle: &mut HandleOffer) {
    if seen.any_claimed() {
        let mine = CLAIMED.with(|c| std::mem::take(&mut *c.borrow_mut()));
        settle(mine, found, handle);
    }
}

/// Hands what was made under a layer's listen to the layer: the first body's
/// link (unless it has one already), and the handle made for its request.
fn settle(mine: Claimed, found: &mut Option<Arc<Link>>, handle: &mut HandleOffer) {
    if let (Some(link), None) = (mine.link, &*found) {
        *found = Some(link);
    }
    if let Some(made) = mine.handle {
        *handle = HandleOffer::Claimed(made);
    }
}

/// The end handle of the request a layer handles on this thread, made now if
/// the layer offers one and none was made yet; `None` when no layer listens
/// here, or the layer put the handle in the request's extensions.
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) fn claim_handle() -> Option<EndHandle> {
    let mut offers = OFFER.get();
    match offers.handle {
        Offer::Closed => None,
        Offer::Claimed => CLAIMED.with(|c| c.borrow().handle.clone()),
        Offer::Open => {
            let handle = EndHandle::new();
            CLAIMED.with(|c| c.borrow_mut().handle = Some(handle.clone()));
            offers.handle = Offer::Claimed;
            OFFER.set(offers);
            Some(handle)
        }
    }
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
    /// link open to the first body made meanwhile on this thread, and the
    /// request's end handle offered as `handle` says; that body's link ends up
    /// in `found`, and a handle made meanwhile in `handle`. Costs no
    /// allocation when no body and no handle is made.
    ///
    /// Every request through the layer comes here twice or more (its call,
    /// each poll), and almost always nothing is made and no outer layer holds
    /// anything: that case is two writes of [`OFFER`] and a comparison,
    /// inlined; anything else takes [`listen_nested`](Self::listen_nested).
    #[inline]
    pub(crate) fn listen<R>(
        found: &mut Option<Arc<Link>>,
        handle: &mut HandleOffer,
        f: impl FnOnce() -> R,
    ) -> R {
        /// Puts the outer offers back (on panic too); what was made meanwhile
        /// (the offers changed) is picked up out of line.
        struct Restore<'a> {
            prev: Offers,
            set: Offers,
            found: &'a mut Option<Arc<Link>>,
            handle: &'a mut HandleOffer,
        }
        impl Drop for Restore<'_> {
            #[inline]
            fn drop(&mut self) {
                let seen = OFFER.replace(self.prev);
                if seen != self.set {
                    pick_up(seen, self.found, self.handle);
                }
            }
        }
        let set = Offers::of(found, handle);
        let prev = OFFER.replace(set);
        if set.handle == Offer::Claimed || prev.any_claimed() {
            // This layer's handle is in hand already, or an outer layer holds
            // something in `CLAIMED`: both are moved in and out of it.
            OFFER.set(prev);
            return Self::listen_nested(found, handle, f);
        }
        // `CLAIMED` is empty: `prev` claimed nothing, and this layer has
        // nothing to put there; what is made while `f` runs lands there.
        let _restore = Restore {
            prev,
            set,
            found,
            handle,
        };
        f()
    }

    /// [`listen`](Self::listen) when this layer holds a handle made in an
    /// earlier poll, or an outer layer listening on this thread holds
    /// something in [`CLAIMED`]: that is set aside while `f` runs, and put
    /// back after.
    #[inline(never)]
    fn listen_nested<R>(
        found: &mut Option<Arc<Link>>,
        handle: &mut HandleOffer,
        f: impl FnOnce() -> R,
    ) -> R {
        struct Restore<'a> {
            prev: Offers,
            /// `Some` when this layer put something in `CLAIMED` (its handle,
            /// made in an earlier poll) or set aside what an outer layer had
            /// there (held here until restored).
            aside: Option<Claimed>,
            found: &'a mut Option<Arc<Link>>,
            handle: &'a mut HandleOffer,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let seen = OFFER.replace(self.prev);
                if seen.handle == Offer::Open {
                    // Still not asked for: offered again on the next listen.
                    *self.handle = HandleOffer::Open;
                }
                if !seen.any_claimed() && self.aside.is_none() {
                    return; // nothing was made, nothing set aside
                }
                let outer = self.aside.take().unwrap_or_default();
                let mine = CLAIMED.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
                settle(mine, self.found, self.handle);
            }
        }
        let offers = Offers::of(found, handle);
        let made = match std::mem::take(handle) {
            HandleOffer::Claimed(made) => Some(made),
            HandleOffer::Closed | HandleOffer::Open => None,
        };
        let prev = OFFER.replace(offers);
        let aside = (prev.any_claimed() || made.is_some()).then(|| {
            let mine = Claimed {
                link: None,
                handle: made,
            };
            CLAIMED.with(|c| std::mem::replace(&mut *c.borrow_mut(), mine))
        });
        let _restore = Restore {
            prev,
            aside,
            found,
            handle,
        };
        f()
    }

    /// A link for a body being made while a layer listens (the first body only).
    pub(crate) fn claim() -> Option<Arc<Link>> {
        let mut offers = OFFER.get();
        if offers.link != Offer::Open {
            return None;
        }
        let link = Arc::new(Link::default());
        CLAIMED.with(|c| c.borrow_mut().link = Some(link.clone()));
        offers.link = Offer::Claimed;
        OFFER.set(offers);
        Some(link)
    }
}
