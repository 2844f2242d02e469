//! What a body does with its stream's errors: the application's hook that turns one into a last event, and the end it
//! reports.

use std::{error::Error, sync::Arc};

use bytes::Bytes;

use crate::{error::BoxError, event::Event, stream::end::Outcome};

/// The hook of [`SseBody::on_error`](crate::SseBody::on_error).
pub(crate) type OnError =
    Box<dyn Fn(&(dyn Error + Send + Sync + 'static)) -> Option<Event> + Send + Sync>;

/// The event to write for a stream error, and the outcome to report.
pub(crate) fn failure(err: BoxError, on_error: &Option<OnError>) -> (Option<Bytes>, Outcome) {
    let last = on_error
        .as_ref()
        .and_then(|f| f(&*err))
        .map(|event| event.encode().into_bytes());
    (last, Outcome::Failed(Arc::from(err)))
}
