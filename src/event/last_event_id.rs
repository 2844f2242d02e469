//! [`LastEventId`]: where a reconnecting client says how far it got.

use std::{fmt, ops::Deref};

use http::{header::HeaderName, request::Parts, HeaderMap, HeaderValue, Request, Uri};

/// The longest id accepted, in bytes. Longer values are treated as absent.
///
/// Room for a multi-topic cursor over 64 topics (about 1 KiB, see
/// `tower_sse_hub::Cursor`) with a margin; far below any HTTP server's header
/// limit.
pub const MAX_LAST_EVENT_ID_LEN: usize = 4096;

/// The id of the last event a client received, sent back when it reconnects.
///
/// Browsers send it in the `Last-Event-ID` header when an `EventSource`
/// reconnects. A first connection cannot set headers from a browser, so a
/// `lastEventId` query parameter is read as a fallback (percent-decoded), which
/// lets a page resume a stream it opened earlier, e.g.
/// `new EventSource('/sse?lastEventId=' + id)`. The header wins when both are set.
///
/// Hostile values are treated as absent, never as an error: a value that is not
/// UTF-8, longer than [`MAX_LAST_EVENT_ID_LEN`] bytes, or that contains a control
/// character (CR, LF, NUL and the rest of C0, and DEL). A header sent twice is
/// absent too. So a bad value starts the client from "now", and can never fail
/// the request.
///
/// The `SseLayer` inserts it into request extensions for the
/// handler; without the layer, call [`from_request`](Self::from_request).
///
/// # Example
///
/// ```
/// use tower_sse::LastEventId;
///
/// let req = http::Request::get("/sse?lastEventId=41")
///     .header("last-event-id", "42")
///     .body(())
///     .unwrap();
/// assert_eq!(LastEventId::from_request(&req).unwrap().as_str(), "42");
///
/// let req = http::Request::get("/sse?room=a&lastEventId=a%2Fb").body(()).unwrap();
/// assert_eq!(LastEventId::from_request(&req).unwrap().as_str(), "a/b");
///
/// let req = http::Request::get("/sse").header("last-event-id", "x\ty").body(()).unwrap();
/// assert!(LastEventId::from_request(&req).is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LastEventId(String);

impl LastEventId {
    /// The header name, `last-event-id`.
    pub const HEADER: &'static str = "last-event-id";

    /// Reads the id from a request: the header, else the `lastEventId` query.
    pub fn from_request<B>(req: &Request<B>) -> Option<Self> {
        Self::from_parts(req.headers(), req.uri())
    }

    /// Like [`from_request`](Self::from_request), from request parts.
    pub fn from_request_parts(parts: &Parts) -> Option<Self> {
        Self::from_parts(&parts.headers, &parts.uri)
    }

    fn from_parts(headers: &HeaderMap, uri: &Uri) -> Option<Self> {
        let mut values = headers.get_all(Self::NAME).iter();
        let first = values.next();
        let repeated = first.is_some() && values.next().is_some();
        Self::from_header_or_query(first, repeated, uri)
    }

    /// A ready-made name: looking up by `&str` would parse it on every request.
    pub(crate) const NAME: HeaderName = HeaderName::from_static(LastEventId::HEADER);

    /// The id from the request's first `Last-Event-ID` value (none if the
    /// header was `repeated`), else from its query.
    #[inline]
    pub(crate) fn from_header_or_query(
        first: Option<&HeaderValue>,
        repeated: bool,
        uri: &Uri,
    ) -> Option<Self> {
        if first.is_none() {
            // Most requests have no cursor in their query either; they are
            // ruled out here, inlined (a query too short to hold one, or
            // without the name), before the split.
            let query = uri.query()?;
            if query.len() < "lastEventId".len()
                || memchr::memmem::find(query.as_bytes(), b"lastEventId").is_none()
            {
                return None;
            }
        }
        Self::from_header_or_query_slow(first, repeated, uri)
    }

    #[inline(never)]
    fn from_header_or_query_slow(
        first: Option<&HeaderValue>,
        repeated: bool,
        uri: &Uri,
    ) -> Option<Self> {
        if let Some(value) = first {
            if repeated {
                return None;
            }
            return std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(Self::parse);
        }
        let query = uri.query()?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == "lastEventId")
                .then(|| percent_decode(value))
                .flatten()
                .and_then(|v| Self::parse(&v))
        })
    }

    /// Accepts `value` as an id if it is not hostile (see the type's docs).
    pub fn parse(value: &str) -> Option<Self> {
        let ok =
            value.len() <= MAX_LAST_EVENT_ID_LEN && !value.chars().any(|c| c.is_ascii_control());
        ok.then(|| Self(value.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, parsed as a decimal number (the broadcast hub's ids, `tower-sse-hub`,
    /// are not: pass [`as_str`](Self::as_str) to it).
    ///
    /// The client chooses it: it may be any number up to `u64::MAX`. Before
    /// counting on from it, check that it is an id you could have sent, and
    /// never add to it unchecked (`checked_add`): `u64::MAX - 1` would make the
    /// next ids wrap to `0`, or panic with overflow checks.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// The id, as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for LastEventId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes `%XX` escapes and `+` (as a space, as in forms); `None` when an escape is
/// broken, too long, or the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    if value.len() > 3 * MAX_LAST_EVENT_ID_LEN {
        return None;
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn header(v: &[u8]) -> Option<String> {
        let req = Request::get("/")
            .header(LastEventId::HEADER, HeaderValue::from_bytes(v).unwrap())
            .body(())
            .unwrap();
        LastEventId::from_request(&req).map(LastEventId::into_string)
    }

    fn query(q: &str) -> Option<String> {
        let req = Request::get(format!("/sse?{q}")).body(()).unwrap();
        LastEventId::from_request(&req).map(LastEventId::into_string)
    }

    #[test]
    fn header_values() {
        assert_eq!(header(b"42").as_deref(), Some("42"));
        assert_eq!(header(b"").as_deref(), Some(""));
        assert_eq!(header("é✓".as_bytes()).as_deref(), Some("é✓"));
        assert_eq!(header(b"\xff\xfe"), None);
        assert_eq!(header(b"a\tb"), None);
        assert_eq!(header(&[b'1'; 4096]).map(|s| s.len()), Some(4096));
        assert_eq!(header(&[b'1'; 4097]), None);
    }

    #[test]
    fn duplicate_header_is_absent() {
        let req = Request::get("/")
            .header("last-event-id", "1")
            .header("last-event-id", "2")
            .body(())
            .unwrap();
        assert_eq!(LastEventId::from_request(&req), None);
    }

    #[test]
    fn query_values() {
        assert_eq!(query("lastEventId=7").as_deref(), Some("7"));
        assert_eq!(query("a=1&lastEventId=x%20y&b").as_deref(), Some("x y"));
        assert_eq!(query("lastEventId=a+b").as_deref(), Some("a b"));
        assert_eq!(query("lastEventId").as_deref(), Some(""));
        assert_eq!(query("lastEventId=%0A"), None);
        assert_eq!(query("lastEventId=%zz"), None);
        assert_eq!(query("lastEventId=%f"), None);
        assert_eq!(query("lastEventId=%ff"), None);
        assert_eq!(query("lasteventid=1"), None);
        assert_eq!(query(&format!("lastEventId={}", "9".repeat(4097))), None);
        // The first acceptable one wins.
        assert_eq!(query("lastEventId=%zz&lastEventId=3").as_deref(), Some("3"));
    }

    #[test]
    fn header_wins_over_query() {
        let req = Request::get("/?lastEventId=1")
            .header("last-event-id", "2")
            .body(())
            .unwrap();
        assert_eq!(LastEventId::from_request(&req).unwrap().as_u64(), Some(2));
    }
}
