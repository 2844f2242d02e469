//! An HTTP/1.1 event stream taken over from hyper, so that an idle stream holds
//! no read or write buffer.
//!
//! hyper keeps two buffers of 8 KiB per HTTP/1.1 connection for the
//! connection's life: the one it reads requests into and the one it writes
//! responses through. An event stream needs neither once its response has
//! started: its request has been read, and its response is a string of chunks
//! that can go to the socket straight from the body's own buffers. On glibc's
//! malloc the two buffers of an idle stream keep ~8.8 KB resident, most of
//! what such a connection costs.
//!
//! So on a plain HTTP/1.1 connection of [`Server::serve`](crate::Server::serve),
//! when a request [qualifies](request_qualifies) and the service answers it
//! with an event stream that [qualifies too](response_qualifies), the
//! connection's service parks the response in the connection's [`Handoff`]
//! instead of giving it to hyper. The connection's task then takes the socket
//! back from hyper (`into_parts`), drops hyper's connection with its buffers,
//! and [`write`]s the stream itself: the head, then each frame as one chunk,
//! by vectored writes (no copy), while a one-byte peek watches for the
//! client's close. When the stream ends, hyper serves the connection again
//! (keep-alive) unless the client, the response or the server's shutdown
//! closes it. Everything else is served by hyper as before.

use std::{
    future::poll_fn,
    io::{IoSlice, Write as _},
    pin::Pin,
    sync::{Mutex, PoisonError},
    task::Poll,
    time::SystemTime,
};

use bytes::Buf;
use http::{
    header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, TRANSFER_ENCODING},
    HeaderMap, Method, Request, Response, StatusCode, Version,
};
use http_body::Body;
use tokio::{
    io::{AsyncWrite, ReadBuf},
    net::TcpStream,
};

use crate::stall::Progress;

/// Where a connection's service parks the event stream the connection's task
/// takes over: one per plain HTTP/1.1 connection.
pub(crate) struct Handoff<B> {
    parked: Mutex<Option<Box<Parked<B>>>>,
}

/// A response taken from hyper, and whether the connection must close after
/// it.
pub(crate) struct Parked<B> {
    response: Response<B>,
    close: bool,
}

impl<B> Handoff<B> {
    pub(crate) fn new() -> Self {
        Self {
            parked: Mutex::new(None),
        }
    }

    /// Parks `response` for the connection's task; `close`: its request asked
    /// to close the connection after it.
    pub(crate) fn park(&self, response: Response<B>, close: bool) {
        let parked = Box::new(Parked { response, close });
        *self.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(parked);
    }

    /// The parked response, if any.
    pub(crate) fn take(&self) -> Option<Parked<B>> {
        let parked = self
            .parked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(*parked)
    }
}

/// Whether the response to `request` may be taken over: HTTP/1.1 (chunked
/// framing), a method whose response has a body, and no request body (hyper
/// reads a request body through the connection it would no longer serve).
pub(crate) fn request_qualifies<T: Body>(request: &Request<T>) -> bool {
    request.version() == Version::HTTP_11
        && request.method() != Method::HEAD
        && request.method() != Method::CONNECT
        && request.body().is_end_stream()
}

/// Whether the request asks to close the connection after its response.
pub(crate) fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Whether `response` is an event stream this module writes: `200`,
/// `text/event-stream`, framing left to the server, a body not yet ended.
pub(crate) fn response_qualifies<B: Body>(response: &Response<B>) -> bool {
    let headers = response.headers();
    response.status() == StatusCode::OK
        && headers.get(CONTENT_TYPE).is_some_and(|value| {
            let value = value.as_bytes();
            value.len() >= 17 && value[..17].eq_ignore_ascii_case(b"text/event-stream")
        })
        && !headers.contains_key(CONTENT_LENGTH)
        && !headers.contains_key(TRANSFER_ENCODING)
        && !response.body().is_end_stream()
}

impl<B> Parked<B> {
    /// The response's head as hyper would write it, chunked, with `date`, and
    /// `connection: close` unless `keep_alive`; and its body.
    pub(crate) fn into_head(self, keep_alive: bool) -> (Vec<u8>, B, bool) {
        let (parts, body) = self.response.into_parts();
        let response_closes = asks_to_close(&parts.headers);
        let keep_alive = keep_alive && !self.close && !response_closes;
        let mut head = Vec::with_capacity(192);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(parts.status.as_str().as_bytes());
        head.push(b' ');
        let reason = parts.status.canonical_reason().unwrap_or("");
        head.extend_from_slice(reason.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (name, value) in &parts.headers {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !parts.headers.contains_key(DATE) {
            head.extend_from_slice(b"date: ");
            http_date(SystemTime::now(), &mut head);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        if !keep_alive && !response_closes {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        (head, body, keep_alive)
    }
}

/// How [`write`] ended short of the body's end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The client closed (or reset) the connection.
    ClientGone,
    /// The body failed; like hyper, the connection is closed without the last
    /// chunk, so the client sees the response cut off.
    BodyFailed,
    /// A write failed.
    Io,
}

/// Writes `head`, then each data frame of `body` as one chunk, then the last
/// chunk once the body ends (trailers are not sent). Watches the socket for
/// the client's close meanwhile without reading from it: bytes the client
/// sends (a request pipelined behind the stream) stay in the socket for hyper,
/// and from then on only a failed write tells that the client is gone, as in
/// hyper.
pub(crate) async fn write<B>(
    io: &mut Progress<TcpStream>,
    head: Vec<u8>,
    mut body: B,
) -> Result<(), Cut>
where
    B: Body + Unpin,
{
    let mut out = Out {
        head,
        head_at: 0,
        chunk: None,
        last_at: None,
    };
    let mut watch_close = true;
    let mut ended = false;
    poll_fn(|cx| {
        if watch_close {
            let mut byte = [0; 1];
            match io.get_ref().poll_peek(cx, &mut ReadBuf::new(&mut byte)) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(Cut::ClientGone)),
                Poll::Ready(Ok(_)) => watch_close = false,
                Poll::Pending => {}
            }
        }
        let mut waiting = false;
        loop {
            if out.chunk.is_none() && !ended && !waiting {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            if data.has_remaining() {
                                out.chunk = Some(Chunk::new(data));
                            }
                        }
                    }
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(Cut::BodyFailed)),
                    Poll::Ready(None) => {
                        ended = true;
                        out.last_at = Some(0);
                    }
                    Poll::Pending => waiting = true,
                }
            }
            let mut slices = [IoSlice::new(&[]); 16];
            let n = out.slices(&mut slices);
            if n == 0 {
                if ended {
                    return Poll::Ready(Ok(()));
                }
                if waiting {
                    return Poll::Pending;
                }
                // An empty frame: ask for the next one.
                continue;
            }
            match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(Cut::Io)),
                Poll::Ready(Ok(written)) => out.advance(written),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// The last chunk of a chunked body, with no trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What is still to be written, in order: the rest of the head, the rest of
/// the current chunk, the rest of the last chunk.
struct Out<D> {
    head: Vec<u8>,
    head_at: usize,
    chunk: Option<Chunk<D>>,
    last_at: Option<usize>,
}

/// One frame as a chunk: its size line, its data, its closing CRLF.
struct Chunk<D> {
    /// The size in hex and CRLF: at most 16 digits and 2 bytes.
    size: [u8; 18],
    size_at: usize,
    size_end: usize,
    data: D,
    /// How much of the closing CRLF is written.
    crlf_at: usize,
}

impl<D: Buf> Chunk<D> {
    fn new(data: D) -> Self {
        let mut size = [0; 18];
        let mut rest = &mut size[..];
        // Cannot fail: a `usize` is at most 16 hex digits.
        let _ = write!(rest, "{:x}\r\n", data.remaining());
        let size_end = 18 - rest.len();
        Self {
            size,
            size_at: 0,
            size_end,
            data,
            crlf_at: 0,
        }
    }
}

impl<D: Buf> Out<D> {
    /// Fills `slices` with what is still to be written, in order; how many.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; 16]) -> usize {
        let mut n = 0;
        if self.head_at < self.head.len() {
            slices[n] = IoSlice::new(&self.head[self.head_at..]);
            n += 1;
        }
        if let Some(chunk) = &self.chunk {
            if chunk.size_at < chunk.size_end {
                slices[n] = IoSlice::new(&chunk.size[chunk.size_at..chunk.size_end]);
                n += 1;
            }
            // Room is kept for the closing CRLF, which goes only after all
            // of the data.
            let start = n;
            n += chunk.data.chunks_vectored(&mut slices[n..15]);
            let covered: usize = slices[start..n].iter().map(|s| s.len()).sum();
            if covered == chunk.data.remaining() {
                slices[n] = IoSlice::new(&b"\r\n"[chunk.crlf_at..]);
                n += 1;
            }
        }
        if let Some(at) = self.last_at {
            if at < LAST_CHUNK.len() && self.chunk.is_none() {
                slices[n] = IoSlice::new(&LAST_CHUNK[at..]);
                n += 1;
            }
        }
        n
    }

    /// Marks `n` more bytes as written.
    fn advance(&mut self, mut n: usize) {
        let head = n.min(self.head.len() - self.head_at);
        self.head_at += head;
        n -= head;
        if self.head_at == self.head.len() && !self.head.is_empty() {
            // Written: give its memory back.
            self.head = Vec::new();
            self.head_at = 0;
        }
        if let Some(chunk) = &mut self.chunk {
            let size = n.min(chunk.size_end - chunk.size_at);
            chunk.size_at += size;
            n -= size;
            let data = n.min(chunk.data.remaining());
            chunk.data.advance(data);
            n -= data;
            let crlf = n.min(2 - chunk.crlf_at);
            chunk.crlf_at += crlf;
            n -= crlf;
            if chunk.crlf_at == 2 {
                self.chunk = None;
            }
        }
        if let Some(at) = &mut self.last_at {
            *at += n.min(LAST_CHUNK.len() - *at);
        }
    }
}

/// Writes `time` as an HTTP date (RFC 9110, section 5.6.7), such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime, out: &mut Vec<u8>) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Before 1970 (a clock set wrong) is written as the epoch; after 9999,
    // as 9999's last second: four digits of year, as the format has.
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799);
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm), from 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let of_era = z % 146_097;
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    out.extend_from_slice(DAYS[(days % 7) as usize].as_bytes());
    out.extend_from_slice(b", ");
    two(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    out.push(b' ');
    two(out, year / 100);
    two(out, year % 100);
    out.push(b' ');
    two(out, of_day / 3_600);
    out.push(b':');
    two(out, of_day % 3_600 / 60);
    out.push(b':');
    two(out, of_day % 60);
    out.extend_from_slice(b" GMT");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn date(secs: u64) -> String {
        let mut out = Vec::new();
        http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_written_as_rfc_9110_has_them() {
        // RFC 9110's own example.
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // A leap day, and the last second of a century year.
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert_eq!(date(u64::MAX / 2), "Fri, 31 Dec 9999 23:59:59 GMT");
        let mut out = Vec::new();
        http_date(SystemTime::UNIX_EPOCH - Duration::from_secs(1), &mut out);
        assert_eq!(out, b"Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn every_day_of_400_years_matches_a_count_by_hand() {
        // Walks day by day from 1970 with its own calendar arithmetic.
        let (mut year, mut month, mut day, mut weekday) = (1970u64, 1u64, 1u64, 0usize);
        let days_in = |year: u64, month: u64| match month {
            2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let names = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        let months = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        for days in 0..146_097u64 {
            let expected = format!(
                "{}, {day:02} {} {year:04} 00:00:00 GMT",
                names[weekday],
                months[month as usize - 1]
            );
            assert_eq!(date(days * 86_400), expected);
            weekday = (weekday + 1) % 7;
            day += 1;
            if day > days_in(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn a_chunk_is_written_in_any_pieces_and_sizes_are_hex() {
        for len in [1usize, 9, 10, 15, 16, 255, 256, 4_097] {
            let data = Bytes::from(vec![b'x'; len]);
            let mut expected = format!("{len:x}\r\n").into_bytes();
            expected.extend_from_slice(&data);
            expected.extend_from_slice(b"\r\n0\r\n\r\n");
            let mut head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            let head_len = head.len();
            head.extend_from_slice(&expected);
            // Written `step` bytes at a time.
            for step in [1, 2, 3, 7, 64, usize::MAX] {
                let mut out = Out {
                    head: head[..head_len].to_vec(),
                    head_at: 0,
                    chunk: Some(Chunk::new(data.clone())),
                    last_at: None,
                };
                let mut written = Vec::new();
                loop {
                    if out.chunk.is_none() && out.last_at.is_none() {
                        out.last_at = Some(0);
                    }
                    let mut slices = [IoSlice::new(&[]); 16];
                    let n = out.slices(&mut slices);
                    if n == 0 {
                        break;
                    }
                    let all: Vec<u8> = slices[..n].iter().flat_map(|s| s.to_vec()).collect();
                    let take = step.min(all.len());
                    written.extend_from_slice(&all[..take]);
                    out.advance(take);
                }
                assert_eq!(written, head, "len {len}, step {step}");
            }
        }
    }

    #[test]
    fn only_plain_event_streams_to_plain_requests_qualify() {
        let stream = || {
            Response::builder()
                .header(CONTENT_TYPE, "text/event-stream")
                .body(http_body_util::StreamBody::new(
                    futures_util::stream::pending::<
                        Result<http_body::Frame<Bytes>, std::convert::Infallible>,
                    >(),
                ))
                .unwrap()
        };
        assert!(response_qualifies(&stream()));
        let mut upper = stream();
        upper.headers_mut().insert(
            CONTENT_TYPE,
            "Text/Event-Stream; charset=utf-8".parse().unwrap(),
        );
        assert!(response_qualifies(&upper));
        for header in [CONTENT_LENGTH, TRANSFER_ENCODING] {
            let mut framed = stream();
            framed.headers_mut().insert(header, "1".parse().unwrap());
            assert!(!response_qualifies(&framed));
        }
        let mut other = stream();
        *other.status_mut() = StatusCode::NO_CONTENT;
        assert!(!response_qualifies(&other));
        let json = Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert!(!response_qualifies(&json));
        let ended = Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert!(!response_qualifies(&ended));

        let get = |version, method: Method| {
            Request::builder()
                .version(version)
                .method(method)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap()
        };
        assert!(request_qualifies(&get(Version::HTTP_11, Method::GET)));
        assert!(request_qualifies(&get(Version::HTTP_11, Method::POST)));
        assert!(!request_qualifies(&get(Version::HTTP_10, Method::GET)));
        assert!(!request_qualifies(&get(Version::HTTP_11, Method::HEAD)));
        let with_body = Request::new(http_body_util::Full::new(Bytes::from_static(b"x")));
        assert!(!request_qualifies(&with_body));
    }

    #[test]
    fn connection_close_is_found_among_other_tokens() {
        let mut headers = HeaderMap::new();
        assert!(!asks_to_close(&headers));
        headers.append(CONNECTION, "keep-alive".parse().unwrap());
        assert!(!asks_to_close(&headers));
        headers.append(CONNECTION, "Upgrade, CLOSE ".parse().unwrap());
        assert!(asks_to_close(&headers));
        headers.clear();
        headers.insert(CONNECTION, "closed".parse().unwrap());
        assert!(!asks_to_close(&headers));
    }

    #[test]
    fn the_head_is_chunked_dated_and_closes_when_asked() {
        let response = Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap();
        let (head, (), keep_alive) = Parked {
            response,
            close: false,
        }
        .into_head(true);
        let head = String::from_utf8(head).unwrap();
        assert!(keep_alive);
        assert!(head.starts_with(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-a: 1\r\nx-a: 2\r\ndate: "
        ));
        assert!(
            head.ends_with(" GMT\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        let response = Response::builder().body(()).unwrap();
        let (head, (), keep_alive) = Parked {
            response,
            close: true,
        }
        .into_head(true);
        assert!(!keep_alive);
        assert!(String::from_utf8(head)
            .unwrap()
            .ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"));
    }
}
