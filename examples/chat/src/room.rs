//! A room: its members on this node, the snapshot a new member gets, and the
//! presence events, published in batches.
//!
//! # Presence that scales
//!
//! A room of at most [`PRESENCE_FULL_MAX`] members (`PRESENCE_FULL_MAX` in the
//! environment) sends a `join` and a `leave` per member, and a snapshot that
//! lists every member. Above it, a member's `join` would go to every member: a
//! join storm of N members is N² events. So a big room sends, instead:
//!
//! - a `members` snapshot with `count` and at most [`BIG_ROOM_NAMES`] (100)
//!   names;
//! - `count` events (`{"id","room","count"}`), at most one per second per room
//!   and node (nodes that read the same count in the same second store it
//!   once: the second and the count are the event's idempotency key);
//! - a `presence` event when the room crosses the threshold, either way:
//!   `{"id","room","mode":"count","count","names"}` going up (at most
//!   [`BIG_ROOM_NAMES`] names), `{"id","room","mode":"full","count","names"}`
//!   coming back (the whole list); either's names supersede the list a client
//!   had.
//!
//! Each node counts the room from [`Presence::roster`], whose cost does not
//! grow with the room: in a big room a join reads it at most once per second
//! per node (the snapshot lists it as of then), and every batch asks only for
//! the count.

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;
use tower_sse::{EncodedEvent, Event};
use tower_sse_hub::{Cursor, EventId, Hub, HubConfig, HubError, Presence, Roster};

/// A member's stream: one room's, or several rooms' merged.
pub(crate) type Events = std::pin::Pin<Box<dyn futures_core::Stream<Item = EncodedEvent> + Send>>;

/// Room-sized history: a join storm of 1 000 members is 1 000 `join` events,
/// which a member that connected first reads from the shared history at its own
/// pace (a cursor each, no copy), so the lag bound is the history, 16 384
/// events or 8 MiB per room, shared by all its members.
pub(crate) fn hub_config() -> HubConfig {
    HubConfig::new()
        .history_len(16 * 1024)
        .history_bytes(8 * 1024 * 1024)
        .queue_capacity(16 * 1024)
}

/// The default largest room that sends a `join` and a `leave` per member (and
/// lists every member in its snapshot); above it, counts (see the [module's
/// docs](self)).
pub const PRESENCE_FULL_MAX: usize = 1000;

/// How many names a big room's snapshot (and its crossing event) lists: a
/// sample to show beside the count, small so that a join storm's snapshots
/// cost little to send (at most `PRESENCE_FULL_MAX` either way).
pub const BIG_ROOM_NAMES: usize = 100;

/// How often a big room's count is published, at most, and how long a node
/// uses a roster it read for the snapshots of big rooms.
pub const PRESENCE_TICK: Duration = Duration::from_secs(1);

/// How long joins and leaves wait to be published together: in a join storm a
/// member is woken once per batch instead of once per join. Each join and leave
/// is still its own event, with its own id.
pub(crate) const PRESENCE_BATCH: Duration = Duration::from_millis(50);

pub(crate) struct Chat {
    pub(crate) hub: Hub,
    /// Who is in each room (on every node when it is on Redis or NATS).
    pub(crate) presence: Arc<dyn Presence>,
    /// The rooms with someone connected to this node.
    pub(crate) rooms: Mutex<HashMap<String, Arc<Room>>>,
    pub(crate) guests: AtomicU64,
    /// The largest room with a `join` and `leave` per member.
    pub(crate) full_max: usize,
}

/// A room on this node. A join (its subscription and snapshot), a leave and a
/// batch's publication run one at a time per room, so on one node a snapshot and
/// the events that follow it never disagree: the snapshot lists what
/// `Presence` holds, which changes only with the batch that publishes the
/// events. Across nodes, a join or leave on another node at the same moment may
/// show in both the snapshot and an event that follows it (or in neither).
#[derive(Default)]
pub(crate) struct Room {
    members: tokio::sync::Mutex<Members>,
}

/// A join or leave waiting for the next batch.
struct Change {
    name: String,
    joined: bool,
    /// Already in `Presence` (a member of a node that died, taken by this
    /// one; or one of this node's members announced gone and still here).
    written: bool,
}

/// Whether a room sends presence per member or counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    /// A `join` and a `leave` per member.
    #[default]
    Full,
    /// `count` events, at most one per [`PRESENCE_TICK`].
    Count,
}

/// A room's members, as this node sees them.
#[derive(Default)]
pub struct Members {
    /// This node's connections to the room.
    connections: usize,
    /// Joins and leaves not yet published, in order.
    pending: Vec<Change>,
    /// A batch is scheduled.
    scheduled: bool,
    /// Removed from `Chat::rooms`: a join that finds it looks the room up again.
    gone: bool,
    /// The member list of the last snapshot, and its JSON: one buffer shared by
    /// the snapshots of everyone who joins while the list stays the same.
    list: Option<(Vec<String>, Bytes)>,
    /// What this node last told the room.
    mode: Mode,
    /// The roster last read, when, and the room's position then: snapshots
    /// use it while the position stays (a small room) or for a
    /// [`PRESENCE_TICK`] (a big one).
    roster: Option<(Instant, EventId, Roster)>,
    /// In a big room: the count last published, and when.
    told: Option<(Instant, usize)>,
}

impl Members {
    /// The `members` snapshot of a member joining at `position`, when the room
    /// holds `names`: `{"room","you","names","as_of"}`, with the id `position`;
    /// with `count` (a big room, whose `names` are only some), `{"room","you",
    /// "names","count","as_of"}`.
    ///
    /// Its own bytes are the head (up to `"names":`) and the tail; the list
    /// between them is shared with every other snapshot of the same list (in a
    /// join storm, everyone who joins within one presence batch). So a room
    /// of N members whose members all stop reading holds one list per batch,
    /// not one per member: O(N) in total, not O(N²).
    pub fn snapshot(
        &mut self,
        room: &str,
        you: &str,
        position: EventId,
        names: Vec<String>,
        count: Option<usize>,
    ) -> EncodedEvent {
        let list = match &self.list {
            Some((cached, list)) if *cached == names => list.clone(),
            _ => {
                let list =
                    Bytes::from(serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned()));
                self.list = Some((names, list.clone()));
                list
            }
        };
        // JSON strings escape line breaks, so the event is one `data:` line.
        let head = format!(
            "event: members\nid: {position}\ndata: {{\"room\":{},\"you\":{},\"names\":",
            Value::from(room),
            Value::from(you),
        );
        let count = count.map_or_else(String::new, |n| format!(",\"count\":{n}"));
        let tail = format!("{count},\"as_of\":\"{position}\"}}\n\n");
        // Strings, ending with a blank line: `from_parts` cannot refuse them.
        EncodedEvent::from_parts([Bytes::from(head), list, Bytes::from(tail)])
            .unwrap_or_else(|_| EncodedEvent::comment("members: unavailable"))
    }
}

impl Chat {
    fn room(&self, room: &str) -> Arc<Room> {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        rooms.entry(room.to_owned()).or_default().clone()
    }

    /// Subscribes `name` to `rooms` (one or more, distinct, at most
    /// [`MAX_TOPICS`](tower_sse_hub::MAX_TOPICS)) after `last` and queues the member's `join` in each.
    /// The stream replays what the client missed, then this connection's
    /// `members` snapshot of each room (as of the end of that room's replay,
    /// with that id), then live events, its own `join`s among them (in rooms of
    /// at most `full_max` members).
    ///
    /// One room is a room's own stream, with the room's ids; several are one
    /// [`MultiSubscriber`](tower_sse_hub::MultiSubscriber), whose ids are a composite cursor over all of them.
    /// A cursor of either kind positions the rooms it covers.
    pub(crate) async fn join(
        self: &Arc<Self>,
        rooms: &[String],
        name: &str,
        last: Option<&str>,
    ) -> Result<Events, HubError> {
        let mut order: Vec<&String> = rooms.iter().collect();
        order.sort();
        'retry: loop {
            // Each room's lock, in name order (so two joins cannot deadlock).
            let entries: Vec<Arc<Room>> = order.iter().map(|room| self.room(room)).collect();
            let mut locked = Vec::with_capacity(entries.len());
            for entry in &entries {
                let members = entry.members.lock().await;
                if members.gone {
                    continue 'retry;
                }
                locked.push(members);
            }
            let mut members: Vec<(&String, _)> = order.iter().copied().zip(locked).collect();
            if let [(room, members)] = &mut members[..] {
                let cursor = last.and_then(|last| match last.parse::<Cursor>() {
                    Ok(cursor) => cursor.get(room).map(|id| id.to_string()),
                    Err(_) => Some(last.to_owned()),
                });
                let subscriber = self.hub.subscribe(room, cursor.as_deref()).await?;
                let snapshot = self
                    .admit(members, room, name, subscriber.position())
                    .await?;
                return Ok(Box::pin(subscriber.then(snapshot)));
            }
            let mut stream = self.hub.subscribe_many(rooms, last).await?;
            for room in rooms {
                let Some((_, members)) = members.iter_mut().find(|(r, _)| *r == room) else {
                    continue;
                };
                let Some(position) = stream.position(room) else {
                    continue;
                };
                let snapshot = self.admit(members, room, name, position).await?;
                stream = stream.then(room, snapshot);
            }
            return Ok(Box::pin(stream));
        }
    }

    /// A new connection of `name` to `room` (its members locked), whose
    /// subscription's replay ends at `position`: its `members` snapshot, and
    /// its `join` queued.
    async fn admit(
        self: &Arc<Self>,
        members: &mut Members,
        room: &str,
        name: &str,
        position: EventId,
    ) -> Result<EncodedEvent, HubError> {
        // In a small room the roster read for an earlier snapshot holds while
        // the room's history has not moved: any node writes a change to
        // `Presence` before it publishes its event, so a change not in the
        // roster has its event after `position`. In a big one, for a tick.
        let fresh = |at: &Instant, read_at: &EventId| match members.mode {
            Mode::Full => *read_at == position,
            Mode::Count => at.elapsed() < PRESENCE_TICK,
        };
        let roster = match &members.roster {
            Some((at, read_at, roster)) if fresh(at, read_at) => roster.clone(),
            _ => {
                let limit = match members.mode {
                    Mode::Full => self.full_max,
                    Mode::Count => self.big_names(),
                };
                let roster = self.presence.roster(room, limit).await?;
                if roster.count > self.full_max && members.mode == Mode::Full {
                    // The next batch announces it.
                    members.mode = Mode::Count;
                    members.told = None;
                }
                members.roster = Some((Instant::now(), position, roster.clone()));
                roster
            }
        };
        let count = (members.mode == Mode::Count).then_some(roster.count);
        let mut names = roster.names;
        if count.is_some() {
            names.truncate(self.big_names());
        }
        let snapshot = members.snapshot(room, name, position, names, count);
        members.connections += 1;
        self.queue(members, room, name, true, false);
        Ok(snapshot)
    }

    /// Queues the member's `leave`.
    pub(crate) async fn leave(self: &Arc<Self>, room: &str, name: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.connections = members.connections.saturating_sub(1);
        self.queue(&mut members, room, name, false, false);
    }

    /// Queues the `leave` (`joined` false) or the `join` of a member whose
    /// entry `Presence` has already changed: one of a node that died, taken by
    /// this one, or one of this node's members announced gone and still here.
    pub(crate) async fn announce_taken(self: &Arc<Self>, room: &str, name: &str, joined: bool) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        self.queue(&mut members, room, name, joined, true);
    }

    fn queue(
        self: &Arc<Self>,
        members: &mut Members,
        room: &str,
        name: &str,
        joined: bool,
        written: bool,
    ) {
        members.pending.push(Change {
            name: name.to_owned(),
            joined,
            written,
        });
        self.schedule(members, room, PRESENCE_BATCH);
    }

    fn schedule(self: &Arc<Self>, members: &mut Members, room: &str, after: Duration) {
        if !members.scheduled {
            members.scheduled = true;
            let (chat, room) = (self.clone(), room.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                chat.announce(&room).await;
            });
        }
    }

    /// Publishes the queued joins and leaves of `room` and records them in
    /// `Presence`: each its own event in a room of at most `full_max` members,
    /// a count at most once per [`PRESENCE_TICK`] above it, and the crossing
    /// either way.
    async fn announce(self: &Arc<Self>, room: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.scheduled = false;
        let pending = std::mem::take(&mut members.pending);
        let changed = !pending.is_empty();
        for change in &pending {
            // `Presence` counts the change even when it cannot write it, and
            // writes it at its next renewal.
            let _ = match (change.written, change.joined) {
                (true, _) => Ok(()),
                (false, true) => self.presence.join(room, &change.name).await,
                (false, false) => self.presence.leave(room, &change.name).await,
            };
        }
        if members.mode == Mode::Full && changed {
            // `Presence` changed: the next snapshot reads it again.
            members.roster = None;
        }
        let count = self.presence.roster(room, 0).await.map(|r| r.count);
        // A batch that makes the room big announces that instead of its joins.
        let big = count.as_ref().is_ok_and(|n| *n > self.full_max);
        if members.mode == Mode::Full && !big {
            for change in pending {
                let kind = if change.joined { "join" } else { "leave" };
                // The history keeps it even when nobody is left to hear it now.
                // A store that cannot be reached loses presence events, never
                // messages.
                let _ = self
                    .hub
                    .publish_with(room, |id| presence_event(kind, id, room, &change.name))
                    .await;
            }
        }
        match count {
            Ok(count) => self.tell_count(&mut members, room, changed, count).await,
            // `Presence` unreachable: count again next tick.
            Err(_) if members.mode == Mode::Count => {
                self.schedule(&mut members, room, PRESENCE_TICK);
            }
            Err(_) => {}
        }
        if members.connections == 0 && members.pending.is_empty() && !members.scheduled {
            members.gone = true;
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if rooms.get(room).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                rooms.remove(room);
            }
        }
    }

    /// After a batch, the room having `count` members: crosses the threshold
    /// either way (announced), or
    /// publishes a big room's count, at most once per [`PRESENCE_TICK`]; one
    /// more batch is scheduled for what could not be told yet.
    async fn tell_count(
        self: &Arc<Self>,
        members: &mut Members,
        room: &str,
        changed: bool,
        count: usize,
    ) {
        let full_max = self.full_max;
        match (members.mode, members.told) {
            (Mode::Full, _) => {
                if count > full_max {
                    self.turn_big(members, room, count).await;
                }
            }
            // Turned big at a join: announce it now.
            (Mode::Count, None) => self.turn_big(members, room, count).await,
            (Mode::Count, Some((at, told))) => {
                let wait = PRESENCE_TICK.saturating_sub(at.elapsed());
                if !wait.is_zero() {
                    if changed || count != told {
                        self.schedule(members, room, wait);
                    }
                } else if count <= full_max {
                    self.back_to_full(members, room).await;
                } else if count != told {
                    self.publish_count(members, room, count).await;
                }
            }
        }
    }

    /// How many names a big room lists.
    fn big_names(&self) -> usize {
        BIG_ROOM_NAMES.min(self.full_max)
    }

    /// A big room that shrank to `full_max` members: announces the whole list
    /// (`presence` with `"mode":"full"`), then a `join` and a `leave` per member.
    async fn back_to_full(self: &Arc<Self>, members: &mut Members, room: &str) {
        let Ok(roster) = self.presence.roster(room, self.full_max).await else {
            self.schedule(members, room, PRESENCE_TICK);
            return;
        };
        members.mode = Mode::Full;
        members.told = None;
        members.roster = None;
        let data = json!({"room": room, "mode": "full", "count": roster.count,
            "names": roster.names});
        let key = tick_key(&format!("full:{}", roster.count));
        let _ = self
            .hub
            .publish_once(room, &key, |id| with_id("presence", id, data))
            .await;
    }

    /// Announces that the room turned big: `presence` with `"mode":"count"`,
    /// its count and at most [`BIG_ROOM_NAMES`] names (which replace the list a client
    /// built from `join` and `leave`).
    async fn turn_big(self: &Arc<Self>, members: &mut Members, room: &str, count: usize) {
        members.mode = Mode::Count;
        let names = match self.presence.roster(room, self.big_names()).await {
            Ok(roster) => roster.names,
            Err(_) => Vec::new(),
        };
        let data = json!({"room": room, "mode": "count", "count": count, "names": names});
        self.tell(members, room, "presence", count, data).await;
    }

    /// Publishes a big room's `count`.
    async fn publish_count(self: &Arc<Self>, members: &mut Members, room: &str, count: usize) {
        let data = json!({"room": room, "count": count});
        self.tell(members, room, "count", count, data).await;
    }

    /// Publishes `data` as a `kind` event, keyed by the second and the count,
    /// so that nodes that read the same count in the same second store it
    /// once; then looks once more a tick later, so that the room's last count
    /// is a read made after its last change, whichever node's count the log
    /// ends with.
    async fn tell(
        self: &Arc<Self>,
        members: &mut Members,
        room: &str,
        kind: &str,
        count: usize,
        data: Value,
    ) {
        let key = tick_key(&format!("{kind}:{count}"));
        let _ = self
            .hub
            .publish_once(room, &key, |id| with_id(kind, id, data))
            .await;
        members.told = Some((Instant::now(), count));
        // The next snapshot reads the roster again.
        members.roster = None;
        self.schedule(members, room, PRESENCE_TICK);
    }
}

/// `presence-WHAT:SECOND`: one event per room, second and `what` (a kind and a
/// count), whichever node publishes it first.
fn tick_key(kind: &str) -> String {
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("presence-{kind}:{second}")
}

/// An event of type `kind` (a fixed name, never a line break).
pub(crate) fn named(kind: &str) -> Event {
    Event::default().event(kind).unwrap_or_default()
}

/// An event of type `kind` whose data is the object `data` with its `"id"`.
fn with_id(kind: &str, id: &EventId, mut data: Value) -> Event {
    if let Value::Object(fields) = &mut data {
        fields.insert("id".to_owned(), Value::from(id.to_string()));
    }
    named(kind).data(data.to_string())
}

/// A `join` or `leave` event.
pub(crate) fn presence_event(kind: &str, id: &EventId, room: &str, name: &str) -> Event {
    named(kind).data(json!({"id": id.to_string(), "room": room, "name": name}).to_string())
}
