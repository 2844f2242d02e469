//! The reading side: a WHATWG-exact `text/event-stream` decoder.
//!
//! [`Decoder`] is a push-based parser with no I/O (its docs list the parsing rules);
//! [`EventStream`] drives it from any `http_body::Body` or any `Stream` of byte chunks.
//!
//! The main types are also at the crate root (`tower_sse::{Decoder, EventStream,
//! MessageEvent, DecodeError}`); [`Frame`] (an event or a comment) and
//! [`BodyDataStream`] stay in this module, so `Frame` does not clash with
//! `http_body::Frame`.

mod body_data;
mod decoder;
mod error;
mod message;
mod stream;

pub use body_data::BodyDataStream;
pub use decoder::Decoder;
pub use error::DecodeError;
pub use message::{Frame, MessageEvent};
pub use stream::EventStream;
