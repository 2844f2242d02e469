//! The chat: instant messaging over Server-Sent Events, on one node or several.
//!
//! ```text
//! cargo run --example chat
//! # then open http://127.0.0.1:3000 in two browser windows
//! ```
//!
//! The chat is an application of its own, with modules by concern, in
//! `examples/chat/` (crate `tower-sse-chat`, also `cargo run -p
//! tower-sse-chat`); this file only starts the same `main`, so that the
//! command above runs it from the repository's root. Its environment (`ADDR`,
//! `HEARTBEAT_MS`, `TLS`, `REDIS_URL`, `NATS_URL`, `PRESENCE_TTL_MS`) is
//! described there.

include!("chat/src/main.rs");
