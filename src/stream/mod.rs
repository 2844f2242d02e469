//! One stream's lifecycle, shared by [`SseBody`](crate::SseBody) and the
//! layer's body so that the two cannot drift: heartbeats while idle
//! ([`KeepAlive`]), graceful shutdown ([`Shutdown`]), a maximum lifetime, the
//! layer's stream count, and the end report ([`EndReason`], [`EndReport`],
//! [`EndHandle`]).
//!
//! - `lifecycle.rs`: what a body asks before and after each poll of its
//!   producer (a heartbeat due, a stop due, the end);
//! - `heartbeat.rs`: [`KeepAlive`] and the one heartbeat rule (the body's
//!   setting, else the layer's);
//! - `shutdown.rs`: [`Shutdown`] and its grace period;
//! - `end.rs`: how a stream ended (decided in one place, `Outcome::reason`)
//!   and who is told;
//! - `report.rs`: the counts of one stream and its end report, sent once;
//! - `link.rs`: how a body made inside a layered service finds its layer;
//! - `permit.rs`: a stream's slot in the layer's count;
//! - `trace.rs`: a stream's span and its end event (feature `tracing`).

pub(crate) mod end;
pub(crate) mod heartbeat;
pub(crate) mod lifecycle;
pub(crate) mod link;
pub(crate) mod permit;
pub(crate) mod report;
pub(crate) mod shutdown;
pub(crate) mod trace;

pub use self::{
    end::{drop_stalled, EndHandle, EndReason, EndReport, Ended},
    heartbeat::KeepAlive,
    shutdown::{Drained, Shutdown, Triggered},
};
