//! The pieces of `tests/fault_campaign.rs`, one concept per file: the seeded
//! PRNG, the logs both sides write, the private Redis, the cuttable proxies, the
//! chat nodes as processes, the EventSource-like clients, the posters, the fault
//! schedule, and the checker that reads the logs.

pub mod checker;
pub mod client;
pub mod faults;
pub mod history;
pub mod http;
pub mod node;
pub mod poster;
pub mod proxy;
pub mod redis;
pub mod rng;
