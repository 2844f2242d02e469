//! A client that behaves like a browser's `EventSource`: it decodes the stream
//! with the crate's own `Decoder`, honours `retry:` (capped), reconnects with
//! `Last-Event-ID` set to the last `id:` it received, and, as behind a load
//! balancer without sticky sessions, lands on another node on every
//! reconnect. It logs every event and connection boundary, and the longest
//! silence on an open stream.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::watch;
use tower_sse::{decode::Frame, Decoder};

use super::{
    history::{ClientEntry, ClientLog, Clock, Silence},
    http::{open_sse, Stream},
    rng::Rng,
};

/// `EventSource`'s reconnection delay before any `retry:` (browsers use about
/// 3 s; shorter here so that a short campaign reconnects often).
const DEFAULT_RETRY: Duration = Duration::from_millis(300);
/// A `retry:` above this is capped, so that a client never sits out a large
/// part of the campaign.
const MAX_RETRY: Duration = Duration::from_secs(1);

pub struct ClientSpec {
    pub name: String,
    pub room: String,
    /// The nodes' ports; the client starts on `first_node`.
    pub nodes: Vec<u16>,
    pub first_node: usize,
    pub heartbeat: Duration,
    pub rng: Rng,
}

/// Runs until `stop` turns `true`; `open` tells whether a stream is open now.
pub async fn run(
    mut spec: ClientSpec,
    clock: Clock,
    open: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) -> ClientLog {
    let mut log = ClientLog {
        name: spec.name.clone(),
        room: spec.room.clone(),
        ..ClientLog::default()
    };
    let mut node = spec.first_node;
    let mut last_id: Option<String> = None;
    let mut retry = DEFAULT_RETRY;
    // A stream silent for this long is given up on (a browser would wait
    // forever; the silence is reported by the heartbeat check anyway).
    let stall_after = spec.heartbeat * 3 + Duration::from_secs(2);
    let mut first = true;
    while !*stop.borrow() {
        if !first {
            let wait = retry + spec.rng.millis(0, 100);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
            node = spec.rng.other(node, spec.nodes.len());
        }
        first = false;
        log.entries.push(ClientEntry::Connect {
            at: clock.now(),
            node,
            last_id: last_id.clone(),
        });
        let opening = open_sse(spec.nodes[node], &spec.room, &spec.name, last_id.as_deref());
        let opened = tokio::select! {
            opened = opening => opened,
            _ = stop.changed() => break,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(why) => {
                log.entries.push(ClientEntry::Failed {
                    at: clock.now(),
                    why,
                });
                continue;
            }
        };
        log.entries.push(ClientEntry::Open { at: clock.now() });
        open.store(true, Ordering::SeqCst);
        let mut reading = Reading {
            log: &mut log,
            last_id: &mut last_id,
            retry: &mut retry,
            clock,
            node,
            heartbeat: spec.heartbeat,
        };
        let why = reading.read(&mut stream, stall_after, &mut stop).await;
        open.store(false, Ordering::SeqCst);
        log.entries.push(ClientEntry::Closed {
            at: clock.now(),
            why,
        });
    }
    log
}

struct Reading<'a> {
    log: &'a mut ClientLog,
    last_id: &'a mut Option<String>,
    retry: &'a mut Duration,
    clock: Clock,
    /// The node the stream is open to, and its heartbeat interval.
    node: usize,
    heartbeat: Duration,
}

impl Reading<'_> {
    /// Reads one stream to its end; returns why it ended.
    async fn read(
        &mut self,
        stream: &mut Stream,
        stall_after: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> String {
        let mut decoder =
            Decoder::new().with_last_event_id(self.last_id.clone().unwrap_or_default());
        let mut last_byte = self.clock.now();
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.changed() => return "the campaign is over".to_owned(),
                frame = tokio::time::timeout(stall_after, stream.body.frame()) => frame,
            };
            let now = self.clock.now();
            let frame = match frame {
                Err(_) => {
                    self.gap(now - last_byte, now);
                    return format!("stalled: no byte for {stall_after:?}");
                }
                Ok(None) => return "closed by the server".to_owned(),
                Ok(Some(Err(e))) => return format!("body error: {e}"),
                Ok(Some(Ok(frame))) => frame,
            };
            let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) else {
                continue;
            };
            self.gap(now - last_byte, now);
            last_byte = now;
            decoder.push(data);
            loop {
                match decoder.next_frame() {
                    Ok(Some(Frame::Event(ev))) => self.log.entries.push(ClientEntry::Event {
                        at: now,
                        kind: ev.event,
                        id: ev.id,
                        data: ev.data,
                    }),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => self.log.entries.push(ClientEntry::Event {
                        at: now,
                        kind: "decode-error".to_owned(),
                        id: String::new(),
                        data: e.to_string(),
                    }),
                }
            }
            // As `EventSource`: an empty `id:` clears the last event id, and
            // then no `Last-Event-ID` is sent.
            let id = decoder.last_event_id();
            *self.last_id = (!id.is_empty()).then(|| id.to_owned());
            if let Some(retry) = decoder.retry() {
                *self.retry = retry.min(MAX_RETRY);
            }
        }
    }

    fn gap(&mut self, gap: u64, at: u64) {
        if gap > self.log.max_gap {
            self.log.max_gap = gap;
            self.log.max_gap_at = at;
        }
        if gap > self.heartbeat.as_micros() as u64 {
            self.log.silences.push(Silence {
                start: at - gap,
                end: at,
                node: self.node,
            });
        }
    }
}

/// A fresh client's first `members` snapshot in `room`: its `names`.
pub async fn probe(port: u16, room: &str, name: &str) -> Result<Vec<String>, String> {
    let mut stream = open_sse(port, room, name, None).await?;
    let mut decoder = Decoder::new();
    let read = async {
        while let Some(frame) = stream.body.frame().await {
            let frame = frame.map_err(|e| format!("body error: {e}"))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            decoder.push(data);
            while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                let Frame::Event(ev) = frame else { continue };
                if ev.event != "members" {
                    continue;
                }
                let snapshot: Value = serde_json::from_str(&ev.data)
                    .map_err(|e| format!("members data is not JSON ({e}): {}", ev.data))?;
                let names = snapshot
                    .get("names")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("members without names: {}", ev.data))?;
                return names
                    .iter()
                    .map(|n| {
                        n.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("a name that is not a string: {n}"))
                    })
                    .collect();
            }
        }
        Err("the stream ended before a members snapshot".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .map_err(|_| "no members snapshot within 10 s".to_owned())?
}
