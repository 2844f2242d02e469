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

/// Refuses to run after its deadline (Redis's clock, in ms; `0`: none), so that
/// a publish its node gave up on (and answered as failed) is never stored
/// later, when a paused or busy Redis gets to it. With an idempotency key
/// (`KEYS[3]`), answers with the id the key got if it is known. Otherwise
/// creates the epoch when the topic has none (deleting any stale stream),
/// takes the next offset, appends the event at it with the history bound,
/// renews both keys' retention, remembers the key for the window and
/// publishes the event to the channel.
/// `KEYS`: stream, meta[, key]. `ARGV`: event, stand-in, max len, TTL in ms,
/// channel, new epoch, deadline, key window in ms, the publish command
/// (`publish`, or `spublish` on Redis Cluster: sharded Pub/Sub, on the slot's
/// master only).
/// Returns `{offset, epoch, now}`, or `{-1, '', now}` when past the deadline.
const PUBLISH: &str = r"
local t = redis.call('time')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[7] ~= '0' and now > tonumber(ARGV[7]) then
  return {-1, '', now}
end
if KEYS[3] then
  local known = redis.call('get', KEYS[3])
  if known then
    local space = string.find(known, ' ', 1, true)
    if space then
      return {tonumber(string.sub(known, 1, space - 1)), string.sub(known, space + 1), now}
    end
  end
end
local epoch = redis.call('hget', KEYS[2], 'e')
if not epoch then
  redis.call('del', KEYS[1])
  epoch = ARGV[6]
  redis.call('hset', KEYS[2], 'e', epoch, 't', 0)
end
local top = redis.call('hincrby', KEYS[2], 't', 1)
redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[3], top .. '-0', 'd', ARGV[1], 'p', ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('pexpire', KEYS[2], ARGV[4])
if KEYS[3] then
  redis.call('set', KEYS[3], top .. ' ' .. epoch, 'PX', ARGV[8])
end
redis.call(ARGV[9], ARGV[5], top .. ' ' .. epoch .. ' ' .. ARGV[2] .. '\n' .. ARGV[1])
return {top, epoch, now}
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
    publish: Script,
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

/// One publish: the event and how to store it.
#[derive(Debug)]
pub(super) struct Publish<'a> {
    pub(super) event: &'a [u8],
    pub(super) stand_in: &'a str,
    pub(super) max_len: usize,
    pub(super) ttl_ms: u64,
    /// The idempotency key and its window in ms.
    pub(super) key: Option<(&'a str, u64)>,
    /// Redis's clock in ms after which the script must not store; `0`: none.
    pub(super) deadline_ms: u64,
    /// Published with `SPUBLISH` (Redis Cluster's sharded Pub/Sub), not `PUBLISH`.
    pub(super) sharded: bool,
}

/// A reply that is not what the scripts return.
fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        ::redis::ErrorKind::Parse,
        "unexpected reply from Redis",
        what.to_owned(),
    ))
}

/// Runs the publish script; returns what it did and Redis's clock (ms).
pub(super) async fn publish(
    scripts: &Scripts,
    conn: &mut Conn,
    keys: &Keys,
    publish: &Publish<'_>,
) -> Result<(Published, u64), RedisError> {
    let mut invocation = scripts.publish.key(&keys.stream);
    invocation.key(&keys.meta);
    let (window, key) = match publish.key {
        Some((key, window)) => (window.max(1), Some(keys.idempotency(key))),
        None => (1, None),
    };
    if let Some(key) = key {
        invocation.key(key);
    }
    invocation
        .arg(publish.event)
        .arg(publish.stand_in)
        .arg(publish.max_len)
        .arg(publish.ttl_ms)
        .arg(&keys.channel)
        .arg(Epoch::random().to_string())
        .arg(publish.deadline_ms)
        .arg(window)
        .arg(if publish.sharded {
            "spublish"
        } else {
            "publish"
        });
    let reply: Value = invocation.invoke_async(conn).await?;
    let Value::Array(items) = reply else {
        return Err(malformed("publish"));
    };
    let [top, epoch, now] = items.as_slice() else {
        return Err(malformed("publish"));
    };
    let now = integer(now)?;
    if matches!(top, Value::Int(-1)) {
        return Ok((Published::Late, now));
    }
    let id = EventId::new(integer(top)?, epoch_of(epoch)?);
    Ok((Published::Stored(id), now))
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
