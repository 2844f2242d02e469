use std::{error::Error, fmt};

use crate::error::BoxError;

/// The error produced while decoding an event stream.
///
/// # Examples
///
/// ```
/// use tower_sse::{DecodeError, Decoder};
///
/// let mut decoder = Decoder::new().max_event_size(8);
/// decoder.push(b"data: far too long\n\n");
/// let err = decoder.next_frame().unwrap_err();
/// assert!(matches!(err, DecodeError::TooLarge { limit: 8 }));
/// assert_eq!(err.to_string(), "event larger than the limit of 8 bytes");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event being assembled (its pending line, data and type) grew past
    /// [`Decoder::max_event_size`](crate::Decoder::max_event_size). The decoder discards the
    /// rest of that block and carries on with the next one.
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// The underlying body or stream failed. An [`EventStream`](crate::EventStream) ends
    /// after reporting it.
    Body(BoxError),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "event larger than the limit of {limit} bytes"),
            Self::Body(_) => f.write_str("error reading the event stream body"),
        }
    }
}

impl Error for DecodeError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Body(err) => Some(&**err),
        }
    }
}
