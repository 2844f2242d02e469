//! [`SseLayer`]: Tower middleware that makes any service's SSE responses
//! production-safe.
//!
//! See [`SseLayer`] for the settings.

mod body;
mod boundary;
mod config;
mod future;
mod layer;
mod service;

pub use self::{body::ResponseBody, future::ResponseFuture, layer::SseLayer, service::Sse};
