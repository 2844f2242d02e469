//! The synchronisation primitives of the topic log: `std`'s, or `loom`'s when
//! the log is model-checked (`RUSTFLAGS="--cfg tower_sse_loom"`).

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
