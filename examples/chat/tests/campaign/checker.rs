//! The checker: reads every client's and poster's log (and the faults) and
//! lists what breaks the chat's contract (README.md, "Chat example"; the hub's
//! docs on `reset` in src/hub/mod.rs):
//!
//! 1. every acknowledged message reaches every client subscribed across it
//!    exactly once and in order, unless a `reset` excuses it;
//! 2. a message that only ever got `503` is never delivered;
//! 3. one `Idempotency-Key` is one message: one id in every `202`, one
//!    delivery per client between resets;
//! 4. presence converges (no ghost, no lost leave);
//! 5. no open stream stays silent longer than two heartbeats (plus slack).

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use serde_json::Value;

use super::history::{
    key_of_text, parse_id, Answer, At, ClientEntry, ClientLog, FaultRecord, PostLog, Probe,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    Delivery = 1,
    NoDeliveryAfter503 = 2,
    Idempotency = 3,
    Presence = 4,
    Heartbeat = 5,
}

impl Check {
    pub const ALL: [Self; 5] = [
        Self::Delivery,
        Self::NoDeliveryAfter503,
        Self::Idempotency,
        Self::Presence,
        Self::Heartbeat,
    ];
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Delivery => "acknowledged messages delivered exactly once, in order",
            Self::NoDeliveryAfter503 => "a message answered only 503 is never delivered",
            Self::Idempotency => "one idempotency key, one message",
            Self::Presence => "presence converges",
            Self::Heartbeat => "no open stream silent for more than two heartbeats",
        };
        write!(f, "check {} ({what})", *self as u8)
    }
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub check: Check,
    pub what: String,
    /// The client whose history shows it, and where (an entry index).
    pub client: Option<usize>,
    pub entry: Option<usize>,
}

pub struct Input<'a> {
    pub clients: &'a [ClientLog],
    pub posts: &'a [PostLog],
    pub probes: &'a [Probe],
    pub faults: &'a [FaultRecord],
    /// The longest silence allowed on an open stream, in µs.
    pub gap_bound: u64,
}

/// Whether `client` had a silence longer than the bound on an open stream
/// that no frozen node explains (a node stopped by `SIGSTOP` sends nothing,
/// heartbeats included, until it thaws).
fn silent_too_long(client: &ClientLog, input: &Input<'_>) -> bool {
    if client.silences.is_empty() {
        return client.max_gap > input.gap_bound;
    }
    client.silences.iter().any(|s| {
        s.end - s.start > input.gap_bound
            && !input
                .faults
                .iter()
                .any(|f| f.frozen == Some(s.node) && s.start <= f.end && f.start <= s.end)
    })
}

/// Every violation, in the order of the checks.
pub fn check(input: &Input<'_>) -> Vec<Violation> {
    let epochs = epoch_ages(input);
    let by_key: HashMap<&str, &PostLog> = input.posts.iter().map(|p| (p.key.as_str(), p)).collect();
    let mut out = Vec::new();
    let mut delivered_anywhere: HashMap<&str, (usize, usize)> = HashMap::new();
    for (c, client) in input.clients.iter().enumerate() {
        let seen = client_history(c, client, &by_key, &mut out);
        for (key, deliveries) in &seen.delivered {
            delivered_anywhere
                .entry(key)
                .or_insert((c, deliveries[0].1));
        }
        missing(c, client, &seen, input.posts, &epochs, &mut out);
        if silent_too_long(client, input) {
            out.push(Violation {
                check: Check::Heartbeat,
                what: format!(
                    "{}: {} ms without a byte on an open stream (bound {} ms), ending at {}",
                    client.name,
                    client.max_gap / 1000,
                    input.gap_bound / 1000,
                    At(client.max_gap_at)
                ),
                client: Some(c),
                entry: Some(index_at(client, client.max_gap_at)),
            });
        }
    }
    for post in input.posts {
        only_503(post, &delivered_anywhere, &mut out);
        one_id(post, input.faults, &mut out);
    }
    for probe in input.probes {
        presence(probe, &mut out);
    }
    out.sort_by_key(|v| v.check);
    out
}

/// When each epoch was first seen (in an answer or an event): "older" epochs
/// are the ones seen first. Epochs are random, so this is the only order.
fn epoch_ages<'a>(input: &Input<'a>) -> HashMap<&'a str, u64> {
    let mut ages: HashMap<&str, u64> = HashMap::new();
    let mut saw = |id: &'a str, at: u64| {
        if let Some((_, epoch)) = parse_id(id) {
            let age = ages.entry(epoch).or_insert(at);
            *age = (*age).min(at);
        }
    };
    for post in input.posts {
        for (attempt, id) in post.accepted() {
            saw(id, attempt.end);
        }
    }
    for client in input.clients {
        for entry in &client.entries {
            if let ClientEntry::Event { at, id, .. } = entry {
                saw(id, *at);
            }
        }
    }
    ages
}

/// What one client received.
#[derive(Default)]
struct Seen<'a> {
    /// When its first event arrived: it is subscribed from then on.
    subscribed: Option<u64>,
    /// Each message key: (id, entry index) of each delivery.
    delivered: HashMap<&'a str, Vec<(&'a str, usize)>>,
    /// The `after` id of each `reset`.
    resets: Vec<String>,
}

/// Walks one history: duplicates between resets, order within an epoch, and
/// deliveries under another id than the acknowledged one.
fn client_history<'a>(
    c: usize,
    client: &'a ClientLog,
    by_key: &HashMap<&str, &PostLog>,
    out: &mut Vec<Violation>,
) -> Seen<'a> {
    let mut seen = Seen::default();
    // Since the last reset: key → (id, entry), epoch → highest offset.
    let mut stretch: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut top: HashMap<&str, u64> = HashMap::new();
    let violation = |check, what: String, i| Violation {
        check,
        what: format!("{}: {what}", client.name),
        client: Some(c),
        entry: Some(i),
    };
    for (i, entry) in client.entries.iter().enumerate() {
        let ClientEntry::Event { at, kind, id, data } = entry else {
            continue;
        };
        seen.subscribed.get_or_insert(*at);
        if kind == "reset" {
            let after = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v.get("after")?.as_str().map(str::to_owned));
            match after {
                Some(after) => seen.resets.push(after),
                None => out.push(violation(
                    Check::Delivery,
                    format!("a reset without an `after` id: {data}"),
                    i,
                )),
            }
            stretch.clear();
            top.clear();
            continue;
        }
        if kind != "message" {
            continue;
        }
        let Some(key) = message_key(data) else {
            continue;
        };
        let Some((offset, epoch)) = parse_id(id) else {
            out.push(violation(
                Check::Delivery,
                format!("message {key} with an unreadable id {id:?}"),
                i,
            ));
            continue;
        };
        seen.delivered.entry(key).or_default().push((id, i));
        if let Some((first_id, _)) = stretch.get(key) {
            let check = if *first_id == id {
                Check::Delivery
            } else {
                Check::Idempotency
            };
            out.push(violation(
                check,
                format!(
                    "message {key} delivered twice since the last reset (ids {first_id} and {id})"
                ),
                i,
            ));
        }
        stretch.insert(key, (id, i));
        match top.get(epoch) {
            Some(&last) if last >= offset => out.push(violation(
                Check::Delivery,
                format!("message {key} ({id}) after offset {last} of the same epoch: out of order"),
                i,
            )),
            _ => {
                top.insert(epoch, offset);
            }
        }
        if let Some(acked) = by_key
            .get(key)
            .and_then(|p| p.accepted().next())
            .map(|a| a.1)
        {
            if acked != id && parse_id(acked).is_some_and(|(_, e)| e == epoch) {
                out.push(violation(
                    Check::Idempotency,
                    format!(
                        "message {key} delivered as {id} but acknowledged as {acked}: stored twice"
                    ),
                    i,
                ));
            }
        }
    }
    seen
}

/// The key in a `message` event's data (`{"text": "key=K", ...}`).
fn message_key(data: &str) -> Option<&str> {
    // The text is JSON-escaped in `data`; keys are plain ASCII, so the raw
    // slice between `"key=` and the next quote is the key itself.
    let start = data.find("\"key=")? + 5;
    let len = data[start..].find('"')?;
    let key = &data[start..start + len];
    // Only a message whose text is exactly `key=K`.
    let value: Value = serde_json::from_str(data).ok()?;
    (key_of_text(value.get("text")?.as_str()?) == Some(key)).then_some(key)
}

/// Check 1's other half: acknowledged messages sent after the client
/// subscribed that it never received, and no reset excuses.
fn missing(
    c: usize,
    client: &ClientLog,
    seen: &Seen<'_>,
    posts: &[PostLog],
    epochs: &HashMap<&str, u64>,
    out: &mut Vec<Violation>,
) {
    let Some(subscribed) = seen.subscribed else {
        return;
    };
    for post in posts {
        // Sent after the client subscribed, so stored after it: a message
        // acknowledged later but stored before the subscription (its first
        // attempt timed out, say) would rightly not be replayed to it.
        if post.room != client.room || post.first_sent() <= subscribed {
            continue;
        }
        let Some((attempt, id)) = post.accepted().next() else {
            continue;
        };
        if seen.delivered.contains_key(post.key.as_str()) {
            continue;
        }
        let Some((offset, epoch)) = parse_id(id) else {
            continue;
        };
        if !excused(&seen.resets, (offset, epoch), epochs) {
            out.push(Violation {
                check: Check::Delivery,
                what: format!(
                    "{}: message {} ({id}, acknowledged at {} by node {}) never delivered, and no reset excuses it",
                    client.name,
                    post.key,
                    At(attempt.end),
                    attempt.node
                ),
                client: Some(c),
                entry: Some(index_at(client, attempt.end)),
            });
        }
    }
}

/// Whether a `reset` whose `after` is in `resets` says that the message with
/// id `(offset, epoch)` may be missing: it is in an older epoch, or in the
/// same epoch at or before `after`.
fn excused(resets: &[String], (offset, epoch): (u64, &str), epochs: &HashMap<&str, u64>) -> bool {
    let age = |e: &str| epochs.get(e).copied().unwrap_or(u64::MAX);
    resets.iter().any(|after| match parse_id(after) {
        Some((after_offset, after_epoch)) if after_epoch == epoch => offset <= after_offset,
        Some((_, after_epoch)) => age(epoch) < age(after_epoch),
        None => false,
    })
}

/// Check 2: a message never acknowledged and answered only `503` (no
/// transport error, which could have stored it) must not be delivered.
fn only_503(post: &PostLog, delivered: &HashMap<&str, (usize, usize)>, out: &mut Vec<Violation>) {
    let only = !post.attempts.is_empty()
        && post
            .attempts
            .iter()
            .all(|a| matches!(a.answer, Answer::Unavailable));
    if let (true, Some(&(c, i))) = (only, delivered.get(post.key.as_str())) {
        out.push(Violation {
            check: Check::NoDeliveryAfter503,
            what: format!(
                "message {} got {} × 503 and no 202, yet it was delivered",
                post.key,
                post.attempts.len()
            ),
            client: Some(c),
            entry: Some(i),
        });
    }
}

/// Check 3: every `202` for one key carries the same id (unless Redis lost
/// its data, and the key with it, between two of them).
fn one_id(post: &PostLog, faults: &[FaultRecord], out: &mut Vec<Violation>) {
    let mut accepted = post.accepted();
    let Some((first, id)) = accepted.next() else {
        return;
    };
    for (later, other) in accepted {
        let lost = faults
            .iter()
            .any(|f| f.data_loss && f.start < later.end && f.end > first.start);
        if other != id && !lost {
            out.push(Violation {
                check: Check::Idempotency,
                what: format!(
                    "message {}: 202 with id {id} (node {}, {}) then 202 with id {other} (node {}, {})",
                    post.key,
                    first.node,
                    At(first.end),
                    later.node,
                    At(later.end)
                ),
                client: None,
                entry: None,
            });
        }
    }
}

/// Check 4: the probe's snapshot lists exactly who is connected (its own
/// name may or may not be in it: the snapshot is taken as it joins).
fn presence(probe: &Probe, out: &mut Vec<Violation>) {
    let mut names = probe.names.clone();
    if let Some(pos) = names.iter().position(|n| *n == probe.probe) {
        names.remove(pos);
    }
    let mut expected = probe.connected.clone();
    names.sort();
    expected.sort();
    if names == expected {
        return;
    }
    let mut left = expected.clone();
    let ghosts: Vec<&String> = names
        .iter()
        .filter(|n| match left.iter().position(|e| e == *n) {
            Some(pos) => {
                left.remove(pos);
                false
            }
            None => true,
        })
        .collect();
    out.push(Violation {
        check: Check::Presence,
        what: format!(
            "room {}: the snapshot lists {} names for {} connected clients; ghosts {ghosts:?}, missing {left:?}",
            probe.room,
            names.len(),
            expected.len()
        ),
        client: None,
        entry: None,
    });
}

/// Proves the checker is not vacuous on this run's own logs: removing one
/// delivered message from one client's history, or delivering it twice, must
/// be reported. Fails when no message was delivered at all.
pub fn self_check(input: &Input<'_>) -> Result<(), String> {
    let by_key: HashMap<&str, &PostLog> = input.posts.iter().map(|p| (p.key.as_str(), p)).collect();
    let epochs = epoch_ages(input);
    let candidate = input.clients.iter().enumerate().find_map(|(c, client)| {
        let seen = client_history(c, client, &by_key, &mut Vec::new());
        let subscribed = seen.subscribed?;
        client
            .entries
            .iter()
            .enumerate()
            .find_map(|(i, e)| match e {
                ClientEntry::Event { kind, id, data, .. } if kind == "message" => {
                    let key = message_key(data)?;
                    let post = by_key.get(key)?;
                    let wanted = post.first_sent() > subscribed
                        && post.accepted().next().is_some_and(|(_, acked)| acked == id)
                        && seen.delivered.get(key).is_some_and(|d| d.len() == 1)
                        && !excused(&seen.resets, parse_id(id)?, &epochs);
                    wanted.then(|| (c, i, key.to_owned()))
                }
                _ => None,
            })
    });
    let Some((c, i, key)) = candidate else {
        return Err("no client received an acknowledged message that a reset would not excuse: the campaign tested nothing".to_owned());
    };
    let found = |clients: &[ClientLog], what: &str| {
        check(&Input { clients, ..*input }).iter().any(|v| {
            v.check == Check::Delivery
                && v.client == Some(c)
                && v.what.contains(&key)
                && v.what.contains(what)
        })
    };
    let mut clients = input.clients.to_vec();
    let removed = clients[c].entries.remove(i);
    if !found(&clients, "never delivered") {
        return Err(format!(
            "the checker missed message {key} removed from {}'s history",
            clients[c].name
        ));
    }
    clients[c].entries.insert(i, removed.clone());
    clients[c].entries.insert(i + 1, removed);
    if !found(&clients, "twice") {
        return Err(format!(
            "the checker missed message {key} delivered twice to {}",
            clients[c].name
        ));
    }
    Ok(())
}

/// The index of the first entry at or after `at`.
fn index_at(client: &ClientLog, at: u64) -> usize {
    client
        .entries
        .iter()
        .position(|e| e.at() >= at)
        .unwrap_or(client.entries.len().saturating_sub(1))
}

/// A violation with the client's history around it.
pub fn render(v: &Violation, clients: &[ClientLog]) -> String {
    let mut text = format!("{}: {}", v.check, v.what);
    if let (Some(c), Some(i)) = (v.client, v.entry) {
        let entries = &clients[c].entries;
        let from = i.saturating_sub(12);
        let to = (i + 4).min(entries.len());
        text.push_str(&format!(
            "\n  history of {} (room {}), entries {from}..{to} of {}:",
            clients[c].name,
            clients[c].room,
            entries.len()
        ));
        for (n, entry) in entries[from..to].iter().enumerate() {
            let mark = if from + n == i { ">>" } else { "  " };
            text.push_str(&format!("\n  {mark} {entry}"));
        }
    }
    text
}

/// Which checks passed, and the first violation of each that failed.
pub fn summary(violations: &[Violation], clients: &[ClientLog]) -> String {
    let mut text = String::new();
    for check in Check::ALL {
        let mine: Vec<&Violation> = violations.iter().filter(|v| v.check == check).collect();
        match mine.first() {
            None => text.push_str(&format!("PASS {check}\n")),
            Some(first) => text.push_str(&format!(
                "FAIL {check}: {} violation(s); the first:\n{}\n",
                mine.len(),
                render(first, clients)
            )),
        }
    }
    text
}

/// Figures for the report: acknowledged, 503-only, deliveries, resets,
/// reconnects.
pub fn figures(clients: &[ClientLog], posts: &[PostLog]) -> String {
    let acked = posts
        .iter()
        .filter(|p| p.accepted().next().is_some())
        .count();
    let attempts: usize = posts.iter().map(|p| p.attempts.len()).sum();
    let unavailable = posts
        .iter()
        .flat_map(|p| &p.attempts)
        .filter(|a| a.answer == Answer::Unavailable)
        .count();
    let transport = posts
        .iter()
        .flat_map(|p| &p.attempts)
        .filter(|a| matches!(a.answer, Answer::Transport(_)))
        .count();
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut connects = 0;
    for entry in clients.iter().flat_map(|c| &c.entries) {
        match entry {
            ClientEntry::Event { kind, .. } => *kinds.entry(kind.as_str()).or_default() += 1,
            ClientEntry::Connect { .. } => connects += 1,
            _ => {}
        }
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    let max_gap = clients.iter().map(|c| c.max_gap).max().unwrap_or(0);
    let keys: HashSet<&str> = posts.iter().map(|p| p.key.as_str()).collect();
    format!(
        "{} messages ({} keys), {acked} acknowledged, {attempts} attempts ({unavailable} × 503, {transport} without answer); {connects} connection attempts by {} clients; events {kinds:?}; longest silence {} ms",
        posts.len(),
        keys.len(),
        clients.len(),
        max_gap / 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::history::Attempt;

    const S: u64 = 1_000_000;

    fn event(at: u64, kind: &str, id: &str, data: &str) -> ClientEntry {
        ClientEntry::Event {
            at,
            kind: kind.to_owned(),
            id: id.to_owned(),
            data: data.to_owned(),
        }
    }

    fn message(at: u64, id: &str, key: &str) -> ClientEntry {
        let data =
            serde_json::json!({"id": id, "room": "r", "name": "p", "text": format!("key={key}")});
        event(at, "message", id, &data.to_string())
    }

    fn reset(at: u64, after: &str) -> ClientEntry {
        event(at, "reset", after, &format!("{{\"after\":\"{after}\"}}"))
    }

    fn client(entries: Vec<ClientEntry>) -> ClientLog {
        ClientLog {
            name: "alice".to_owned(),
            room: "r".to_owned(),
            entries,
            max_gap: 0,
            max_gap_at: 0,
            silences: Vec::new(),
        }
    }

    fn post(key: &str, at: u64, answers: Vec<Answer>) -> PostLog {
        PostLog {
            key: key.to_owned(),
            room: "r".to_owned(),
            attempts: answers
                .into_iter()
                .enumerate()
                .map(|(n, answer)| Attempt {
                    start: at + n as u64 * 1000,
                    end: at + n as u64 * 1000 + 500,
                    node: n % 3,
                    answer,
                })
                .collect(),
        }
    }

    fn acked(key: &str, at: u64, id: &str) -> PostLog {
        post(key, at, vec![Answer::Accepted(id.to_owned())])
    }

    fn run(clients: &[ClientLog], posts: &[PostLog]) -> Vec<Violation> {
        check(&Input {
            clients,
            posts,
            probes: &[],
            faults: &[],
            gap_bound: 2 * S,
        })
    }

    fn checks(violations: &[Violation]) -> Vec<Check> {
        violations.iter().map(|v| v.check).collect()
    }

    fn members(at: u64, id: &str) -> ClientEntry {
        event(
            at,
            "members",
            id,
            r#"{"room":"r","you":"alice","names":[]}"#,
        )
    }

    #[test]
    fn a_clean_history_passes() {
        let c = client(vec![
            members(S, "0-aaaa"),
            message(3 * S, "1-aaaa", "k1"),
            ClientEntry::Closed {
                at: 4 * S,
                why: "closed".into(),
            },
            ClientEntry::Connect {
                at: 4 * S,
                node: 1,
                last_id: Some("1-aaaa".into()),
            },
            message(5 * S, "2-aaaa", "k2"),
        ]);
        let posts = [acked("k1", 2 * S, "1-aaaa"), acked("k2", 4 * S, "2-aaaa")];
        assert!(run(&[c], &posts).is_empty());
    }

    #[test]
    fn a_missing_message_is_caught_with_the_history_around_it() {
        let c = client(vec![members(S, "0-aaaa"), message(3 * S, "1-aaaa", "k1")]);
        let posts = [acked("k1", 2 * S, "1-aaaa"), acked("k2", 4 * S, "2-aaaa")];
        let v = run(std::slice::from_ref(&c), &posts);
        assert_eq!(checks(&v), [Check::Delivery]);
        assert!(v[0].what.contains("k2"), "{}", v[0].what);
        let text = render(&v[0], &[c]);
        assert!(text.contains("event message id 1-aaaa"), "{text}");
    }

    #[test]
    fn a_message_sent_before_the_subscription_is_not_expected() {
        let c = client(vec![members(3 * S, "1-aaaa")]);
        assert!(run(&[c], &[acked("k1", 2 * S, "1-aaaa")]).is_empty());
    }

    #[test]
    fn a_reset_excuses_what_is_at_or_before_its_after_id_only() {
        let posts = [
            acked("k1", 2 * S, "1-aaaa"),
            acked("k2", 3 * S, "2-aaaa"),
            acked("k3", 4 * S, "3-aaaa"),
        ];
        // `after` 2: k1 and k2 may be missing, k3 may not.
        let c = client(vec![members(S, "0-aaaa"), reset(5 * S, "2-aaaa")]);
        let v = run(&[c], &posts);
        assert_eq!(checks(&v), [Check::Delivery]);
        assert!(v[0].what.contains("k3"), "{}", v[0].what);
    }

    #[test]
    fn a_reset_into_a_newer_epoch_excuses_the_older_one() {
        // Redis lost k1 and k2; the room started again in epoch bbbb.
        let posts = [
            acked("k1", 2 * S, "1-aaaa"),
            acked("k2", 3 * S, "2-aaaa"),
            acked("k3", 6 * S, "1-bbbb"),
        ];
        let c = client(vec![
            members(S, "0-aaaa"),
            reset(5 * S, "0-bbbb"),
            message(7 * S, "1-bbbb", "k3"),
        ]);
        assert!(run(&[c], &posts).is_empty());
    }

    #[test]
    fn a_duplicate_between_resets_is_caught_but_not_across_one() {
        let posts = [acked("k1", 2 * S, "1-aaaa")];
        let twice = client(vec![
            members(S, "0-aaaa"),
            message(3 * S, "1-aaaa", "k1"),
            message(4 * S, "1-aaaa", "k1"),
        ]);
        let v = run(&[twice], &posts);
        assert_eq!(checks(&v), [Check::Delivery, Check::Delivery]);
        assert!(v.iter().any(|v| v.what.contains("twice")));
        let across = client(vec![
            members(S, "0-aaaa"),
            message(3 * S, "1-aaaa", "k1"),
            reset(4 * S, "0-aaaa"),
            message(5 * S, "1-aaaa", "k1"),
        ]);
        assert!(run(&[across], &posts).is_empty());
    }

    #[test]
    fn out_of_order_within_an_epoch_is_caught() {
        let posts = [acked("k1", 2 * S, "1-aaaa"), acked("k2", 3 * S, "2-aaaa")];
        let c = client(vec![
            members(S, "0-aaaa"),
            message(4 * S, "2-aaaa", "k2"),
            message(5 * S, "1-aaaa", "k1"),
        ]);
        let v = run(&[c], &posts);
        assert_eq!(checks(&v), [Check::Delivery]);
        assert!(v[0].what.contains("out of order"), "{}", v[0].what);
    }

    #[test]
    fn a_delivered_503_only_message_is_caught_but_not_one_without_answer() {
        let posts = [
            post("k1", 2 * S, vec![Answer::Unavailable, Answer::Unavailable]),
            post(
                "k2",
                2 * S,
                vec![Answer::Unavailable, Answer::Transport("reset".into())],
            ),
        ];
        let c = client(vec![
            members(S, "0-aaaa"),
            message(4 * S, "1-aaaa", "k1"),
            message(5 * S, "2-aaaa", "k2"),
        ]);
        let v = run(&[c], &posts);
        assert_eq!(checks(&v), [Check::NoDeliveryAfter503]);
        assert!(v[0].what.contains("k1"), "{}", v[0].what);
    }

    #[test]
    fn one_key_two_ids_is_caught_in_answers_and_in_deliveries() {
        let two_answers = post(
            "k1",
            2 * S,
            vec![
                Answer::Accepted("1-aaaa".into()),
                Answer::Accepted("2-aaaa".into()),
            ],
        );
        let c = client(vec![
            members(S, "0-aaaa"),
            message(3 * S, "1-aaaa", "k1"),
            message(4 * S, "2-aaaa", "k1"),
        ]);
        let v = run(&[c], std::slice::from_ref(&two_answers));
        // The second delivery: twice since the reset, and not the acked id;
        // and the two answers.
        assert_eq!(
            checks(&v),
            [Check::Idempotency, Check::Idempotency, Check::Idempotency]
        );
        // Redis lost the key between the two answers: excused.
        let loss = FaultRecord {
            start: 2 * S + 600,
            end: 2 * S + 900,
            what: "redis SHUTDOWN NOSAVE".into(),
            data_loss: true,
            frozen: None,
        };
        let v = check(&Input {
            clients: &[],
            posts: &[two_answers],
            probes: &[],
            faults: &[loss],
            gap_bound: 2 * S,
        });
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn ghosts_and_lost_members_are_caught() {
        let probe = |names: &[&str], connected: &[&str]| Probe {
            room: "r".into(),
            probe: "probe".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            connected: connected.iter().map(|n| n.to_string()).collect(),
        };
        let probes = [
            probe(&["a", "b", "probe"], &["b", "a"]),
            probe(&["a", "b"], &["a", "b"]),
            probe(&["a", "a", "b"], &["a", "b"]),
            probe(&["a"], &["a", "b"]),
        ];
        let v = check(&Input {
            clients: &[],
            posts: &[],
            probes: &probes,
            faults: &[],
            gap_bound: 2 * S,
        });
        assert_eq!(checks(&v), [Check::Presence, Check::Presence]);
        assert!(v[0].what.contains(r#"ghosts ["a"]"#), "{}", v[0].what);
        assert!(v[1].what.contains(r#"missing ["b"]"#), "{}", v[1].what);
    }

    #[test]
    fn the_self_check_needs_a_delivered_message_and_finds_its_mutations() {
        let c = client(vec![members(S, "0-aaaa"), message(3 * S, "1-aaaa", "k1")]);
        let posts = [acked("k1", 2 * S, "1-aaaa")];
        let input = |clients| Input {
            clients,
            posts: &posts,
            probes: &[],
            faults: &[],
            gap_bound: 2 * S,
        };
        assert_eq!(self_check(&input(std::slice::from_ref(&c))), Ok(()));
        let idle = client(vec![members(S, "0-aaaa")]);
        assert!(self_check(&input(&[idle])).is_err());
    }

    #[test]
    fn a_long_silence_is_caught() {
        let mut c = client(vec![members(S, "0-aaaa")]);
        c.max_gap = 3 * S;
        c.max_gap_at = 4 * S;
        assert_eq!(checks(&run(&[c], &[])), [Check::Heartbeat]);
    }

    #[test]
    fn a_silence_is_excused_only_by_a_freeze_of_its_own_node() {
        use crate::campaign::history::Silence;
        let mut c = client(vec![members(S, "0-aaaa")]);
        c.max_gap = 3 * S;
        c.max_gap_at = 4 * S;
        c.silences = vec![Silence {
            start: S,
            end: 4 * S,
            node: 1,
        }];
        let freeze = |node| FaultRecord {
            start: 2 * S,
            end: 3 * S,
            what: format!("freeze node {node}"),
            data_loss: false,
            frozen: Some(node),
        };
        let run_with = |faults: &[FaultRecord]| {
            check(&Input {
                clients: std::slice::from_ref(&c),
                posts: &[],
                probes: &[],
                faults,
                gap_bound: 2 * S,
            })
        };
        assert_eq!(checks(&run_with(&[freeze(1)])), []);
        assert_eq!(checks(&run_with(&[freeze(0)])), [Check::Heartbeat]);
        assert_eq!(checks(&run_with(&[])), [Check::Heartbeat]);
    }
}
