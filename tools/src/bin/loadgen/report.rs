//! The figures of a run, and the `RESULT` line for scripts.

use std::{sync::atomic::Ordering, time::Duration};

use crate::{client::Outcome, Error, Run};

/// Prints the figures and the `RESULT` line; an error if any delivery was wrong.
pub(crate) fn report(
    run: &Run,
    n: usize,
    outcomes: &[Outcome],
    (joined_at, posted_at, delivered_at): (Duration, Duration, Duration),
    [rss_before, rss_joined, rss_after, hwm]: [Option<u64>; 4],
    [server_cpu, own_cpu]: [Option<f64>; 2],
) -> Result<(), Error> {
    let m = run.m;
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let complete = outcomes.iter().filter(|o| o.complete).count();
    let subscribed = outcomes.iter().filter(|o| o.subscribed).count();
    let connects = sum(|o| o.connects);
    // A client that never got the last message lost it (and maybe more).
    let unfinished = outcomes.iter().filter(|o| !o.complete).count() + n - outcomes.len();
    let dups = sum(|o| o.dups) + run.late_dups.load(Ordering::SeqCst);
    let lost = sum(|o| o.lost);
    // Messages received once each (in order or not), against every message
    // to every client: the difference is what was lost or never arrived.
    let delivered = sum(|o| o.latencies_us.len());
    let expected = n * m;
    let cut_clients = outcomes.iter().filter(|o| o.cutoffs > 0).count();
    let (cutoffs, reconnects) = (sum(|o| o.cutoffs), sum(|o| o.reconnects));
    let reconnected = outcomes.iter().filter(|o| o.reconnects > 0).count();
    let reconnected_pct = 100.0 * reconnected as f64 / n.max(1) as f64;
    let (resets, gaps) = (sum(|o| o.resets), sum(|o| o.gaps));
    let post_retries = run.post_retries.load(Ordering::SeqCst);
    let mut errors: Vec<&str> = outcomes.iter().filter_map(|o| o.error.as_deref()).collect();
    errors.sort_unstable();
    errors.dedup();
    for e in errors.iter().take(5) {
        eprintln!("client error: {e}");
    }

    let mut last: Vec<u64> = outcomes.iter().filter_map(|o| o.last_latency_us).collect();
    last.sort_unstable();
    let mut all: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    all.sort_unstable();
    // From the first post to each client's last message: the whole backlog.
    let first_post_us = posted_at.as_micros() as u64;
    let mut drain: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| Some(o.done_at_us?.saturating_sub(first_post_us)))
        .collect();
    drain.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    let per_client = |kib: Option<u64>| match (rss_before, kib) {
        (Some(before), Some(kib)) => kib.saturating_sub(before) as f64 / n.max(1) as f64,
        _ => f64::NAN,
    };

    println!(
        "messages posted from {posted_at:.2?}, every client done at {delivered_at:.2?} \
         (bound {:.0?})",
        run.deadline - run.epoch
    );
    println!(
        "{complete}/{n} clients got the last of {m} messages; {dups} duplicates, {lost} lost \
         or out of order; {resets} reset and {gaps} gap notices; {} presence events received",
        sum(|o| o.presence)
    );
    println!(
        "{cut_clients} clients cut off ({cutoffs} streams ended by the server), {reconnected} \
         clients ({reconnected_pct:.2} %) reconnected, {reconnects} reconnections, {} failed \
         connection attempts; {post_retries} posts sent again (503 or no answer)",
        sum(|o| o.connect_errors)
    );
    println!(
        "last-message latency per client: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         every delivery: p50 {:.1} ms, p99 {:.1} ms",
        pct(&last, 0.50),
        pct(&last, 0.99),
        pct(&last, 1.0),
        pct(&all, 0.50),
        pct(&all, 0.99),
    );
    println!(
        "from the first post to a client's last message: p50 {:.1} ms, p99 {:.1} ms",
        pct(&drain, 0.50),
        pct(&drain, 0.99),
    );
    match (rss_before, rss_joined, rss_after, hwm) {
        (Some(b), Some(j), Some(a), Some(h)) => println!(
            "server RSS: {b} KiB before, {j} KiB joined, {a} KiB delivered, {h} KiB peak: \
             {:.1} KiB per client delivered, {:.1} KiB per client at peak",
            per_client(rss_after),
            per_client(hwm)
        ),
        _ => println!("server memory: not measured (set SERVER_PID)"),
    }
    let secs = |s: Option<f64>| s.unwrap_or(f64::NAN);
    println!(
        "CPU time from the first connection to the last delivery: server {:.1} s, loadgen {:.1} s",
        secs(server_cpu),
        secs(own_cpu)
    );
    println!(
        "RESULT n={n} m={m} subscribed={subscribed} connects={connects} delivered={delivered} expected={expected} complete={complete} unfinished={unfinished} dups={dups} lost={lost} \
         cut_clients={cut_clients} cutoffs={cutoffs} reconnected_clients={reconnected} \
         reconnected_pct={reconnected_pct:.2} reconnects={reconnects} resets={resets} gaps={gaps} \
         post_retries={post_retries} \
         p50_ms={:.1} p99_ms={:.1} max_ms={:.1} drain_p50_ms={:.1} drain_p99_ms={:.1} rss_kib_per_client={:.1} \
         peak_kib_per_client={:.1} joined_s={:.2} done_s={:.2} server_cpu_s={:.2} \
         loadgen_cpu_s={:.2}",
        pct(&last, 0.50),
        pct(&last, 0.99),
        pct(&last, 1.0),
        pct(&drain, 0.50),
        pct(&drain, 0.99),
        per_client(rss_after),
        per_client(hwm),
        joined_at.as_secs_f64(),
        delivered_at.as_secs_f64(),
        secs(server_cpu),
        secs(own_cpu),
    );
    if dups > 0 || lost > 0 || unfinished > 0 {
        return Err(format!(
            "{dups} duplicates, {lost} lost, {unfinished} clients without the last message"
        )
        .into());
    }
    Ok(())
}
