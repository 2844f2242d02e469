use std::time::Duration;

/// One event dispatched by the [`Decoder`](crate::Decoder), with the fields a browser's
/// `MessageEvent` exposes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower_sse::{decode::Frame, Decoder};
///
/// let mut decoder = Decoder::new();
/// decoder.push(b"event: add\nid: 7\nretry: 1500\ndata: {\"n\":1}\n\n");
/// let Some(Frame::Event(event)) = decoder.next_frame()? else { panic!("no event") };
/// assert_eq!(event.event, "add");
/// assert_eq!(event.data, r#"{"n":1}"#);
/// assert_eq!(event.id, "7");
/// assert_eq!(event.retry, Some(Duration::from_millis(1500)));
/// # Ok::<(), tower_sse::DecodeError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MessageEvent {
    /// The event type: the value of the block's last `event` field, or `"message"` when the
    /// block had none (or an empty one).
    pub event: String,
    /// The block's `data` lines joined with `\n`.
    pub data: String,
    /// The last event id at dispatch: set by the latest `id` field of this or an earlier block,
    /// `""` if none was seen or an empty `id` field reset it.
    pub id: String,
    /// The reconnection time, only when this block carried a valid `retry` field.
    ///
    /// A block that sets `retry` without any `data` is not dispatched; its value is still
    /// available from [`Decoder::retry`](crate::Decoder::retry).
    pub retry: Option<Duration>,
}

/// One item produced by the [`Decoder`](crate::Decoder).
///
/// # Examples
///
/// ```
/// use tower_sse::{decode::Frame, Decoder};
///
/// let mut decoder = Decoder::new().comments(true);
/// decoder.push(b": keep-alive\ndata: hi\n\n");
/// assert_eq!(decoder.next_frame()?, Some(Frame::Comment("keep-alive".into())));
/// match decoder.next_frame()? {
///     Some(Frame::Event(event)) => assert_eq!(event.data, "hi"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(decoder.next_frame()?, None);
/// # Ok::<(), tower_sse::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Frame {
    /// A dispatched event.
    Event(MessageEvent),
    /// A comment line (one that starts with `:`), with the colon and one following space
    /// removed. Only produced when enabled with [`Decoder::comments`](crate::Decoder::comments).
    Comment(String),
}
