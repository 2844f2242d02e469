use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

use futures_core::Stream;
use http_body::Body;
use pin_project_lite::pin_project;

pin_project! {
    /// The data frames of an [`http_body::Body`] as a [`Stream`]; trailers are skipped.
    ///
    /// It is the source [`EventStream::new`](crate::EventStream::new) decodes.
    ///
    /// # Examples
    ///
    /// ```
    /// use tower_sse::decode::BodyDataStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use futures_util::StreamExt;
    /// let body = http_body_util::Full::new(bytes::Bytes::from_static(b"data: x\n\n"));
    /// let chunks: Vec<_> = BodyDataStream::new(body).collect().await;
    /// assert_eq!(chunks.len(), 1);
    /// # }
    /// ```
    #[derive(Debug, Clone)]
    pub struct BodyDataStream<B> {
        #[pin]
        body: B,
    }
}

impl<B> BodyDataStream<B> {
    /// Wraps a body.
    pub fn new(body: B) -> Self {
        Self { body }
    }

    /// Returns the wrapped body.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B: Body> Stream for BodyDataStream<B> {
    type Item = Result<B::Data, B::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut body = self.project().body;
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => return Poll::Ready(None),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}
