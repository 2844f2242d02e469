//! The Lua scripts of the Redis store, each one round trip, and the parsing of
//! their replies (input from the network: never a panic, a typed error).
//!
//! Per topic, two keys and one channel, all with the topic's name as their
//! Redis Cluster hash tag so they live in one slot:
//!
//! - `PREFIX:{TOPIC}:s`, a stream whose entry ids are the offsets (`N-0`), each
//!   entry `d` (the encoded event, written with a stand-in id) and `p` (that
//!   stand-in's text, replaced by the real id where the event is delivered);
//! - `PREFIX:{TOPIC}:m`, a hash: `e` the epoch, `t` the top offset;
//! - `PREFIX:{TOPIC}:c`, the Pub/Sub channel: one message per publish call
//!   and topic, `OFFSET EPOCH STANDIN\nEVENT` for one event, or
//!   `*FIRST EPOCH COUNT LEN STANDIN ...\n` then the events for several (see
//!   [`live`]).

use std::{fmt::Write as _, time::Instant};

use ::redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use bytes::Bytes;

use super::{
    connection::Conn,
    renewals::{self, Renewals},
};

use tower_sse_hub::{
    remote::{Entry, Range},
    Epoch, EventId,
};

/// Appends a batch of events, each as one publish alone would (the batch only
/// saves calls): the events are taken in order, and each one, in a `pcall` of
/// its own (an error fails that event only; the events before it stay stored,
/// and are answered as stored):
///
/// refuses to store after its deadline (Redis's clock, in ms; `0`: none), so
/// that a publish its node gave up on (and answered as failed) is never stored
/// later, when a paused or busy Redis gets to it; with an idempotency key,
/// answers with the id the key got if it is known (by an earlier event of the
/// same batch included); otherwise appends the event at the topic's next
/// offset and remembers the key for the window.
///
/// Each topic's meta hash is read once per batch (its epoch is created then
/// when the topic has none, deleting any stale stream). The topic's last event
/// of the batch is appended with an exact `MAXLEN` (what an `XADD MAXLEN` per
/// event leaves, as the script runs alone). After the batch's events, each
/// topic that stored one gets, once: its top offset written, its stream
/// trimmed (`XTRIM MAXLEN`, exact) unless that last event trimmed it (it was
/// refused or failed), both keys' retention renewed unless the node says it
/// renewed them lately (a TTL of `-N`; see [`Renewals`]: a topic created by
/// the call is renewed whatever the node said), and **one message** on its channel with all the events
/// it stored in this batch (their offsets are contiguous: nothing else writes
/// the topic while the script runs): a lone event in the format of one
/// (`OFFSET EPOCH STANDIN\nEVENT`), several in the format of many
/// (`*FIRST EPOCH COUNT LEN STANDIN LEN STANDIN ...\n` then the events, see
/// [`live`]). The node sends each topic's `LEN STANDIN ...` for all its events
/// of the batch, used as it is when they were all stored (the script then
/// builds no string per event; it builds it when some were not).
///
/// `KEYS`: per topic of the batch, its stream and its meta hash; then the
/// idempotency key of each event that has one, in order. `ARGV[1]`: the
/// publish command (`publish`, or `spublish` on Redis Cluster: sharded
/// Pub/Sub, on the slot's master only); `ARGV[2]`: the epoch of a topic
/// created by this call; `ARGV[3]`: the number of topics; then four per
/// topic: max len, TTL in ms (`-TTL`: renew only if created), channel, the message's `LEN STANDIN` words for
/// all the topic's events; then five per event: its topic (1 for
/// the first), event, stand-in, deadline, key window in ms (`0`: no key).
/// Returns `{now, offset, epoch, offset, epoch, ..., renewed, ...}`, one pair
/// per event (`{-1, ''}` when past its deadline, `{-2, message}` when it
/// failed), then per topic `1` when its keys' retention was renewed, else `0`.
const PUBLISH: &str = r"
local call, tonumber, tostring, pcall, type = redis.call, tonumber, tostring, pcall, type
local argv, keys = ARGV, KEYS
local t = call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local now_text = tostring(now)
local command, new_epoch = argv[1], argv[2]
local count = tonumber(argv[3])
local topics = {}
local last = {}
local function topic(i)
  local state = topics[i]
  if not state then
    local stream, meta = keys[2 * i - 1], keys[2 * i]
    local got = call('hmget', meta, 'e', 't')
    local epoch, top = got[1], tonumber(got[2]) or 0
    local created = not epoch
    if created then
      call('del', stream)
      epoch, top = new_epoch, 0
      call('hset', meta, 'e', epoch, 't', 0)
    end
    state = {stream = stream, epoch = epoch, top = top, n = 0, parts = {false}, stand_ins = {}, created = created}
    topics[i] = state
  end
  return state
end
local function append(a, i, k)
  -- A deadline is digits without leading zeros, as `now_text`: the longer
  -- is the later, and of the same length, the greater in byte order.
  local deadline = argv[a + 3]
  if deadline ~= '0' and (#deadline < #now_text or (#deadline == #now_text and deadline < now_text)) then
    return -1, ''
  end
  local window = argv[a + 4]
  local keyed = window ~= '0'
  if keyed then
    local known = call('get', keys[k])
    if known then
      local space = string.find(known, ' ', 1, true)
      if space then
        return tonumber(string.sub(known, 1, space - 1)), string.sub(known, space + 1)
      end
    end
  end
  local state = topic(i)
  local data, stand_in = argv[a + 1], argv[a + 2]
  local top = state.top + 1
  local offset = tostring(top)
  if last[i] == a then
    call('xadd', state.stream, 'MAXLEN', argv[4 * i], offset .. '-0', 'd', data, 'p', stand_in)
    state.trimmed = true
  else
    call('xadd', state.stream, offset .. '-0', 'd', data, 'p', stand_in)
  end
  state.top = top
  local n = state.n + 1
  state.n = n
  if n == 1 then
    state.first, state.data, state.stand_in = offset, data, stand_in
  end
  state.parts[n + 1] = data
  state.stand_ins[n] = stand_in
  if keyed then
    call('set', keys[k], offset .. ' ' .. state.epoch, 'PX', window)
  end
  return top, state.epoch
end
local first = 4 + 4 * count
local total = {}
local topic_of = {}
for a = first, #argv, 5 do
  local i = tonumber(argv[a])
  topic_of[a] = i
  last[i] = a
  total[i] = (total[i] or 0) + 1
end
local out = {now}
local a, k, size = first, 2 * count + 1, #argv
while a <= size do
  local ok, offset, epoch = pcall(append, a, topic_of[a], k)
  if not ok then
    offset, epoch = -2, type(offset) == 'table' and offset.err or tostring(offset)
  end
  out[#out + 1] = offset
  out[#out + 1] = epoch
  if argv[a + 4] ~= '0' then
    k = k + 1
  end
  a = a + 5
end
for i = 1, count do
  local state = topics[i]
  local stored = state and state.n > 0
  local meta, b = keys[2 * i], 4 * i
  if stored then
    call('hset', meta, 't', tostring(state.top))
    if not state.trimmed then
      call('xtrim', state.stream, 'MAXLEN', argv[b])
    end
  end
  -- '-TTL': renewed lately by this node; renewed anyway when created here.
  local ttl = argv[b + 1]
  local asked = string.byte(ttl) ~= 45
  local renewed = 0
  if state and ((asked and stored) or state.created) then
    if not asked then
      ttl = string.sub(ttl, 2)
    end
    call('pexpire', state.stream, ttl)
    call('pexpire', meta, ttl)
    renewed = 1
  end
  out[#out + 1] = renewed
  if stored then
    if state.n == 1 then
      call(command, argv[b + 2], state.first .. ' ' .. state.epoch .. ' ' .. state.stand_in .. '\n' .. state.data)
    else
      local head = argv[b + 3]
      if state.n ~= total[i] then
        local words = {}
        for j = 1, state.n do
          words[j] = #state.parts[j + 1] .. ' ' .. state.stand_ins[j]
        end
        head = table.concat(words, ' ')
      end
      local parts = state.parts
      parts[1] = '*' .. state.first .. ' ' .. state.epoch .. ' ' .. state.n .. ' ' .. head .. '\n'
      call(command, argv[b + 2], table.concat(parts))
    end
  end
end
return out
";

/// Renews the retention of a topic's keys (a quiet topic with subscribers must
/// not expire under them). `KEYS`: stream, meta. `ARGV`: TTL in ms.
const RENEW: &str = r"
redis.call('pexpire', KEYS[1], ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[1])
return 0
";

/// Reads the topic's epoch (creating it when missing, so that cursors can be
/// judged against it), its top offset and the newest `COUNT` entries from
/// offset `FROM` on. `KEYS`: stream, meta. `ARGV`: new epoch, TTL in ms, count,
/// from (`N-0` or `-`). Returns `{epoch, top, entries newest first}`.
const SYNC: &str = r"
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  redis.call('del', KEYS[1])
  epoch = ARGV[1]
  redis.call('hset', KEYS[2], 'e', epoch, 't', 0)
  redis.call('pexpire', KEYS[2], ARGV[2])
end
local top = redis.call('hget', KEYS[2], 't') or '0'
local entries = redis.call('xrevrange', KEYS[1], '+', ARGV[4], 'COUNT', ARGV[3])
return {epoch, top, entries}
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) publish: Script,
    sync: Script,
    renew: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: Script::new(PUBLISH),
            sync: Script::new(SYNC),
            renew: Script::new(RENEW),
        }
    }
}

/// The keys and channel of one topic.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) stream: String,
    pub(super) meta: String,
    pub(super) channel: String,
}

impl Keys {
    pub(super) fn new(prefix: &str, topic: &str) -> Self {
        // `PREFIX:{TOPIC}:x`, without the formatting machinery (every publish
        // makes one).
        let key = |suffix: &str| {
            let mut key = String::with_capacity(prefix.len() + topic.len() + 5);
            key.push_str(prefix);
            key.push_str(":{");
            key.push_str(topic);
            key.push_str("}:");
            key.push_str(suffix);
            key
        };
        Self {
            stream: key("s"),
            meta: key("m"),
            channel: key("c"),
        }
    }

    /// The key remembering the idempotency key `key`: `PREFIX:{TOPIC}:k:KEY`
    /// (in the topic's slot; the key's bytes are taken as they are).
    pub(super) fn idempotency(&self, key: &str) -> String {
        let base = self.meta.strip_suffix(":m").unwrap_or(&self.meta);
        format!("{base}:k:{key}")
    }
}

/// What the publish script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Published {
    /// Stored with this id (or stored before, under the same idempotency key).
    Stored(EventId),
    /// Redis ran the script after its deadline: nothing was stored.
    Late,
}

/// One publish: the event and how to store it (owned: it waits in a queue).
#[derive(Debug)]
pub(super) struct Publish {
    pub(super) keys: Keys,
    pub(super) event: Vec<u8>,
    pub(super) stand_in: String,
    pub(super) max_len: usize,
    pub(super) ttl_ms: u64,
    /// The idempotency key (the topic's key for it, see
    /// [`Keys::idempotency`]) and its window in ms.
    pub(super) key: Option<(String, u64)>,
    /// Redis's clock in ms after which the script must not store; `0`: none.
    pub(super) deadline_ms: u64,
}

impl Publish {
    /// What it weighs in a batch: about the bytes it sends.
    pub(super) fn weight(&self) -> usize {
        self.event.len() + 2 * self.stand_in.len() + 3 * self.keys.meta.len() + 64
    }
}

/// A reply that is not what the scripts return.
fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::Parse,
        "unexpected reply from Redis",
        what.to_owned(),
    ))
}

/// Runs the publish script on a batch (on one server; on Redis Cluster, of one
/// topic, published with `SPUBLISH` when `sharded`); returns what it did with
/// each publish, in order, and Redis's clock (ms). An error is the call's: it
/// fails every publish of the batch.
///
/// Each topic's keys are renewed when `renewals` says they are due, and the
/// renewal recorded there once the script stored one of the topic's events.
pub(super) async fn publish(
    script: &Script,
    conn: &mut Conn,
    batch: &[Publish],
    sharded: bool,
    renewals: &Renewals,
) -> Result<(Vec<Result<Published, RedisError>>, u64), RedisError> {
    // The batch's topics, in order of first appearance, each with the words
    // `LEN STANDIN` of its events for their message, and each publish's.
    let mut topics: Vec<(&Publish, String)> = Vec::new();
    let mut topic_of = Vec::with_capacity(batch.len());
    for publish in batch {
        let at = match topics
            .iter()
            .position(|(t, _)| t.keys.stream == publish.keys.stream)
        {
            Some(at) => at,
            None => {
                topics.push((publish, String::new()));
                topics.len() - 1
            }
        };
        let head = &mut topics[at].1;
        if !head.is_empty() {
            head.push(' ');
        }
        let _ = write!(head, "{} {}", publish.event.len(), publish.stand_in);
        topic_of.push(at + 1);
    }
    // `EVALSHA` written straight into one command buffer (a `ScriptInvocation`
    // holds each argument in a buffer of its own, then copies them all).
    let keyed = batch.iter().filter(|p| p.key.is_some()).count();
    let size = batch
        .iter()
        .map(|p| p.event.len() + p.stand_in.len() + 64)
        .sum::<usize>()
        + topics
            .iter()
            .map(|(t, head)| 3 * t.keys.meta.len() + head.len() + 64)
            .sum::<usize>()
        + keyed * 64;
    let mut cmd = ::redis::Cmd::with_capacity(6 + 6 * topics.len() + 6 * batch.len(), size);
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(2 * topics.len() + keyed);
    for (topic, _) in &topics {
        cmd.arg(&topic.keys.stream).arg(&topic.keys.meta);
    }
    for (key, _) in batch.iter().filter_map(|p| p.key.as_ref()) {
        cmd.arg(key);
    }
    cmd.arg(if sharded { "spublish" } else { "publish" })
        .arg(Epoch::random().to_string())
        .arg(topics.len());
    let decided = Instant::now();
    for (topic, head) in &topics {
        let window = renewals::window(topic.ttl_ms);
        let renew = renewals.due(&topic.keys.stream, window, decided);
        // At most a century and a second: always an `i64`.
        let ttl = i64::try_from(topic.ttl_ms.saturating_add(window)).unwrap_or(i64::MAX);
        cmd.arg(topic.max_len)
            .arg(if renew { ttl } else { -ttl })
            .arg(&topic.keys.channel)
            .arg(head);
    }
    for (publish, &topic) in batch.iter().zip(&topic_of) {
        let window = publish
            .key
            .as_ref()
            .map_or(0, |(_, window)| (*window).max(1));
        cmd.arg(topic)
            .arg(&publish.event[..])
            .arg(&publish.stand_in)
            .arg(publish.deadline_ms)
            .arg(window);
    }
    let reply: Value = match cmd.query_async(conn).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await?
        }
        reply => reply?,
    };
    let Value::Array(items) = reply else {
        return Err(malformed("publish"));
    };
    let Some((now, pairs)) = items.split_first() else {
        return Err(malformed("publish"));
    };
    if pairs.len() != 2 * batch.len() + topics.len() {
        return Err(malformed("publish: one answer per event and topic"));
    }
    let (pairs, renewed) = pairs.split_at(2 * batch.len());
    let now = integer(now)?;
    // The events of a topic share its epoch: parsed once per topic (an
    // idempotency key's answer may name an older one: compared first).
    let mut epochs: Vec<Option<(&[u8], Epoch)>> = vec![None; topics.len()];
    let answers = pairs
        .chunks(2)
        .zip(&topic_of)
        .map(|(pair, &topic)| match pair {
            [Value::Int(-1), _] => Ok(Published::Late),
            [Value::Int(-2), message] => {
                let message = bytes(message).map(String::from_utf8_lossy);
                Err(RedisError::from((
                    ::redis::ErrorKind::Extension,
                    "the publish script failed",
                    message.unwrap_or_default().into_owned(),
                )))
            }
            [top, epoch] => {
                let text = bytes(epoch).ok_or_else(|| malformed("epoch"))?;
                let known = epochs
                    .get_mut(topic - 1)
                    .ok_or_else(|| malformed("topic"))?;
                let epoch = match *known {
                    Some((seen, epoch)) if seen == text => epoch,
                    _ => {
                        let epoch = epoch_of(epoch)?;
                        *known = Some((text, epoch));
                        epoch
                    }
                };
                Ok(Published::Stored(EventId::new(integer(top)?, epoch)))
            }
            _ => Err(malformed("publish")),
        });
    let answers = answers.collect();
    // Counted from before the call was sent: the script ran later, so the
    // keys live at least a TTL past any publish within the window.
    for ((topic, _), renewed) in topics.iter().zip(renewed) {
        if matches!(renewed, Value::Int(1)) {
            renewals.renewed(&topic.keys.stream, decided);
        }
    }
    Ok((answers, now))
}

/// Renews the retention of `keys` to `ttl_ms`.
pub(super) async fn renew(
    scripts: &Scripts,
    conn: &mut Conn,
    keys: &Keys,
    ttl_ms: u64,
) -> Result<(), RedisError> {
    scripts
        .renew
        .key(&keys.stream)
        .key(&keys.meta)
        .arg(ttl_ms)
        .invoke_async::<Value>(conn)
        .await
        .map(drop)
}

/// Runs the sync script: the epoch, the top offset and up to `count` of the
/// newest entries from offset `from` on (`0`: from the start).
pub(super) async fn sync(
    scripts: &Scripts,
    conn: &mut Conn,
    keys: &Keys,
    ttl_ms: u64,
    count: usize,
    from: u64,
) -> Result<Range, RedisError> {
    let from = if from == 0 {
        "-".to_owned()
    } else {
        format!("{from}-0")
    };
    let reply: Value = scripts
        .sync
        .key(&keys.stream)
        .key(&keys.meta)
        .arg(Epoch::random().to_string())
        .arg(ttl_ms)
        .arg(count)
        .arg(from)
        .invoke_async(conn)
        .await?;
    let Value::Array(items) = reply else {
        return Err(malformed("sync"));
    };
    let [epoch, top, entries] = items.as_slice() else {
        return Err(malformed("sync"));
    };
    let Value::Array(entries) = entries else {
        return Err(malformed("sync entries"));
    };
    let mut entries = entries.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
    entries.reverse();
    Ok(Range {
        epoch: epoch_of(epoch)?,
        top: integer(top)?,
        entries,
    })
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn integer(value: &Value) -> Result<u64, RedisError> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| malformed("negative offset")),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("offset")),
    }
}

fn epoch_of(value: &Value) -> Result<Epoch, RedisError> {
    let text = bytes(value)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| malformed("epoch"))?;
    parse_epoch(text).ok_or_else(|| malformed("epoch"))
}

/// An epoch written as an [`Epoch`] displays.
pub(super) fn parse_epoch(text: &str) -> Option<Epoch> {
    // `0-EPOCH`, an id's text, on the stack (an epoch is 8 characters).
    let mut id = [0u8; 10];
    id[..2].copy_from_slice(b"0-");
    id.get_mut(2..2 + text.len())?
        .copy_from_slice(text.as_bytes());
    std::str::from_utf8(&id[..2 + text.len()])
        .ok()?
        .parse::<EventId>()
        .ok()
        .map(|id| id.epoch())
}

/// `[id, [field, value, ...]]` with id `N-0`.
fn entry(value: &Value) -> Result<Entry, RedisError> {
    let Value::Array(parts) = value else {
        return Err(malformed("entry"));
    };
    let [id, fields] = parts.as_slice() else {
        return Err(malformed("entry"));
    };
    let offset = bytes(id)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.strip_suffix("-0"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("entry id"))?;
    let Value::Array(fields) = fields else {
        return Err(malformed("entry fields"));
    };
    let (mut data, mut stand_in) = (None, None);
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            match bytes(name) {
                Some(b"d") => data = bytes(value),
                Some(b"p") => stand_in = bytes(value),
                _ => {}
            }
        }
    }
    Ok(Entry {
        offset,
        data: Bytes::copy_from_slice(data.ok_or_else(|| malformed("entry data"))?),
        stand_in: Bytes::copy_from_slice(stand_in.unwrap_or_default()),
    })
}

/// A live message from the channel, handing each of its events to `each` in
/// order; `false` when it is not one of the store's (nothing or a valid first
/// part of it was handed). Two formats:
///
/// - one event: `OFFSET EPOCH STANDIN\nEVENT`;
/// - several events at contiguous offsets from `FIRST` (one publish script
///   call's events to a topic): `*FIRST EPOCH COUNT`, then `LEN STANDIN` per
///   event, a newline, and the events' bytes one after the other.
///
/// A node of a version before the second format ignores such messages (its
/// first word is not a number) and reads the events from the stream when it
/// sees the gap, at the next message in the first format.
pub(super) fn live(payload: &Bytes, mut each: impl FnMut(Epoch, Entry)) -> bool {
    let Some(newline) = memchr::memchr(b'\n', payload) else {
        return false;
    };
    let Ok(head) = std::str::from_utf8(&payload[..newline]) else {
        return false;
    };
    let mut words = head.split(' ');
    let (Some(first), Some(epoch), Some(third)) = (words.next(), words.next(), words.next()) else {
        return false;
    };
    let Some(epoch) = parse_epoch(epoch) else {
        return false;
    };
    let Some(first) = first.strip_prefix('*') else {
        let Ok(offset) = first.parse() else {
            return false;
        };
        each(
            epoch,
            Entry {
                offset,
                data: payload.slice(newline + 1..),
                stand_in: Bytes::copy_from_slice(third.as_bytes()),
            },
        );
        return true;
    };
    let (Ok(mut offset), Ok(count)) = (first.parse::<u64>(), third.parse::<u64>()) else {
        return false;
    };
    let mut at = newline + 1;
    for _ in 0..count {
        let (Some(len), Some(stand_in)) = (words.next(), words.next()) else {
            return false;
        };
        let Some(end) = len
            .parse::<usize>()
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= payload.len())
        else {
            return false;
        };
        each(
            epoch,
            Entry {
                offset,
                data: payload.slice(at..end),
                stand_in: Bytes::copy_from_slice(stand_in.as_bytes()),
            },
        );
        offset = offset.saturating_add(1);
        at = end;
    }
    at == payload.len() && words.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(msg: &str) -> Option<Vec<(Epoch, u64, String, String)>> {
        let mut got = Vec::new();
        let valid = live(&Bytes::from(msg.to_owned()), |epoch, entry| {
            got.push((
                epoch,
                entry.offset,
                String::from_utf8(entry.data.to_vec()).unwrap(),
                String::from_utf8(entry.stand_in.to_vec()).unwrap(),
            ));
        });
        valid.then_some(got)
    }

    #[test]
    fn live_messages_parse_and_garbage_does_not() {
        let epoch = Epoch::random();
        let s = "18446744073709551615-00000001";
        let got = parse(&format!("7 {epoch} {s}\ndata: x\n\n")).unwrap();
        assert_eq!(got, [(epoch, 7, "data: x\n\n".to_owned(), s.to_owned())]);
        for bad in [
            "",
            "\n",
            "x y z\n",
            "1 ABCDEFGH s\n",
            "1\n",
            "-1 00000000 s\n",
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_message_of_several_events_parses_and_a_broken_one_does_not() {
        let epoch = Epoch::random();
        let (a, b) = ("data: x\n\n", "id: s2\ndata: yz\n\n");
        let msg = format!("*41 {epoch} 2 {} s1 {} s2\n{a}{b}", a.len(), b.len());
        let got = parse(&msg).unwrap();
        assert_eq!(
            got,
            [
                (epoch, 41, a.to_owned(), "s1".to_owned()),
                (epoch, 42, b.to_owned(), "s2".to_owned())
            ]
        );
        // What a node of the previous version does with it: ignores it.
        assert!(msg.split(' ').next().unwrap().parse::<u64>().is_err());
        for bad in [
            format!("*41 {epoch} 2 {} s1\n{a}", a.len()),
            format!("*41 {epoch} 2 {} s1 {} s2\n{a}", a.len(), b.len()),
            format!("*41 {epoch} 1 {} s1\n{a}extra", a.len()),
            format!("*41 {epoch} 1 {} s1 9 s2\n{a}", a.len()),
            format!("*41 {epoch} 1 99 s1\n{a}"),
            format!("*41 {epoch} 1 x s1\n{a}"),
            format!("*x {epoch} 1 {} s1\n{a}", a.len()),
            format!("*41 {epoch} 1 {}\n{a}", a.len()),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let keys = Keys::new("app", "room");
        assert_eq!(keys.stream, "app:{room}:s");
        assert_eq!(keys.meta, "app:{room}:m");
        assert_eq!(keys.channel, "app:{room}:c");
        assert_eq!(keys.idempotency("m-1"), "app:{room}:k:m-1");
    }
}
