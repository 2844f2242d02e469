//! What the campaign records: every client's events and connection boundaries,
//! every poster's attempts and answers, and the faults, all stamped with one
//! clock. The checker reads only these logs.

use std::{fmt, time::Instant};

/// Microseconds since the campaign started, shared by every actor, so that an
/// acknowledgement and a subscription can be ordered.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// `12.345s`, for the logs.
pub struct At(pub u64);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1_000_000, (self.0 / 1_000) % 1_000)
    }
}

/// One line of a client's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEntry {
    /// A connection attempt to `node`, with the `Last-Event-ID` it sends.
    Connect {
        at: u64,
        node: usize,
        last_id: Option<String>,
    },
    /// `200` and `text/event-stream`: the stream is open.
    Open { at: u64 },
    /// The attempt failed (refused, an error status, a timeout).
    Failed { at: u64, why: String },
    /// An event, as the decoder dispatched it.
    Event {
        at: u64,
        kind: String,
        id: String,
        data: String,
    },
    /// The open stream ended (closed, an error, stalled, the campaign's end).
    Closed { at: u64, why: String },
}

impl ClientEntry {
    pub fn at(&self) -> u64 {
        match self {
            Self::Connect { at, .. }
            | Self::Open { at }
            | Self::Failed { at, .. }
            | Self::Event { at, .. }
            | Self::Closed { at, .. } => *at,
        }
    }
}

impl fmt::Display for ClientEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { at, node, last_id } => write!(
                f,
                "{} connect node {node} last-event-id {}",
                At(*at),
                last_id.as_deref().unwrap_or("-")
            ),
            Self::Open { at } => write!(f, "{} open", At(*at)),
            Self::Failed { at, why } => write!(f, "{} failed: {why}", At(*at)),
            Self::Event { at, kind, id, data } => {
                write!(f, "{} event {kind} id {id} data {data}", At(*at))
            }
            Self::Closed { at, why } => write!(f, "{} closed: {why}", At(*at)),
        }
    }
}

/// A client's whole history.
#[derive(Clone, Debug, Default)]
pub struct ClientLog {
    pub name: String,
    pub room: String,
    pub entries: Vec<ClientEntry>,
    /// The longest time between two bytes received on one open stream (from
    /// the response head to the first byte, then byte to byte), in µs, and
    /// when it ended.
    pub max_gap: u64,
    pub max_gap_at: u64,
    /// Every silence longer than a heartbeat, so that the checker can tell
    /// those a frozen node explains.
    pub silences: Vec<Silence>,
}

/// The answer to one `/send` attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `202 {"id": ...}`.
    Accepted(String),
    /// `503`: the contract says nothing was stored.
    Unavailable,
    /// Any other status, with the body: a harness or contract bug.
    Other(u16, String),
    /// No answer (refused, reset, timed out): the message may or may not have
    /// been stored.
    Transport(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub start: u64,
    pub end: u64,
    pub node: usize,
    pub answer: Answer,
}

/// One message and every attempt to post it (all with the same key).
#[derive(Clone, Debug, Default)]
pub struct PostLog {
    pub key: String,
    pub room: String,
    pub attempts: Vec<Attempt>,
}

impl PostLog {
    /// When the first attempt was sent: nothing of this message can be stored
    /// before it.
    pub fn first_sent(&self) -> u64 {
        self.attempts.first().map_or(0, |a| a.start)
    }

    /// The ids of the 202 answers, in order.
    pub fn accepted(&self) -> impl Iterator<Item = (&Attempt, &str)> {
        self.attempts.iter().filter_map(|a| match &a.answer {
            Answer::Accepted(id) => Some((a, id.as_str())),
            _ => None,
        })
    }
}

/// A fault as it was run.
#[derive(Clone, Debug)]
pub struct FaultRecord {
    pub start: u64,
    pub end: u64,
    pub what: String,
    /// Redis restarted empty: acknowledged messages and idempotency keys may be
    /// gone (the hub announces a new epoch).
    pub data_loss: bool,
    /// The node frozen (`SIGSTOP`) from `start` to `end`: its streams carry
    /// nothing meanwhile, heartbeats included.
    pub frozen: Option<usize>,
}

/// A silence longer than a heartbeat on one open stream, in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Silence {
    pub start: u64,
    pub end: u64,
    /// The node the stream was open to.
    pub node: usize,
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} .. {} {}", At(self.start), At(self.end), self.what)
    }
}

/// A fresh client's `members` snapshot after the quiet period, and who was
/// connected to the room around it.
#[derive(Clone, Debug)]
pub struct Probe {
    pub room: String,
    pub probe: String,
    pub names: Vec<String>,
    pub connected: Vec<String>,
}

/// The message key the posters put in every text (`key=K`).
pub fn key_of_text(text: &str) -> Option<&str> {
    text.strip_prefix("key=")
}

/// `OFFSET-EPOCH` as `(offset, epoch)`.
pub fn parse_id(id: &str) -> Option<(u64, &str)> {
    let (offset, epoch) = id.split_once('-')?;
    Some((offset.parse().ok()?, epoch))
}
