// `cargo run -p tower-sse-chat` (or `cargo run --example chat` from the
// repository's root): the chat, configured by the environment (see the
// crate's docs).

/// jemalloc, with its background purging thread (turned on in `main`), gives
/// freed memory back to the system within seconds once connections leave;
/// glibc's allocator kept it (BENCHMARKS.md, "Memory given back").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Pages freed for `dirty_decay_ms` (10 s) are returned by a background
    // thread, even while the server is idle. Best effort.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    chat::run().await
}
