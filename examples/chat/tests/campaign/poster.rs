//! A poster: sends messages to random nodes, each with an `Idempotency-Key`
//! unique to the message, and the key in its text (`key=K`) so that the checker
//! can tell deliveries of one message from another. On a `503` or no answer it
//! retries the same message with the same key on another node, until a `202`
//! or a bound; after some `202`s it sends the same message once more (a client
//! that lost the answer), which must change nothing. Every attempt is logged.

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::{
    history::{Answer, Attempt, Clock, PostLog},
    http::post,
    rng::Rng,
};

/// Attempts per message before giving up on it.
const MAX_ATTEMPTS: usize = 12;
/// Between a failed attempt and the next.
const BACKOFF: Duration = Duration::from_millis(200);
/// Percentage of acknowledged messages sent once more with the same key.
const RESEND_PERCENT: u64 = 15;

pub struct PosterSpec {
    pub name: String,
    pub rooms: Vec<String>,
    pub nodes: Vec<u16>,
    /// Makes the keys unique across runs sharing one Redis (and readable).
    pub tag: String,
    pub rng: Rng,
}

/// Posts until `stop` turns `true`; a message under way is finished first.
pub async fn run(
    mut spec: PosterSpec,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> Vec<PostLog> {
    let mut logs = Vec::new();
    let mut node = spec.rng.below(spec.nodes.len() as u64) as usize;
    for seq in 0.. {
        if *stop.borrow() {
            break;
        }
        let room = spec.rooms[spec.rng.below(spec.rooms.len() as u64) as usize].clone();
        let key = format!("{}-{}-{seq}", spec.tag, spec.name);
        let body = json!({"room": room, "name": spec.name, "text": format!("key={key}")});
        let mut log = PostLog {
            key: key.clone(),
            room,
            attempts: Vec::new(),
        };
        let mut resent = false;
        while log.attempts.len() < MAX_ATTEMPTS {
            node = spec.rng.other(node, spec.nodes.len());
            let start = clock.now();
            let answer = post(spec.nodes[node], &body, &key).await;
            let accepted = matches!(answer, Answer::Accepted(_));
            let retry = matches!(answer, Answer::Unavailable | Answer::Transport(_));
            log.attempts.push(Attempt {
                start,
                end: clock.now(),
                node,
                answer,
            });
            if accepted && !resent && spec.rng.chance(RESEND_PERCENT) {
                resent = true;
                continue;
            }
            if !retry {
                break;
            }
            tokio::time::sleep(BACKOFF).await;
        }
        logs.push(log);
        tokio::select! {
            _ = tokio::time::sleep(spec.rng.millis(50, 300)) => {}
            _ = stop.changed() => {}
        }
    }
    logs
}
