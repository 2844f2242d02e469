//! The one lock helper of the crate's hand-written concurrency.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, ignoring poisoning: every value the crate keeps behind a
/// `Mutex` is left consistent at each step (a waker list, a report slot, a
/// frame), so a panic in another holder leaves nothing half-written to guard
/// against, and a stream must still be able to end and report.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
