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
//! - `PREFIX:{TOPIC}:c`, the Pub/Sub channel: `OFFSET EPOCH STANDIN\nEVENT`.

use ::redis::{RedisError, Script, Value};
use bytes::Bytes;

use super::connection::Conn;

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
/// offset, remembers the key for the window and publishes the event to the
/// topic's channel (one message per event).
///
/// Each topic's meta hash is read once per batch (its epoch is created then
/// when the topic has none, deleting any stale stream). After the batch's
/// events, each topic that stored one gets, once: its top offset written, its
/// stream trimmed to the history bound (`XTRIM MAXLEN`, exact: what an
/// `XADD MAXLEN` per event leaves, as the script runs alone) and both keys'
/// retention renewed.
///
/// `KEYS`, three per event: stream, meta, idempotency key (the meta key again
/// when there is none). `ARGV[1]`: the publish command (`publish`, or
/// `spublish` on Redis Cluster: sharded Pub/Sub, on the slot's master only);
/// then eight per event: event, stand-in, max len, TTL in ms, channel, new
/// epoch, deadline, key window in ms (`0`: no key).
/// Returns `{now, offset, epoch, offset, epoch, ...}`, one pair per event:
/// `{-1, ''}` when past its deadline, `{-2, message}` when it failed.
const PUBLISH: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local topics = {}
local order = {}
local function topic(stream, meta, new)
  local state = topics[meta]
  if not state then
    local got = redis.call('hmget', meta, 'e', 't')
    local epoch, top = got[1], tonumber(got[2]) or 0
    if not epoch then
      redis.call('del', stream)
      epoch, top = new, 0
      redis.call('hset', meta, 'e', epoch, 't', 0)
    end
    state = {stream = stream, meta = meta, epoch = epoch, top = top}
    topics[meta] = state
    order[#order + 1] = state
  end
  return state
end
local function append(k, a)
  local stream, meta, key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  if ARGV[a + 6] ~= '0' and now > tonumber(ARGV[a + 6]) then
    return {-1, ''}
  end
  local keyed = ARGV[a + 7] ~= '0'
  if keyed then
    local known = redis.call('get', key)
    if known then
      local space = string.find(known, ' ', 1, true)
      if space then
        return {tonumber(string.sub(known, 1, space - 1)), string.sub(known, space + 1)}
      end
    end
  end
  local state = topic(stream, meta, ARGV[a + 5])
  local top = state.top + 1
  local offset = tostring(top)
  redis.call('xadd', stream, offset .. '-0', 'd', ARGV[a], 'p', ARGV[a + 1])
  state.top = top
  state.max_len = ARGV[a + 2]
  state.ttl = ARGV[a + 3]
  local stored = offset .. ' ' .. state.epoch
  if keyed then
    redis.call('set', key, stored, 'PX', ARGV[a + 7])
  end
  redis.call(ARGV[1], ARGV[a + 4], stored .. ' ' .. ARGV[a + 1] .. '\n' .. ARGV[a])
  return {offset, state.epoch}
end
local out = {now}
for i = 0, #KEYS / 3 - 1 do
  local ok, got = pcall(append, i * 3 + 1, i * 8 + 2)
  if not ok then
    got = {-2, type(got) == 'table' and got.err or tostring(got)}
  end
  out[#out + 1] = got[1]
  out[#out + 1] = got[2]
end
for _, state in ipairs(order) do
  if state.ttl then
    redis.call('hset', state.meta, 't', tostring(state.top))
    redis.call('xtrim', state.stream, 'MAXLEN', state.max_len)
    redis.call('pexpire', state.stream, state.ttl)
    redis.call('pexpire', state.meta, state.ttl)
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
        Self {
            stream: format!("{prefix}:{{{topic}}}:s"),
            meta: format!("{prefix}:{{{topic}}}:m"),
            channel: format!("{prefix}:{{{topic}}}:c"),
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
pub(super) async fn publish(
    script: &Script,
    conn: &mut Conn,
    batch: &[Publish],
    sharded: bool,
) -> Result<(Vec<Result<Published, RedisError>>, u64), RedisError> {
    let mut invocation = script.prepare_invoke();
    invocation.arg(if sharded { "spublish" } else { "publish" });
    for publish in batch {
        let keys = &publish.keys;
        invocation.key(&keys.stream).key(&keys.meta);
        let window = match &publish.key {
            Some((key, window)) => {
                invocation.key(key);
                (*window).max(1)
            }
            None => {
                invocation.key(&keys.meta);
                0
            }
        };
        invocation
            .arg(&publish.event[..])
            .arg(&publish.stand_in)
            .arg(publish.max_len)
            .arg(publish.ttl_ms)
            .arg(&keys.channel)
            .arg(Epoch::random().to_string())
            .arg(publish.deadline_ms)
            .arg(window);
    }
    let reply: Value = invocation.invoke_async(conn).await?;
    let Value::Array(items) = reply else {
        return Err(malformed("publish"));
    };
    let Some((now, pairs)) = items.split_first() else {
        return Err(malformed("publish"));
    };
    if pairs.len() != 2 * batch.len() {
        return Err(malformed("publish: one answer per event"));
    }
    let now = integer(now)?;
    let answers = pairs.chunks(2).map(|pair| match pair {
        [Value::Int(-1), _] => Ok(Published::Late),
        [Value::Int(-2), message] => {
            let message = bytes(message).map(String::from_utf8_lossy);
            Err(RedisError::from((
                ::redis::ErrorKind::Extension,
                "the publish script failed",
                message.unwrap_or_default().into_owned(),
            )))
        }
        [top, epoch] => Ok(Published::Stored(EventId::new(
            integer(top)?,
            epoch_of(epoch)?,
        ))),
        _ => Err(malformed("publish")),
    });
    Ok((answers.collect(), now))
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
    format!("0-{text}")
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

/// A live message from the channel: `OFFSET EPOCH STANDIN\nEVENT`.
pub(super) fn live(payload: &Bytes) -> Option<(Epoch, Entry)> {
    let newline = memchr::memchr(b'\n', payload)?;
    let head = std::str::from_utf8(&payload[..newline]).ok()?;
    let mut words = head.split(' ');
    let offset = words.next()?.parse().ok()?;
    let epoch = parse_epoch(words.next()?)?;
    let stand_in = Bytes::copy_from_slice(words.next()?.as_bytes());
    Some((
        epoch,
        Entry {
            offset,
            data: payload.slice(newline + 1..),
            stand_in,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_messages_parse_and_garbage_does_not() {
        let epoch = Epoch::random();
        let msg = Bytes::from(format!(
            "7 {epoch} 18446744073709551615-00000001\ndata: x\n\n"
        ));
        let (got, entry) = live(&msg).unwrap();
        assert_eq!((got, entry.offset), (epoch, 7));
        assert_eq!(&entry.data[..], b"data: x\n\n");
        assert_eq!(&entry.stand_in[..], b"18446744073709551615-00000001");
        for bad in [
            "",
            "\n",
            "x y z\n",
            "1 ABCDEFGH s\n",
            "1\n",
            "-1 00000000 s\n",
        ] {
            assert!(live(&Bytes::from(bad)).is_none(), "{bad:?}");
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
