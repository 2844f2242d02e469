//! The reading side: a WHATWG-exact `text/event-stream` decoder.
//!
//! [`Decoder`] is a push-based parser with no I/O; [`EventStream`] drives it from any
//! `http_body::Body` (such as a `hyper` response body) or any `Stream` of byte chunks.
//!
//! It follows the parsing rules of the WHATWG HTML standard, "Server-sent events", section
//! "Parsing an event stream", to the letter:
//!
//! - the stream is UTF-8, invalid sequences become U+FFFD, one leading BOM is skipped;
//! - lines end at CRLF, LF or CR, wherever the chunks are split;
//! - a line starting with `:` is a comment; a line without a colon is a field with an empty
//!   value; one space after the colon is removed (not a tab); unknown fields are ignored and
//!   field names are case-sensitive;
//! - `data` lines are joined with LF; a block without `data` is not dispatched; an empty or
//!   missing `event` means `message`;
//! - an `id` containing NUL is ignored; the last event id persists until changed, and `id` with
//!   an empty value resets it; every event carries the last event id at its dispatch;
//! - `retry` is taken only when it is all ASCII digits (and not empty);
//! - a final block without its blank line is discarded at the end of the stream.
//!
//! Unlike `eventsource-stream`, memory is bounded ([`Decoder::max_event_size`]), invalid UTF-8
//! is replaced rather than fatal, and `retry: +5` is ignored as the spec says.
//!
//! Where the spec is silent, the choices are: an empty `retry` value is ignored (as browsers
//! do), a `retry` value past `u64::MAX` milliseconds is ignored, and at the end of a stream an
//! `id` of the incomplete block is forgotten with the block.

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
