//! [`Subscriber`]: one reader of a topic, a stream of shared encoded events.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll, Waker},
};

use futures_core::Stream;

use super::{config::Lag, Shared};
use crate::{EncodedEvent, Event};

/// The events waiting for one subscriber, filled by publishers and drained by the
/// subscriber's stream. Its own lock, so a publisher never waits for a reader.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<QueueState>,
    /// Set under the lock whenever `state` changes for the reader.
    dirty: AtomicBool,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<EncodedEvent>,
    /// Replayed events at the front of `items`, which do not count against the
    /// capacity.
    replay_left: usize,
    waker: Option<Waker>,
    /// No more events will be added: the stream ends once `items` is drained.
    closed: bool,
    /// Under [`Lag::Skip`]: events dropped and the last dropped id.
    skipped: Option<(u64, u64)>,
}

/// What [`Queue::offer`] did.
pub(crate) enum Offer {
    /// Queued (or skipped); the waker, if the reader was waiting.
    Kept(Option<Waker>),
    /// The subscriber lagged and is now closed: remove it from the topic.
    Closed(Option<Waker>),
}

impl Queue {
    /// A queue starting with `replay`.
    pub(crate) fn with_replay(replay: VecDeque<EncodedEvent>) -> Self {
        let replay_left = replay.len();
        Self {
            state: Mutex::new(QueueState {
                items: replay,
                replay_left,
                ..QueueState::default()
            }),
            dirty: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Nothing in the critical sections can panic half-way through an update.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a live event, applying `lag` when `capacity` live events already wait.
    pub(crate) fn offer(&self, id: u64, event: &EncodedEvent, capacity: usize, lag: Lag) -> Offer {
        let mut state = self.lock();
        if state.closed {
            return Offer::Closed(None);
        }
        self.dirty.store(true, Ordering::SeqCst);
        let live = state.items.len() - state.replay_left;
        if live >= capacity {
            return match lag {
                Lag::Disconnect { retry } => {
                    let hint = Event::default().comment("lagged").retry(retry).encode();
                    state.items.push_back(hint);
                    state.closed = true;
                    Offer::Closed(state.waker.take())
                }
                Lag::Skip => {
                    let (count, _) = state.skipped.unwrap_or((0, 0));
                    state.skipped = Some((count + 1, id));
                    Offer::Kept(None)
                }
            };
        }
        if let Some(gap) = state.skipped.take() {
            state.items.push_back(gap_notice(gap));
        }
        state.items.push_back(event.clone());
        Offer::Kept(state.waker.take())
    }

    /// Ends the stream after what is queued (the hub is gone, or the topic closed).
    pub(crate) fn close(&self) -> Option<Waker> {
        let mut state = self.lock();
        state.closed = true;
        self.dirty.store(true, Ordering::SeqCst);
        state.waker.take()
    }

    /// The reader's side: takes everything queued into the reader's `local`
    /// buffer at once, so a burst costs one lock, and registers the waker. With
    /// nothing new since the last look (`dirty` unset) and the same waker, it
    /// answers `Pending` without locking.
    fn poll_next(
        &self,
        local: &mut VecDeque<EncodedEvent>,
        registered: &mut Option<Waker>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<EncodedEvent>> {
        if let Some(event) = local.pop_front() {
            return Poll::Ready(Some(event));
        }
        // `dirty` is only cleared under the lock, together with the waker's
        // registration: unset means no publisher came since, so the waker
        // registered then is still in place and will be woken.
        if !self.dirty.load(Ordering::SeqCst)
            && registered.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let mut state = self.lock();
        self.dirty.store(false, Ordering::SeqCst);
        std::mem::swap(&mut state.items, local);
        state.replay_left = 0;
        // After a burst, give the memory back instead of keeping the largest
        // buffer ever needed for every idle connection.
        if state.items.capacity() > 64 {
            state.items = VecDeque::new();
        }
        let next = match local.pop_front() {
            Some(event) => Some(event),
            None => state.skipped.take().map(gap_notice),
        };
        // What is still owed after `local` (a gap notice, the end, and `None`
        // again after the end) needs the lock.
        if state.closed || state.skipped.is_some() {
            self.dirty.store(true, Ordering::SeqCst);
        }
        if next.is_none() && state.closed {
            return Poll::Ready(None);
        }
        // Registered even when returning an event: the next poll may then
        // answer `Pending` without the lock.
        let waker = match registered.take() {
            Some(waker) if waker.will_wake(cx.waker()) => waker,
            _ => cx.waker().clone(),
        };
        state.waker = Some(waker.clone());
        *registered = Some(waker);
        match next {
            Some(event) => Poll::Ready(Some(event)),
            None => Poll::Pending,
        }
    }

    fn len(&self) -> usize {
        self.lock().items.len()
    }
}

/// `event: gap`, the last skipped id, and how many were skipped.
fn gap_notice((count, last): (u64, u64)) -> EncodedEvent {
    Event::default()
        .event("gap")
        .and_then(|e| e.id(last.to_string()))
        .map(|e| e.data(format!("{{\"skipped\":{count}}}")))
        .unwrap_or_default()
        .encode()
}

/// One subscription to a topic of a [`Hub`](crate::Hub): a `Stream` of the
/// topic's events, already encoded and shared with every other subscriber.
///
/// Give it to [`SseBody::from_events`](crate::SseBody::from_events). Dropping it
/// (which is what happens when the client disconnects and its body is dropped)
/// unsubscribes at once, and removes the topic when it was the last subscriber.
///
/// The stream ends only when the [`Lag::Disconnect`] policy removed the subscriber
/// for falling behind; otherwise it waits for events forever.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures_util::StreamExt;
/// use tower_sse::{Event, Hub};
///
/// let hub = Hub::new();
/// let mut sub = hub.subscribe("news");
/// assert_eq!(sub.topic(), "news");
/// hub.publish("news", Event::message("hello"));
/// let event = sub.next().await.unwrap();
/// assert_eq!(event.as_bytes(), b"id: 1\ndata: hello\n\n".as_slice());
/// # }
/// ```
pub struct Subscriber {
    queue: Arc<Queue>,
    topic: Arc<str>,
    shared: Arc<Shared>,
    /// Events taken from the queue, not yet yielded.
    local: VecDeque<EncodedEvent>,
    /// The waker last registered in the queue.
    registered: Option<Waker>,
}

impl Subscriber {
    pub(crate) fn new(queue: Arc<Queue>, topic: Arc<str>, shared: Arc<Shared>) -> Self {
        Self {
            queue,
            topic,
            shared,
            local: VecDeque::new(),
            registered: None,
        }
    }

    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many events wait to be read (replayed ones included).
    pub fn queued(&self) -> usize {
        self.local.len() + self.queue.len()
    }
}

impl Stream for Subscriber {
    type Item = EncodedEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EncodedEvent>> {
        let this = self.get_mut();
        this.queue
            .poll_next(&mut this.local, &mut this.registered, cx)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.shared.unsubscribe(&self.topic, &self.queue);
    }
}

impl fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic)
            .field("queued", &self.queued())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(q: &Queue, local: &mut VecDeque<EncodedEvent>) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        q.poll_next(local, &mut None, &mut cx)
            .map(|e| e.map(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    #[test]
    fn skip_policy_reports_the_gap_once() {
        let q = Queue::with_replay(VecDeque::new());
        let mut local = VecDeque::new();
        for id in 1..=5 {
            let ev = Event::message(id.to_string()).encode();
            assert!(matches!(q.offer(id, &ev, 2, Lag::Skip), Offer::Kept(_)));
        }
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some("data: 1\n\n".into()))
        );
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some("data: 2\n\n".into()))
        );
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some("event: gap\nid: 5\ndata: {\"skipped\":3}\n\n".into()))
        );
        assert_eq!(poll(&q, &mut local), Poll::Pending);
    }

    #[test]
    fn disconnect_policy_closes_after_the_queue() {
        let q = Queue::with_replay(VecDeque::from([Event::message("r").encode()]));
        let mut local = VecDeque::new();
        let lag = Lag::Disconnect {
            retry: std::time::Duration::from_millis(250),
        };
        let ev = Event::message("x").encode();
        assert!(matches!(q.offer(1, &ev, 1, lag), Offer::Kept(_)));
        assert!(matches!(q.offer(2, &ev, 1, lag), Offer::Closed(_)));
        assert!(matches!(q.offer(3, &ev, 1, lag), Offer::Closed(None)));
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some("data: r\n\n".into()))
        );
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some("data: x\n\n".into()))
        );
        assert_eq!(
            poll(&q, &mut local),
            Poll::Ready(Some(": lagged\nretry: 250\n\n".into()))
        );
        assert_eq!(poll(&q, &mut local), Poll::Ready(None));
        assert_eq!(poll(&q, &mut local), Poll::Ready(None));
    }
}
