//! [`BoxError`]: the error type streams, bodies and the decoder carry.

/// The error type a stream may yield: anything that converts into this box.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
