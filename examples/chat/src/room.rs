//! A room: its members on this node, the snapshot a new member gets, and the
//! `join` and `leave` events, published in batches.

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{json, Value};
use tower_sse::{EncodedEvent, Event};
use tower_sse_hub::{EventId, Hub, HubConfig, HubError, Presence, Subscriber};

/// Room-sized history: a join storm of 5 000 members is 5 000 `join` events,
/// which a member that connected first reads from the shared history at its own
/// pace (a cursor each, no copy), so the lag bound is the history, 16 384
/// events or 8 MiB per room, shared by all its members.
pub(crate) fn hub_config() -> HubConfig {
    HubConfig::new()
        .history_len(16 * 1024)
        .history_bytes(8 * 1024 * 1024)
        .queue_capacity(16 * 1024)
}

pub(crate) struct Chat {
    pub(crate) hub: Hub,
    /// Who is in each room (on every node when it is on Redis).
    pub(crate) presence: Arc<dyn Presence>,
    /// The rooms with someone connected to this node.
    pub(crate) rooms: Mutex<HashMap<String, Arc<Room>>>,
    pub(crate) guests: AtomicU64,
}

/// How long joins and leaves wait to be published together: in a join storm a
/// member is woken once per batch instead of once per join. Each join and leave
/// is still its own event, with its own id.
pub(crate) const PRESENCE_BATCH: Duration = Duration::from_millis(50);

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

#[derive(Default)]
pub struct Members {
    /// This node's connections to the room.
    connections: usize,
    /// Joins (`true`) and leaves not yet published, in order.
    pending: Vec<(String, bool)>,
    /// A batch is scheduled.
    scheduled: bool,
    /// Removed from `Chat::rooms`: a join that finds it looks the room up again.
    gone: bool,
    /// The member list of the last snapshot, and its JSON: one buffer shared by
    /// the snapshots of everyone who joins while the list stays the same.
    list: Option<(Vec<String>, Bytes)>,
}

impl Members {
    /// The `members` snapshot of a member joining at `position`, when the room
    /// holds `names`: `{"room","you","names","as_of"}`, with the id `position`.
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
        let tail = format!(",\"as_of\":\"{position}\"}}\n\n");
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

    /// Subscribes after `last` and queues the member's `join`. The stream
    /// replays what the client missed, then this connection's `members`
    /// snapshot (as of the end of the replay, with that id), then live events,
    /// its own `join` among them.
    pub(crate) async fn join(
        self: &Arc<Self>,
        room: &str,
        name: &str,
        last: Option<&str>,
    ) -> Result<Subscriber, HubError> {
        loop {
            let entry = self.room(room);
            let mut members = entry.members.lock().await;
            if members.gone {
                continue;
            }
            let subscriber = self.hub.subscribe(room, last).await?;
            let names = self.presence.members(room).await?;
            let snapshot = members.snapshot(room, name, subscriber.position(), names);
            members.connections += 1;
            members.pending.push((name.to_owned(), true));
            self.schedule(&mut members, room);
            return Ok(subscriber.then(snapshot));
        }
    }

    /// Queues the member's `leave`.
    pub(crate) async fn leave(self: &Arc<Self>, room: &str, name: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.connections = members.connections.saturating_sub(1);
        members.pending.push((name.to_owned(), false));
        self.schedule(&mut members, room);
    }

    fn schedule(self: &Arc<Self>, members: &mut Members, room: &str) {
        if !members.scheduled {
            members.scheduled = true;
            let (chat, room) = (self.clone(), room.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(PRESENCE_BATCH).await;
                chat.announce(&room).await;
            });
        }
    }

    /// Publishes the queued joins and leaves of `room`, each its own event, and
    /// records them in `Presence`.
    async fn announce(&self, room: &str) {
        let entry = self.room(room);
        let mut members = entry.members.lock().await;
        members.scheduled = false;
        for (name, joined) in std::mem::take(&mut members.pending) {
            let kind = if joined { "join" } else { "leave" };
            // The history keeps it even when nobody is left to hear it now. A
            // store that cannot be reached loses presence events, never
            // messages; `Presence` counts the change even when it cannot write
            // it, and writes it at its next renewal.
            let _ = self
                .hub
                .publish_with(room, |id| presence_event(kind, id, room, &name))
                .await;
            let _ = if joined {
                self.presence.join(room, &name).await
            } else {
                self.presence.leave(room, &name).await
            };
        }
        if members.connections == 0 && members.pending.is_empty() {
            members.gone = true;
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            if rooms.get(room).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                rooms.remove(room);
            }
        }
    }
}

/// An event of type `kind` (a fixed name, never a line break).
pub(crate) fn named(kind: &str) -> Event {
    Event::default().event(kind).unwrap_or_default()
}

/// A `join` or `leave` event.
pub(crate) fn presence_event(kind: &str, id: &EventId, room: &str, name: &str) -> Event {
    named(kind).data(json!({"id": id.to_string(), "room": room, "name": name}).to_string())
}
