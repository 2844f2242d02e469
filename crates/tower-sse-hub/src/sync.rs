//! The synchronisation primitives of the hub: `std`'s, or `loom`'s when the
//! topic log is model-checked (`RUSTFLAGS="--cfg tower_sse_loom"`), the one
//! `lock` helper, and the one clock.

use std::time::Instant;

#[cfg(not(all(test, tower_sse_loom)))]
pub(crate) use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};

#[cfg(all(test, tower_sse_loom))]
pub(crate) use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};

/// Locks `mutex`, also when poisoned: every critical section of the hub
/// completes its update before anything that can panic, so a poisoned lock
/// still guards consistent state.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Now, on tokio's clock when the `tokio` feature is on (so paused time in
/// tests drives retention), else the system's.
pub(crate) fn now() -> Instant {
    #[cfg(feature = "tokio")]
    {
        tokio::time::Instant::now().into_std()
    }
    #[cfg(not(feature = "tokio"))]
    {
        Instant::now()
    }
}
