//! [`Permit`]: a stream's slot in the layer's count of live streams.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

/// One live stream; leaves the count when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    /// The layer's count of live streams (`Config::live`),
    /// shared by every service of the layer and every permit. A slot is taken
    /// with one compare-and-swap loop (`fetch_update`), so concurrent requests
    /// never take the count past `max`, and given back with one `fetch_sub`
    /// when the permit drops; each permit adds exactly one, so the count never
    /// underflows. The count guards no other data: only the atomicity of each
    /// step matters, and the `AcqRel`/`Acquire` orderings are more than that
    /// needs (kept: they cost nothing measurable next to a stream).
    live: Arc<AtomicUsize>,
}

impl Permit {
    /// Takes a slot in `live` unless it counts `max` already.
    pub(crate) fn try_acquire(live: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Self { live: live.clone() })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}
