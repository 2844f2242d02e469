//! [`Batcher`]: appends queued for one Redis server, sent as one script call.
//!
//! Publishers put their append and a reply channel in the server's queue and
//! wait for the reply. One task per server drains the queue: it waits for the
//! first item, takes whatever else is queued behind it (up to
//! [`Limits::items`] items and [`Limits::bytes`] bytes), sends them as one
//! call, and goes back to the queue; each call's items are answered from its
//! reply. Up to [`Limits::calls`] calls are in flight at once (pipelined on
//! the connection, so that Redis runs one script while the node prepares the
//! next and answers the last); while they all are, new items wait in the
//! queue and go in the next call: a lone publisher is sent at once (no timer,
//! no waiting for company), and many concurrent ones share the calls. Calls
//! are sent in the order they were made: each is polled once (and so written
//! to the connection) before the next is made.
//!
//! Built from tokio's channels only (no waker of its own). A publisher that
//! gave up (timed out, dropped) before its item was taken is not sent; one
//! that gave up after is still answered into the void, as a single call would
//! be. The task ends when the server (the queue's sender) is dropped.

use std::{
    collections::VecDeque,
    future::{poll_fn, Future},
    pin::Pin,
    task::Poll,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

/// The bounds of one batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// At most this many items in one call.
    pub(super) items: usize,
    /// At most this many bytes (as weighed by the batcher) in one call, unless
    /// a single item weighs more: it then goes alone.
    pub(super) bytes: usize,
    /// At most this many calls in flight at once (at least 1).
    pub(super) calls: usize,
}

/// A queued item and where its answer goes.
type Queued<T, R> = (T, oneshot::Sender<R>);

/// The queue of one server (see the module's doc). Cheap to share.
#[derive(Debug)]
pub(super) struct Batcher<T, R> {
    queue: mpsc::UnboundedSender<Queued<T, R>>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Spawns the task that drains the queue on the current runtime: it sends
    /// each batch with `send`, which answers one `R` per item, in order.
    pub(super) fn spawn<F, Fut>(limits: Limits, weight: fn(&T) -> usize, send: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        Self::spawn_idle(limits, weight, None, send)
    }

    /// As [`spawn`](Self::spawn), but the task also ends once its queue was
    /// empty for `idle` (when given): it closes the queue, sends what was
    /// queued before, and ends; [`try_submit`](Self::try_submit) then gives
    /// the item back, for a new batcher.
    pub(super) fn spawn_idle<F, Fut>(
        limits: Limits,
        weight: fn(&T) -> usize,
        idle: Option<Duration>,
        send: F,
    ) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(drain(rx, limits, weight, idle, send));
        Self { queue }
    }

    /// Queues `item` and waits for its answer; `None` when the task is gone
    /// (the runtime is shutting down) or dropped the item unanswered.
    pub(super) async fn submit(&self, item: T) -> Option<R> {
        match self.try_submit(item) {
            Ok(answer) => answer.await.ok(),
            Err(_) => None,
        }
    }

    /// Queues `item`; the receiver gets its answer (an error when the task
    /// dropped it unanswered). The item back when the task ended (idle).
    pub(super) fn try_submit(&self, item: T) -> Result<oneshot::Receiver<R>, T> {
        let (tx, rx) = oneshot::channel();
        match self.queue.send((item, tx)) {
            Ok(()) => Ok(rx),
            Err(mpsc::error::SendError((item, _))) => Err(item),
        }
    }

    /// Whether the task ended (it takes no more items).
    pub(super) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// A call in flight, and where its items' answers go.
type Call<Fut, R> = (Pin<Box<Fut>>, Vec<oneshot::Sender<R>>);

/// Polls the calls in flight, oldest first; resolves once one or more have
/// finished (their items answered).
async fn finished<Fut, R>(calls: &mut VecDeque<Call<Fut, R>>)
where
    Fut: Future<Output = Vec<R>>,
{
    poll_fn(|cx| {
        let before = calls.len();
        calls.retain_mut(|(call, replies)| match call.as_mut().poll(cx) {
            Poll::Ready(answers) => {
                // A reply without an answer (there is none when `send` broke
                // its promise) is dropped: its publisher gets `None`, an error.
                for (reply, answer) in replies.drain(..).zip(answers) {
                    let _ = reply.send(answer);
                }
                false
            }
            Poll::Pending => true,
        });
        if calls.len() < before {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// The task: batches, up to `limits.calls` in flight, until every sender is
/// gone and every call is answered.
async fn drain<T, R, F, Fut>(
    mut rx: mpsc::UnboundedReceiver<Queued<T, R>>,
    limits: Limits,
    weight: fn(&T) -> usize,
    idle: Option<Duration>,
    mut send: F,
) where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Vec<R>>,
{
    let mut calls: VecDeque<Call<Fut, R>> = VecDeque::new();
    // An item taken from the queue that did not fit in the previous batch.
    let mut carried: Option<Queued<T, R>> = None;
    loop {
        // Room for another call: wait for one in flight to finish.
        while calls.len() >= limits.calls.max(1) {
            finished(&mut calls).await;
        }
        let first = match carried.take() {
            Some(first) => first,
            None => {
                // The calls in flight are polled first, so that the newest
                // is written to the connection before the next is made.
                let quiet = calls.is_empty();
                let next = tokio::select! {
                    biased;
                    () = finished(&mut calls), if !quiet => continue,
                    next = async {
                        match idle {
                            // Idle only with nothing in flight.
                            Some(idle) if quiet => {
                                tokio::time::timeout(idle, rx.recv()).await
                            }
                            _ => Ok(rx.recv().await),
                        }
                    } => next,
                };
                match next {
                    Ok(Some(first)) => first,
                    // Idle: no more items; those already queued are still
                    // taken (then `recv` answers `None`).
                    Err(_) => {
                        rx.close();
                        continue;
                    }
                    Ok(None) => {
                        while !calls.is_empty() {
                            finished(&mut calls).await;
                        }
                        return;
                    }
                }
            }
        };
        let mut bytes = weight(&first.0);
        let mut batch = vec![first];
        while batch.len() < limits.items {
            let Ok(next) = rx.try_recv() else { break };
            bytes = bytes.saturating_add(weight(&next.0));
            if bytes > limits.bytes {
                carried = Some(next);
                break;
            }
            batch.push(next);
        }
        // Nobody waits for these any more: not sending them is what a
        // publisher that gave up before its call was sent gets.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
        calls.push_back((Box::pin(send(items)), replies));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The batches a batcher sent, in order.
    type Sent = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A batcher that answers each item with itself and records its batches,
    /// each call taking `delay`.
    fn recording(limits: Limits, delay: Duration) -> (Arc<Batcher<u32, u32>>, Sent) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let batcher = Batcher::spawn(
            limits,
            |_| 10,
            move |items: Vec<u32>| {
                seen.lock().unwrap().push(items.clone());
                async move {
                    tokio::time::sleep(delay).await;
                    items
                }
            },
        );
        (Arc::new(batcher), batches)
    }

    #[tokio::test]
    async fn a_lone_item_goes_at_once_alone() {
        let limits = Limits {
            items: 64,
            bytes: 1 << 20,
            calls: 1,
        };
        let (batcher, batches) = recording(limits, Duration::ZERO);
        for i in 0..3 {
            assert_eq!(batcher.submit(i).await, Some(i));
        }
        assert_eq!(*batches.lock().unwrap(), [vec![0], vec![1], vec![2]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_items_share_bounded_batches_in_queue_order() {
        let limits = Limits {
            items: 8,
            bytes: 55, // 5 items of 10 bytes
            calls: 1,
        };
        let (batcher, batches) = recording(limits, Duration::from_millis(5));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(
                task.await.unwrap(),
                Some(i as u32),
                "each gets its own answer"
            );
        }
        let batches = batches.lock().unwrap();
        assert!(
            batches.iter().all(|b| (1..=5).contains(&b.len())),
            "{batches:?}"
        );
        assert!(batches.iter().any(|b| b.len() > 1), "some were batched");
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        assert_eq!(all.len(), 200, "each sent once");
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_overlap_up_to_the_limit_and_go_out_in_the_order_made() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let limits = Limits {
            items: 4,
            bytes: 1 << 20,
            calls: 2,
        };
        // Per call: the order it was made in and the order of its first poll;
        // calls in flight now, and the most at once.
        let made = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Mutex::new(Vec::new()));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let batcher = Arc::new(Batcher::spawn(limits, |_| 1, {
            let (started, now, most) = (started.clone(), now.clone(), most.clone());
            move |items: Vec<u32>| {
                let index = made.fetch_add(1, Ordering::SeqCst);
                let (started, now, most) = (started.clone(), now.clone(), most.clone());
                async move {
                    started.lock().unwrap().push(index);
                    let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(in_flight, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    items
                }
            }
        }));
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some(i as u32));
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "two calls at once, never more"
        );
        let started = started.lock().unwrap();
        assert!(started.len() >= 10, "40 items in batches of at most 4");
        assert!(started.windows(2).all(|w| w[0] < w[1]), "{started:?}");
    }

    #[tokio::test]
    async fn an_item_whose_publisher_gave_up_is_not_sent() {
        let limits = Limits {
            items: 64,
            bytes: 1 << 20,
            calls: 1,
        };
        let (batcher, batches) = recording(limits, Duration::from_millis(50));
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Queued behind the call in flight, then given up on.
        let gave_up = tokio::time::timeout(Duration::from_millis(5), batcher.submit(2)).await;
        assert!(gave_up.is_err());
        assert_eq!(batcher.submit(3).await, Some(3));
        assert_eq!(first.await.unwrap(), Some(1));
        assert_eq!(*batches.lock().unwrap(), [vec![1], vec![3]]);
    }

    #[tokio::test]
    async fn an_idle_batcher_ends_and_gives_items_back() {
        let limits = Limits {
            items: 64,
            bytes: 1 << 20,
            calls: 1,
        };
        let batcher = Batcher::spawn_idle(
            limits,
            |_| 1,
            Some(Duration::from_millis(20)),
            |items: Vec<u32>| async { items },
        );
        assert_eq!(batcher.submit(1).await, Some(1));
        assert!(!batcher.is_closed());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(batcher.is_closed());
        assert!(matches!(batcher.try_submit(2), Err(2)));
    }

    #[tokio::test]
    async fn a_short_answer_fails_the_unanswered_and_hangs_no_one() {
        let limits = Limits {
            items: 64,
            bytes: 1 << 20,
            calls: 1,
        };
        let batcher = Arc::new(Batcher::spawn(
            limits,
            |_| 1,
            |_items: Vec<u32>| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Vec::<u32>::new()
            },
        ));
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(i).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), None);
        }
    }
}
