//! Instructions per event encoded, for `valgrind --tool=callgrind` (immune
//! to the wall-clock noise of a shared machine): the criterion bench
//! `benches/encode.rs` measures time against axum; this counts the work of
//! ours alone, to compare two builds of the encoder.
//!
//! ```sh
//! cargo build --release -p tower-sse-tools --bin encode_cost
//! tools/encode_cost.sh      # counts typical, multiline_20 and comment
//! ```
//!
//! `encode_cost CASE N` builds and encodes N events of the bench's CASE from
//! owned strings (as the bench's `ours_build_encode` does), dropping each.
//! Two counts, N = 10 000 and 30 000, cancel the start-up: the difference
//! divided by 20 000 is the cost of one event.

use std::hint::black_box;

use tower_sse::Event;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(case), Some(n)) = (args.next(), args.next()) else {
        eprintln!("usage: encode_cost typical|multiline_20|comment N");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N: a number");
    let json = r#"{"id":12345,"user":"alice","action":"update","items":[1,2,3,4,5],"ts":"2026-11-23T18:49:21Z","ok":true}"#;
    let lines: Vec<String> = (0..20)
        .map(|n| format!("line {n:02}: the quick brown fox jumps"))
        .collect();
    let lines = lines.join("\n");
    let build: Box<dyn Fn() -> Event> = match case.as_str() {
        "typical" => Box::new(|| {
            Event::default()
                .event("update")
                .and_then(|e| e.id(black_box("12345").to_owned()))
                .map(|e| e.data(black_box(json).to_owned()))
                .expect("a valid event")
        }),
        "multiline_20" => Box::new(|| Event::message(black_box(lines.as_str()).to_owned())),
        "comment" => Box::new(|| {
            Event::default().comment(black_box("keep-alive 2026-11-23T18:49:21Z").to_owned())
        }),
        other => {
            eprintln!("unknown case {other}: typical, multiline_20 or comment");
            std::process::exit(2);
        }
    };
    for _ in 0..n {
        drop(black_box(build().encode()));
    }
}
