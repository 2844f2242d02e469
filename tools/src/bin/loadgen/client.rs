//! One client that behaves like a browser's `EventSource`, and its account.

use std::{net::SocketAddr, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Empty;
use hyper::{body::Incoming, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    time::{sleep, timeout_at, Instant},
};
use tower_sse::{decode::BodyDataStream, DecodeError, Decoder, EventStream};

use crate::{Error, Run};

/// One client's account.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) subscribed: bool,
    /// The last message arrived (every message, unless `lost` says otherwise).
    pub(crate) complete: bool,
    /// Microseconds from the time the last message was due to its delivery.
    pub(crate) last_latency_us: Option<u64>,
    /// When the last message arrived, in microseconds since the run began.
    pub(crate) done_at_us: Option<u64>,
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) dups: usize,
    /// Messages skipped over (out of order, or never delivered).
    pub(crate) lost: usize,
    /// Streams the server ended (or that failed) before the client was done.
    pub(crate) cutoffs: usize,
    /// Reconnection attempts (after a cut-off or a failed connection), each
    /// to the next node.
    pub(crate) reconnects: usize,
    pub(crate) connect_errors: usize,
    /// Streams opened (`200`): the first one and every reconnection that got
    /// through, each a join for the server.
    pub(crate) connects: usize,
    /// `reset` notices received (the store began a new epoch: the events
    /// that follow are the new epoch's, messages keep their sequence numbers).
    pub(crate) resets: usize,
    /// `gap` notices received (events the server no longer had).
    pub(crate) gaps: usize,
    /// Presence events received (`join`, `leave`).
    pub(crate) presence: usize,
    pub(crate) error: Option<String>,
}

/// One `EventSource`-like client; sends its [`Outcome`] once it has the last
/// message (or gave up), then keeps its connection open until `done`.
pub(crate) async fn client(
    run: &Run,
    i: usize,
    ready_tx: mpsc::Sender<bool>,
    outcome_tx: mpsc::Sender<Outcome>,
    mut done: watch::Receiver<bool>,
) {
    let mut outcome = Outcome::default();
    // What `EventSource` keeps across reconnections.
    let mut last_event_id = String::new();
    let mut retry = Duration::from_secs(3);
    let mut next = 0;
    let mut open = None;
    loop {
        if outcome.cutoffs + outcome.connect_errors > 0 {
            if outcome.reconnects >= run.max_reconnects {
                outcome.error = Some(format!("more than {} reconnections", run.max_reconnects));
                break;
            }
            outcome.reconnects += 1;
            if Instant::now() + retry.min(run.retry_cap) >= run.deadline {
                break;
            }
            sleep(retry.min(run.retry_cap)).await;
        }
        // Node i first, then the next one on every reconnection.
        let addr = run.addrs[(i + outcome.reconnects) % run.addrs.len()];
        let res = match timeout_at(run.deadline, connect(run, addr, i, &last_event_id)).await {
            Err(_) => break,
            Ok(Err(_)) => {
                outcome.connect_errors += 1;
                continue;
            }
            Ok(Ok(res)) => res,
        };
        if res.status() != 200 {
            // `EventSource` fails for good on any other status.
            outcome.error = Some(format!("status {}", res.status()));
            break;
        }
        outcome.connects += 1;
        if run.nchan && !outcome.subscribed {
            // nchan sends no snapshot: its headers say the subscriber is in.
            outcome.subscribed = true;
            let _ = ready_tx.send(true).await;
        }
        let decoder = Decoder::new().with_last_event_id(last_event_id.clone());
        let mut events = EventStream::with_decoder(BodyDataStream::new(res.into_body()), decoder);
        let ended = loop {
            let event = match timeout_at(run.deadline, events.next()).await {
                Err(_) => break false,
                Ok(None) | Ok(Some(Err(DecodeError::Body(_)))) => break true,
                // Oversized or malformed block: skipped, as a browser does.
                Ok(Some(Err(_))) => continue,
                Ok(Some(Ok(event))) => event,
            };
            match event.event.as_str() {
                "members" if !outcome.subscribed => {
                    outcome.subscribed = true;
                    let _ = ready_tx.send(true).await;
                }
                "message" => {
                    let now = run.epoch.elapsed().as_micros() as u64;
                    let Some((k, sent)) = sequence(run.nchan, &event.data) else {
                        outcome.error = Some(format!("unreadable message {:?}", event.data));
                        continue;
                    };
                    if k < next {
                        outcome.dups += 1;
                        continue;
                    }
                    outcome.lost += k - next;
                    next = k + 1;
                    let latency = now.saturating_sub(sent);
                    outcome.latencies_us.push(latency);
                    if next >= run.m {
                        outcome.last_latency_us = Some(latency);
                        outcome.done_at_us = Some(now);
                        outcome.complete = true;
                        break false;
                    }
                }
                "join" | "leave" => outcome.presence += 1,
                "reset" => outcome.resets += 1,
                "gap" => outcome.gaps += 1,
                _ => {}
            }
        };
        last_event_id = events.last_event_id().to_owned();
        if let Some(r) = events.retry() {
            retry = r;
        }
        if outcome.complete {
            open = Some(events);
            break;
        }
        if !ended {
            break; // the deadline
        }
        outcome.cutoffs += 1;
    }
    if !outcome.subscribed {
        let _ = ready_tx.send(false).await;
    }
    drop(ready_tx);
    let _ = outcome_tx.send(outcome).await;
    drop(outcome_tx);
    // Hold the connection, still reading: anything more is a duplicate.
    let Some(mut events) = open else { return };
    loop {
        tokio::select! {
            _ = done.wait_for(|d| *d) => return,
            event = events.next() => match event {
                Some(Ok(e)) if e.event == "message" => {
                    run.late_dups.fetch_add(1, Ordering::SeqCst);
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    let _ = done.wait_for(|d| *d).await;
}

/// The sequence number and post time (µs) in a message's text: `"K MICROS"`
/// (the chat's `data` is JSON with that `text`; nchan's is the text itself).
fn sequence(nchan: bool, data: &str) -> Option<(usize, u64)> {
    let value: serde_json::Value;
    let text = if nchan {
        data
    } else {
        value = serde_json::from_str(data).ok()?;
        value["text"].as_str()?
    };
    let (k, sent) = text.split_once(' ')?;
    Some((k.parse().ok()?, sent.parse().ok()?))
}

/// Opens one SSE request, with `Last-Event-ID` when there is one.
async fn connect(
    run: &Run,
    addr: SocketAddr,
    i: usize,
    last_event_id: &str,
) -> Result<Response<Incoming>, Error> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let path = if run.nchan {
        format!("/sub/{}", run.room)
    } else {
        format!("/sse?room={}&name=c{i}", run.room)
    };
    let mut req = Request::get(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    if !last_event_id.is_empty() {
        req = req.header("last-event-id", last_event_id);
    }
    Ok(sender
        .send_request(req.body(Empty::<Bytes>::new())?)
        .await?)
}
