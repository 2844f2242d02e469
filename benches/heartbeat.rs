//! Heartbeats at scale: 10 000 idle `SseBody`s, each in its own task as on a
//! connection, under paused tokio time. One measured round advances the clock by
//! the heartbeat interval and runs until every body has written its heartbeat.
//!
//! Two timer designs are compared through the public `Timer` seam:
//!
//! - `per_stream`: the default, one tokio `Sleep` per body, re-armed in place;
//! - `shared_wheel`: one driver task for all bodies, sleeping until the earliest
//!   slot of a wheel of wakers (10 ms slots, deadlines rounded up), waking
//!   every body whose slot is due.
//!
//! Before measuring, three rounds are run with counting wrappers to print, per
//! heartbeat: timer registrations (sleeps made, resets, wakers parked) and task
//! polls (wake-ups).

use std::{
    collections::BTreeMap,
    future::Future,
    hint::black_box,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::stream;
use http_body::Body;
use tokio::{runtime::Runtime, sync::Notify, time::Instant};
use tower_sse::{
    timer::{Sleep, Timer, TokioTimer},
    Event, KeepAlive, SseBody,
};

const BODIES: u64 = 10_000;
const INTERVAL: Duration = Duration::from_secs(1);

// ------------------------------------------------------------ shared wheel ---

/// One driver task and a wheel of wakers keyed by slot number.
#[derive(Debug)]
struct SharedWheel {
    slot: Duration,
    origin: Instant,
    slots: Mutex<BTreeMap<u64, Vec<Waker>>>,
    earlier: Notify,
    parked: AtomicU64,
}

impl SharedWheel {
    fn start(slot: Duration) -> Arc<Self> {
        let wheel = Arc::new(Self {
            slot,
            origin: Instant::now(),
            slots: Mutex::default(),
            earlier: Notify::new(),
            parked: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&wheel);
        tokio::spawn(async move {
            loop {
                let Some(wheel) = weak.upgrade() else { return };
                let next = wheel.slots.lock().unwrap().keys().next().copied();
                let notified = wheel.earlier.notified();
                match next {
                    Some(at) => {
                        let at = wheel.origin + wheel.slot * at as u32;
                        tokio::select! {
                            _ = tokio::time::sleep_until(at) => wheel.fire(),
                            _ = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        });
        wheel
    }

    fn now_slot(&self) -> u64 {
        (self.origin.elapsed().as_nanos() / self.slot.as_nanos()) as u64
    }

    /// The first slot at or after `after` from now (never early).
    fn slot_after(&self, after: Duration) -> u64 {
        let at = self.origin.elapsed() + after;
        at.as_nanos().div_ceil(self.slot.as_nanos()) as u64
    }

    fn park(&self, slot: u64, waker: Waker) {
        self.parked.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock().unwrap();
        let first = slots.keys().next().is_none_or(|&s| slot < s);
        slots.entry(slot).or_default().push(waker);
        drop(slots);
        if first {
            self.earlier.notify_one();
        }
    }

    fn fire(&self) {
        let now = self.now_slot();
        let due = {
            let mut slots = self.slots.lock().unwrap();
            let later = slots.split_off(&(now + 1));
            std::mem::replace(&mut *slots, later)
        };
        due.into_values().flatten().for_each(Waker::wake);
    }
}

#[derive(Debug)]
struct WheelTimer(Arc<SharedWheel>);

impl Timer for WheelTimer {
    fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(WheelSleep {
            deadline: self.0.slot_after(after),
            wheel: self.0.clone(),
            parked: None,
        })
    }
}

struct WheelSleep {
    wheel: Arc<SharedWheel>,
    deadline: u64,
    parked: Option<(u64, Waker)>,
}

impl Future for WheelSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.wheel.now_slot() >= self.deadline {
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let already =
            matches!(&self.parked, Some((s, w)) if *s == deadline && w.will_wake(cx.waker()));
        if !already {
            self.wheel.park(deadline, cx.waker().clone());
            self.parked = Some((deadline, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Sleep for WheelSleep {
    fn reset(mut self: Pin<&mut Self>, after: Duration) {
        // A waker parked for an earlier slot wakes the task once for nothing; it
        // then parks again for the new slot.
        self.deadline = self.wheel.slot_after(after);
    }
}

// --------------------------------------------------------------- counting ---

#[derive(Debug, Default)]
struct Counts {
    sleeps: AtomicU64,
    resets: AtomicU64,
    polls: AtomicU64,
    heartbeats: AtomicU64,
}

#[derive(Debug)]
struct Counting(Arc<dyn Timer>, Arc<Counts>);

impl Timer for Counting {
    fn sleep(&self, after: Duration) -> Pin<Box<dyn Sleep>> {
        self.1.sleeps.fetch_add(1, Ordering::Relaxed);
        Box::pin(CountingSleep(self.0.sleep(after), self.1.clone()))
    }
}

struct CountingSleep(Pin<Box<dyn Sleep>>, Arc<Counts>);

impl Future for CountingSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for CountingSleep {
    fn reset(mut self: Pin<&mut Self>, after: Duration) {
        self.1.resets.fetch_add(1, Ordering::Relaxed);
        self.0.as_mut().reset(after);
    }
}

// ------------------------------------------------------------------ setup ---

/// Spawns the idle bodies, each drained by its own task like a connection.
fn spawn_bodies(timer: Arc<dyn Timer>, counts: &Arc<Counts>) {
    for _ in 0..BODIES {
        let mut body = SseBody::from_events(stream::pending::<Event>())
            .keep_alive(KeepAlive::new().interval(INTERVAL))
            .timer(timer.clone());
        let counts = counts.clone();
        tokio::spawn(futures_util::future::poll_fn(move |cx| {
            counts.polls.fetch_add(1, Ordering::Relaxed);
            while let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                let frame = frame.expect("idle bodies never end").expect("infallible");
                black_box(frame);
                counts.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            Poll::<()>::Pending
        }));
    }
}

/// Advances the clock by one interval and runs until every body has beaten.
async fn round(counts: &Counts) {
    let target = counts.heartbeats.load(Ordering::Relaxed) + BODIES;
    tokio::time::advance(INTERVAL).await;
    run_until(|| counts.heartbeats.load(Ordering::Relaxed) >= target).await;
}

/// Lets the spawned tasks run (time stands still) until `done`.
async fn run_until(done: impl Fn() -> bool) {
    for _ in 0..10_000_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the bodies did not get there");
}

/// Spawns the bodies and runs until each has been polled once (timers armed, all
/// at the same instant) and has written its first heartbeat.
async fn start(timer: Arc<dyn Timer>, counts: &Arc<Counts>) {
    spawn_bodies(timer, counts);
    run_until(|| counts.polls.load(Ordering::Relaxed) >= BODIES).await;
    round(counts).await;
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// The timer of a design, and its wheel when it has one.
fn make_timer(design: &str) -> (Arc<dyn Timer>, Option<Arc<SharedWheel>>) {
    match design {
        "per_stream" => (Arc::new(TokioTimer), None),
        _ => {
            let wheel = SharedWheel::start(Duration::from_millis(10));
            (Arc::new(WheelTimer(wheel.clone())), Some(wheel))
        }
    }
}

/// Runs rounds with counting wrappers and prints the counts per heartbeat.
fn print_counts(design: &str) {
    let rt = runtime();
    rt.block_on(async {
        let counts = Arc::new(Counts::default());
        let (inner, wheel) = make_timer(design);
        let timer = Arc::new(Counting(inner, counts.clone()));
        let parked = || wheel.as_ref().map_or(0, |w| w.parked.load(Ordering::Relaxed));
        start(timer, &counts).await;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let before = [load(&counts.sleeps), load(&counts.resets), load(&counts.polls), parked()];
        let beats = counts.heartbeats.load(Ordering::Relaxed);
        for _ in 0..3 {
            round(&counts).await;
        }
        let after = [load(&counts.sleeps), load(&counts.resets), load(&counts.polls), parked()];
        let n = (counts.heartbeats.load(Ordering::Relaxed) - beats) as f64;
        println!(
            "{design}: per heartbeat: {:.2} sleeps made, {:.2} resets, {:.2} wakers parked in the wheel, {:.2} task polls",
            (after[0] - before[0]) as f64 / n,
            (after[1] - before[1]) as f64 / n,
            (after[3] - before[3]) as f64 / n,
            (after[2] - before[2]) as f64 / n,
        );
    });
}

fn bench(c: &mut Criterion) {
    for design in ["per_stream", "shared_wheel"] {
        print_counts(design);
    }
    let mut g = c.benchmark_group("heartbeat_10k");
    g.throughput(Throughput::Elements(BODIES));
    g.sample_size(20);
    for design in ["per_stream", "shared_wheel"] {
        let rt = runtime();
        let counts = Arc::new(Counts::default());
        rt.block_on(async {
            start(make_timer(design).0, &counts).await;
        });
        g.bench_function(design, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        round(&counts).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
