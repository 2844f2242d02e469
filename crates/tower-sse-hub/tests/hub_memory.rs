//! Memory returns to the idle baseline once retention expires: every byte the
//! hub allocated for thousands of topics and their histories is given back.
//! Counted by a global allocator wrapper, so the figure is exact.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

use tower_sse::Event;
use tower_sse_hub::{Hub, HubConfig};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, counting bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn memory_returns_to_the_idle_baseline_after_retention() {
    let ttl = Duration::from_secs(300);
    let hub = Hub::with_config(HubConfig::new().history_ttl(ttl));
    // Let the sweeper task start and the runtime settle before the baseline.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let baseline = LIVE.load(Ordering::Relaxed);

    for round in 0..3 {
        for n in 0..5_000 {
            let topic = format!("user-{round}-{n}");
            let sub = hub.subscribe(&topic, None).await.unwrap();
            for m in 0..4 {
                hub.publish(&topic, Event::message(format!("notification {m}")))
                    .await
                    .unwrap();
            }
            drop(sub);
        }
        let held = LIVE.load(Ordering::Relaxed) - baseline;
        assert!(
            held > 5_000 * 100,
            "round {round}: histories are retained ({held} B)"
        );
        assert_eq!(hub.topic_count(), 5_000);
        // Past the TTL plus one sweep interval, everything is freed.
        tokio::time::sleep(ttl + Duration::from_secs(60)).await;
        assert_eq!(hub.topic_count(), 0);
        let left = LIVE.load(Ordering::Relaxed) - baseline;
        eprintln!("round {round}: {held} B held with 5 000 topics, {left} B after expiry");
        // Shard maps shrink once a burst is gone: back to the baseline, give or
        // take a few small tables.
        assert!(left < 16 * 1024, "round {round}: {left} B still held");
    }
}
