use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Buf;
use futures_core::Stream;
use pin_project_lite::pin_project;

use super::{BodyDataStream, DecodeError, Decoder, Frame, MessageEvent};
use crate::error::BoxError;

pin_project! {
    /// Decodes a `text/event-stream` body, or any stream of byte chunks, into a [`Stream`] of
    /// [`MessageEvent`]s, with a [`Decoder`].
    ///
    /// - [`DecodeError::TooLarge`] is reported and decoding carries on with the next block.
    /// - A body error is reported as [`DecodeError::Body`], then the stream ends.
    /// - At the end of the body an incomplete block is discarded, as the spec requires, and the
    ///   stream ends.
    ///
    /// Comments are never yielded; use a [`Decoder`] with [`Decoder::comments`] to see them.
    ///
    /// # Examples
    ///
    /// Decoding a response body (any `http_body::Body`, such as `hyper::body::Incoming`):
    ///
    /// ```
    /// use futures_util::TryStreamExt;
    /// use http_body_util::Full;
    /// use tower_sse::EventStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::DecodeError> {
    /// let body = Full::new(bytes::Bytes::from_static(b"id: 1\ndata: a\n\nevent: b\ndata: 2\n\n"));
    /// let events: Vec<_> = EventStream::new(body).try_collect().await?;
    /// assert_eq!(events[0].data, "a");
    /// assert_eq!((events[1].event.as_str(), events[1].id.as_str()), ("b", "1"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Decoding a stream of chunks:
    ///
    /// ```
    /// use futures_util::{stream, TryStreamExt};
    /// use tower_sse::EventStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::DecodeError> {
    /// let chunks = stream::iter([Ok::<_, std::io::Error>(&b"data: to"[..]), Ok(b"ken\n\n")]);
    /// let events: Vec<_> = EventStream::from_stream(chunks).try_collect().await?;
    /// assert_eq!(events[0].data, "token");
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct EventStream<S> {
        #[pin]
        source: S,
        decoder: Decoder,
        done: bool,
    }
}

impl<B> EventStream<BodyDataStream<B>> {
    /// Decodes the data frames of an [`http_body::Body`].
    pub fn new(body: B) -> Self {
        Self::from_stream(BodyDataStream::new(body))
    }
}

impl<S> EventStream<S> {
    /// Decodes a stream of `Result<impl Buf, E>` chunks.
    pub fn from_stream(stream: S) -> Self {
        Self::with_decoder(stream, Decoder::new())
    }

    /// Decodes a stream of chunks with a configured [`Decoder`] (size limit, initial last
    /// event id).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::{stream, StreamExt};
    /// use tower_sse::{DecodeError, Decoder, EventStream};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let chunks = stream::iter([Ok::<_, std::io::Error>(&b"data: 0123456789\n\ndata: ok\n\n"[..])]);
    /// let mut events = EventStream::with_decoder(chunks, Decoder::new().max_event_size(8));
    /// assert!(matches!(events.next().await, Some(Err(DecodeError::TooLarge { .. }))));
    /// assert_eq!(events.next().await.unwrap().unwrap().data, "ok");
    /// assert!(events.next().await.is_none());
    /// # }
    /// ```
    pub fn with_decoder(stream: S, decoder: Decoder) -> Self {
        Self {
            source: stream,
            decoder,
            done: false,
        }
    }

    /// The last event id seen so far, to send as `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> &str {
        self.decoder.last_event_id()
    }

    /// The reconnection time most recently set by the stream's `retry` field, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.decoder.retry()
    }

    /// Returns the decoder, which keeps the last event id and reconnection time, and the
    /// source. Call [`Decoder::finish`] before reusing the decoder for another stream.
    pub fn into_parts(self) -> (S, Decoder) {
        (self.source, self.decoder)
    }
}

impl<S, D, E> Stream for EventStream<S>
where
    S: Stream<Item = Result<D, E>>,
    D: Buf,
    E: Into<BoxError>,
{
    type Item = Result<MessageEvent, DecodeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            match this.decoder.next_frame() {
                Ok(Some(Frame::Event(event))) => return Poll::Ready(Some(Ok(event))),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(err) => return Poll::Ready(Some(Err(err))),
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.source.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(mut data))) => {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let len = chunk.len();
                        this.decoder.push(chunk);
                        data.advance(len);
                    }
                }
                Poll::Ready(Some(Err(err))) => {
                    *this.done = true;
                    this.decoder.finish();
                    return Poll::Ready(Some(Err(DecodeError::Body(err.into()))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    this.decoder.finish();
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
