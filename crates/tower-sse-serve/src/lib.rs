//! Serving defaults for long-lived Server-Sent Events streams, in one place.
//!
//! An SSE server holds connections open for hours, mostly idle, to clients that
//! come and go without warning. hyper's defaults are made for short requests;
//! [`Server`] sets what streams need, on hyper's HTTP/1.1 and HTTP/2 (h2c)
//! servers:
//!
//! | setting | default here | hyper's default | why |
//! |---|---|---|---|
//! | [`TcpOptions`] | `TCP_USER_TIMEOUT` 30 s, keepalive 30 s + 10 s × 3, `TCP_NODELAY` | none | a peer that vanishes is reported within heartbeat + 30 s, not ~15 min |
//! | header read timeout | 10 s, from the connection's start | none without a timer | a half-sent request head cannot hold a descriptor and memory forever |
//! | `writev` | off | auto | one buffer per connection: less idle memory |
//! | buffer size cap | 8 KiB | ~400 KiB | a client that stops reading holds at most this much of the server's memory; over [`serve_with`](Server::serve_with), above 8 KiB + 24 B hyper-util's protocol sniffing doubles the read buffer of every connection (request heads must fit in it) |
//! | [write timeout](Server::write_timeout) | 30 s | none | a client that stops reading (a full TCP window, a closed HTTP/2 stream window) is cut off and its stream reported as [`Stalled`](tower_sse::EndReason::Stalled), whether or not it ever reads again |
//! | HTTP/2 streams per connection | 100 | 200 | one connection cannot hold an unbounded share of the streams |
//! | connection cap | none ([`max_connections`](Server::max_connections)) | none | past it, the server stops accepting until a connection closes |
//! | protocol | HTTP/1.1 or h2c (HTTP/2 with prior knowledge), told by the client's first bytes, peeked, under the header read timeout | one per server | each connection's task holds its own protocol's state only: less memory per idle connection |
//! | HTTP/1.1 event streams | written by the server itself once hyper has read the request: hyper's connection and its two 8 KiB buffers are dropped while the stream lasts, and made again after it (keep-alive) | hyper holds them for the connection's life | 8.6 KB per idle stream instead of 12.6 KB on glibc's malloc (4.6 instead of 8.4 on jemalloc): see below |
//! | graceful shutdown | [`with_shutdown`](Server::with_shutdown): stop accepting, end streams, close the connections still open after the grace period | waits forever | a frozen reader or a stalled stream cannot hold shutdown |
//!
//! Over TLS, [`Server::serve_with`] runs a handshake (a `tokio_rustls`
//! acceptor, say) on each connection first, under the same settings: the
//! header read timeout also bounds the handshake. Its stream then goes to
//! hyper-util's `auto` server, which reads the first bytes to tell HTTP/1.1
//! from HTTP/2 and holds the state of both in each connection's task.
//!
//! # HTTP/1.1 event streams
//!
//! On a plain HTTP/1.1 connection of [`Server::serve`], a `200` response
//! with `content-type: text/event-stream` (and no `content-length` or
//! `transfer-encoding` of its own) to an HTTP/1.1 request without a body is
//! not written by hyper: once the service has answered, the connection's task
//! takes the socket back from hyper and writes the head (as hyper would, plus
//! `date` and `transfer-encoding: chunked`) and then each frame as one chunk,
//! straight from the body's buffers. A one-byte peek at the socket tells the
//! client's close, which drops the body at once, as hyper does. When the
//! stream ends, hyper serves the connection again. Any other response, HEAD
//! and HTTP/1.0 requests, requests with a body, HTTP/2 and
//! [`serve_with`](Server::serve_with) (TLS) stay with hyper. What differs
//! from hyper: a request the client pipelined behind the stream's, in the
//! same packet, was read into the buffer dropped with hyper's connection, so
//! the stream's head says `connection: close` and the client sends it again
//! on a new connection (RFC 9112, section 9.3.2); and hyper's own response
//! extensions (a custom reason phrase, header case) are not applied to a
//! stream.
//!
//! With `axum::serve`, the socket options apply through
//! `ListenerExt::tap_io` (see [`TcpOptions`]); the other settings need this
//! server (an axum `Router` is a Tower service and runs on it as is).
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use std::{convert::Infallible, time::Duration};
//! use tower_sse::{Event, Shutdown, SseBody};
//! use tower_sse_serve::Server;
//!
//! let shutdown = Shutdown::new().grace(Duration::from_secs(5));
//! let service = tower::service_fn({
//!     let shutdown = shutdown.clone();
//!     move |_req: http::Request<hyper::body::Incoming>| {
//!         let events = futures_util::stream::pending::<Event>();
//!         let body = SseBody::from_events(events).with_shutdown(&shutdown);
//!         async move { Ok::<_, Infallible>(body.into_response()) }
//!     }
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let stop = shutdown.clone();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     stop.trigger();
//! });
//! Server::new()
//!     .max_connections(50_000)
//!     .with_shutdown(&shutdown)
//!     .serve(listener, service)
//!     .await
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod handoff;
mod stall;
mod tcp;

use std::{
    error::Error,
    future::Future,
    io,
    pin::{pin, Pin},
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll, Waker},
    time::Duration,
};

use http::{Request, Response};
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulConnection},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tower_service::Service;

use self::handoff::Handoff;
use self::stall::{Cut, Progress, Watch, Watched};
pub use self::tcp::{bind, TcpOptions, BACKLOG};
use tower_sse::{BoxError, Shutdown};

/// Applies a server's settings to hyper's HTTP/1.1 and HTTP/2 builders (hyper's
/// own, or those of hyper-util's `auto` builder: same methods, other types).
macro_rules! settings {
    ($server:expr, http1: $http1:expr; http2: $http2:expr) => {
        $http1
            .timer(TokioTimer::new())
            .header_read_timeout($server.header_read_timeout)
            .writev($server.writev)
            .max_buf_size($server.max_buf_size);
        $http2
            .timer(TokioTimer::new())
            .max_concurrent_streams($server.max_streams_per_connection);
    };
}

/// An HTTP/1.1 and h2c server with the defaults long-lived streams need; see
/// the [module docs](self) for each setting and why.
#[derive(Clone, Debug)]
#[must_use = "a server does nothing until `serve` is awaited"]
pub struct Server {
    tcp: TcpOptions,
    header_read_timeout: Duration,
    max_buf_size: usize,
    writev: bool,
    http1_only: bool,
    max_connections: Option<usize>,
    write_timeout: Option<Duration>,
    max_streams_per_connection: u32,
    shutdown: Option<Shutdown>,
}

impl Server {
    /// The default header read timeout: 10 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

    /// The default cap on a connection's read and write buffers: 8 KiB, hyper's
    /// minimum. Measured in the 5 000-member join storm (`tools/storm.sh`):
    /// with 16 KiB every connection's read buffer doubles to 16 KiB after
    /// hyper-util sniffs the protocol; request heads up to 8 KiB fit, as in
    /// nginx's default.
    pub const DEFAULT_MAX_BUF_SIZE: usize = 8 * 1024;

    /// The smallest buffer cap hyper accepts (a smaller value is raised to it).
    pub const MIN_BUF_SIZE: usize = 8 * 1024;

    /// The default write timeout: 30 s.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// The default cap on concurrent HTTP/2 streams per connection: 100.
    pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

    /// The defaults of the [module docs](self).
    pub fn new() -> Self {
        Self {
            tcp: TcpOptions::new(),
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            max_buf_size: Self::DEFAULT_MAX_BUF_SIZE,
            writev: false,
            http1_only: false,
            max_connections: None,
            write_timeout: Some(Self::DEFAULT_WRITE_TIMEOUT),
            max_streams_per_connection: Self::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            shutdown: None,
        }
    }

    /// The socket options of accepted connections.
    pub fn tcp(mut self, options: TcpOptions) -> Self {
        self.tcp = options;
        self
    }

    /// How long a client has, from the moment it connects (and then between
    /// requests on a kept-alive HTTP/1.1 connection), to send a complete request
    /// head. A connection that has not done so is closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Caps each connection's read buffer (a request head must fit in it) and
    /// write buffer (what a client that stops reading can make the server hold),
    /// at least [`MIN_BUF_SIZE`](Self::MIN_BUF_SIZE).
    pub fn max_buf_size(mut self, bytes: usize) -> Self {
        self.max_buf_size = bytes.max(Self::MIN_BUF_SIZE);
        self
    }

    /// Accepts at most `max` connections at once (at least 1); past it, the
    /// server stops accepting (clients wait in the listen backlog) until one
    /// closes.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max.clamp(1, Semaphore::MAX_PERMITS));
        self
    }

    /// Whether hyper queues body frames for vectored writes (`true`) or copies
    /// them into one buffer per connection (`false`, the default: less memory
    /// per idle connection). An HTTP/1.1 event stream is written without
    /// hyper (see the [module docs](self#http11-event-streams)) and is not
    /// concerned; HTTP/1.0 streams and other long responses are. When many
    /// streams are busy at once (a chat room's join storm), queueing holds
    /// less: 19.4 KiB per connection instead of 42.9 KiB with 5 000 members
    /// (`tools/storm.sh`, before streams were written without hyper), since
    /// a copied frame grows the buffer for the connection's life.
    pub fn writev(mut self, writev: bool) -> Self {
        self.writev = writev;
        self
    }

    /// Serves HTTP/1.1 only (`true`), without h2c (HTTP/2 over plain TCP):
    /// a connection's first bytes are then not looked at to tell the
    /// protocol. Off by default; over TLS with ALPN, HTTP/2 is negotiated
    /// before this server sees the connection, and refused with this set.
    pub fn http1_only(mut self, http1_only: bool) -> Self {
        self.http1_only = http1_only;
        self
    }

    /// Cuts off what makes no write progress for `timeout` (`None`: never):
    ///
    /// - a response body the connection has not asked for its next frame for
    ///   that long (it holds a frame it cannot write: the client's TCP window,
    ///   or its HTTP/2 stream's flow-control window, is closed) is dropped and
    ///   reported as [`EndReason::Stalled`](tower_sse::EndReason::Stalled); an
    ///   HTTP/2 connection's other streams go on;
    /// - a connection whose socket has taken no bytes for that long is closed,
    ///   all its streams reported as `Stalled`.
    ///
    /// The server does not poll a body it cannot write, so a stream cannot see
    /// this by itself: a watchdog beside each connection does, and the end
    /// report (and what hangs on it, such as presence) comes at most `timeout`
    /// after the client stopped taking data, whether or not it ever reads
    /// again. A client reading slowly but steadily is not cut off unless one
    /// frame waits longer than `timeout`.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Caps the streams an HTTP/2 connection may have open at once (hyper's
    /// own default is 200); a client opening more gets them refused.
    pub fn max_streams_per_connection(mut self, max: u32) -> Self {
        self.max_streams_per_connection = max;
        self
    }

    /// Shuts down when `shutdown` is triggered: stops accepting, lets each
    /// connection finish (give the same `Shutdown` to the streams, so they
    /// end), and closes the connections still open after its
    /// [grace period](Shutdown::grace) (a client that stopped reading, a stream
    /// that does not end). [`serve`](Self::serve) then returns.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Some(shutdown.clone());
        self
    }

    /// Serves `service` on `listener` until the shutdown (if any) completes.
    ///
    /// # Errors
    ///
    /// None so far: accept errors (such as running out of descriptors) are
    /// retried after a short pause, as `axum::serve` does. The `Result` leaves
    /// room for fatal listener errors.
    pub async fn serve<S, B>(self, listener: TcpListener, service: S) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send + Unpin,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
    {
        let mut http1 = http1::Builder::new();
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        settings!(self, http1: http1; http2: http2);
        let builders = Arc::new((http1, http2));
        let http1_only = self.http1_only;
        self.accept(listener, service, move |tcp, mut accepted| {
            let builders = builders.clone();
            async move {
                let protocol = match http1_only {
                    true => Protocol::Http1,
                    false => match accepted.guard.by_deadline(sniff(&tcp)).await {
                        Some(protocol) => protocol,
                        None => return,
                    },
                };
                let (http1, http2) = &*builders;
                match protocol {
                    Protocol::Http1 => {
                        let Accepted { service, guard } = accepted;
                        serve_http1(http1, guard, tcp, service).await;
                    }
                    // Boxed: an HTTP/1.1 connection's task does not hold the
                    // room of an HTTP/2 one.
                    Protocol::Http2 => {
                        let io = accepted.guard.io(tcp);
                        let conn = http2.serve_connection(io, accepted.service);
                        accepted
                            .guard
                            .serve(Box::pin(conn).as_mut(), || None::<()>)
                            .await;
                    }
                }
            }
        })
        .await
    }

    /// Serves `service` on `listener` as [`serve`](Self::serve) does, with each
    /// accepted connection first handed to `handshake`: TLS, most often, whose
    /// stream then carries HTTP/1.1 or HTTP/2 (the client's first bytes tell
    /// which; offer both in ALPN). Every setting applies as it does without
    /// it: the write timeout watches the bytes the handshake's stream accepts,
    /// and the header read timeout counts from the TCP connection's start, so
    /// a client that never finishes its handshake is closed by it as well.
    /// A failed handshake closes that connection only.
    ///
    /// ```no_run
    /// # async fn run(config: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    /// # let service = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// use tower_sse_serve::Server;
    ///
    /// let tls = tokio_rustls::TlsAcceptor::from(config);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3443").await?;
    /// Server::new()
    ///     .serve_with(listener, service, move |tcp| tls.accept(tcp))
    ///     .await
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`serve`](Self::serve).
    pub async fn serve_with<S, B, H, F, IO>(
        self,
        listener: TcpListener,
        service: S,
        handshake: H,
    ) -> io::Result<()>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn Error + Send + Sync>>,
        H: Fn(TcpStream) -> F,
        F: Future<Output = io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        settings!(self, http1: builder.http1(); http2: builder.http2());
        if self.http1_only {
            builder = builder.http1_only();
        }
        let builder = Arc::new(builder);
        self.accept(listener, service, move |tcp, mut accepted| {
            let builder = builder.clone();
            let handshake = handshake(tcp);
            async move {
                let Some(io) = accepted.guard.by_deadline(handshake).await else {
                    return;
                };
                let io = accepted.guard.io(io);
                let conn = builder.serve_connection(io, accepted.service);
                accepted.guard.serve(pin!(conn), || None::<()>).await;
            }
        })
        .await
    }

    /// Accepts connections until the shutdown, each served by the task
    /// `connection` makes of it; then lets them finish, for the grace period.
    async fn accept<S, B, C, F>(
        self,
        listener: TcpListener,
        service: S,
        connection: C,
    ) -> io::Result<()>
    where
        S: Clone,
        C: Fn(TcpStream, Accepted<S, B>) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        // Told to each connection, which then finishes its response and closes;
        // the sender learns when every connection has.
        let (graceful, _) = watch::channel(());
        let mut connections = JoinSet::new();
        let limit = self.max_connections.map(|n| Arc::new(Semaphore::new(n)));
        let stopped = async {
            match &self.shutdown {
                Some(shutdown) => shutdown.triggered().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        loop {
            // Reap finished connections, so the set holds only live ones.
            while connections.try_join_next().is_some() {}
            let permit = match &limit {
                Some(limit) => tokio::select! {
                    permit = limit.clone().acquire_owned() => permit.ok(),
                    () = &mut stopped => break,
                },
                None => None,
            };
            let tcp = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => {
                        // Out of descriptors or a connection reset while queued.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stopped => break,
            };
            // Best effort: a refused option must not refuse the client.
            let _ = self.tcp.apply(&tcp);
            let watch = Arc::new(Watch::default());
            let accepted = Accepted {
                service: FirstRequest {
                    inner: service.clone(),
                    watch: watch.clone(),
                    handoff: None,
                },
                guard: Guard {
                    stop: graceful.subscribe(),
                    stopping: false,
                    watch,
                    request_by: Instant::now() + self.header_read_timeout,
                    write_timeout: self.write_timeout,
                    _permit: permit,
                },
            };
            connections.spawn(connection(tcp, accepted));
        }
        drop(listener);
        let grace = self
            .shutdown
            .as_ref()
            .map_or(Duration::ZERO, Shutdown::grace_period);
        // Connections finish their response and close; those that cannot (a
        // frozen reader) are dropped after the grace period.
        let _ = graceful.send(());
        let _ = tokio::time::timeout(grace, graceful.closed()).await;
        connections.shutdown().await;
        Ok(())
    }
}

/// An accepted connection, before it speaks HTTP: its service, and what ends
/// it.
struct Accepted<S, B> {
    service: FirstRequest<S, B>,
    guard: Guard,
}

/// What ends a connection besides its client: no request by the header
/// deadline, writes that make no progress, the server's shutdown. Holds the
/// connection's slot under the connection cap.
struct Guard {
    /// Changes when the server shuts down.
    stop: watch::Receiver<()>,
    /// Whether the server is shutting down.
    stopping: bool,
    watch: Arc<Watch>,
    /// The header read deadline, from the connection's start.
    request_by: Instant,
    write_timeout: Option<Duration>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Guard {
    /// What `opening` (a TLS handshake, telling the protocol) yields, unless it
    /// fails or the header read deadline comes first.
    async fn by_deadline<T>(&self, opening: impl Future<Output = io::Result<T>>) -> Option<T> {
        tokio::select! {
            opened = opening => opened.ok(),
            () = tokio::time::sleep_until(self.request_by) => None,
        }
    }

    /// The connection's stream, watched for write progress.
    fn io<IO>(&self, io: IO) -> TokioIo<Progress<IO>> {
        TokioIo::new(Progress::new(io, self.watch.clone()))
    }

    /// Runs `work` beside the connection's guard: its output, or `None` when
    /// the server cuts the connection off first (no request by the header
    /// deadline, or writes that made no progress for the write timeout: then
    /// its streams are reported as stalled). `on_stop` is told once of the
    /// server's shutdown. `work` is pinned where the caller made it: moved in
    /// here, it would take room twice in the connection's task.
    async fn run<F: Future>(
        &mut self,
        mut work: Pin<&mut F>,
        mut on_stop: impl FnMut(),
    ) -> Option<F::Output> {
        // hyper's own header timeout starts once the connection is served,
        // and again for each request after the first; this one, from the
        // connection's start, also covers a client that sends nothing. One
        // timer for both deadlines.
        let mut cut = pin!(self.watch.guard(self.request_by, self.write_timeout));
        loop {
            tokio::select! {
                done = work.as_mut() => return Some(done),
                cut = &mut cut => {
                    if cut == Cut::Stalled {
                        self.watch.cut_all();
                    }
                    return None;
                }
                _ = self.stop.changed(), if !self.stopping => {
                    self.stopping = true;
                    on_stop();
                }
            }
        }
    }

    /// Serves `conn` until it ends or the server cuts it off (`None`), or
    /// until `taken` yields what the connection's service parked (looked at
    /// after each poll of the connection); at the server's shutdown, tells it
    /// to finish its responses and close.
    async fn serve<C: GracefulConnection, T>(
        &mut self,
        mut conn: Pin<&mut C>,
        mut taken: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        // Set by the shutdown, read by the connection's next poll.
        let stopping = std::sync::atomic::AtomicBool::new(self.stopping);
        let mut told = false;
        let served = pin!(std::future::poll_fn(|cx| {
            if stopping.load(Ordering::Relaxed) && !told {
                told = true;
                conn.as_mut().graceful_shutdown();
            }
            match conn.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => taken().map_or(Poll::Pending, |t| Poll::Ready(Some(t))),
            }
        }));
        self.run(served, || stopping.store(true, Ordering::Relaxed))
            .await
            .flatten()
    }

    /// Writes an event stream taken over from hyper ([`handoff`]) on `io`
    /// until it ends or the server cuts it off; then the socket, if the
    /// connection is kept alive for hyper to serve again. `read_ahead`:
    /// hyper had read bytes past the stream's request (they are lost with its
    /// buffer: the connection closes after the stream).
    async fn stream<B>(
        &mut self,
        mut io: Progress<TcpStream>,
        parked: handoff::Parked<B>,
        read_ahead: bool,
    ) -> Option<Progress<TcpStream>>
    where
        B: http_body::Body + Unpin,
    {
        let (head, body, keep_alive) = parked.into_head(!read_ahead && !self.stopping);
        let written = {
            let write = pin!(handoff::write(&mut io, head, body));
            self.run(write, || {}).await
        };
        if written != Some(Ok(())) {
            return None;
        }
        if keep_alive && !self.stopping {
            return Some(io);
        }
        // Closed after its last chunk, as the head said (or the server is
        // shutting down); the FIN does not wait for the client.
        let _ = std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
        None
    }
}

/// The protocol a plain TCP client speaks.
enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): the client opened with the preface.
    Http2,
}

/// The HTTP/2 connection preface (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells the protocol by the client's first bytes, left in the socket for
/// hyper: HTTP/2 if they are the preface, HTTP/1.1 as soon as they are not a
/// prefix of it. Waits for more bytes while they are a strict prefix; fails if
/// the client closes first.
async fn sniff(tcp: &TcpStream) -> io::Result<Protocol> {
    let mut buf = [0; H2_PREFACE.len()];
    tcp.async_io(Interest::READABLE, || {
        let mut peeked = ReadBuf::new(&mut buf);
        // Without waiting: ready now, or `WouldBlock` (then `async_io` waits
        // for the socket to be readable again, a new segment at the least).
        match tcp.poll_peek(&mut Context::from_waker(Waker::noop()), &mut peeked) {
            Poll::Ready(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Poll::Ready(Ok(n)) if buf[..n] != H2_PREFACE[..n] => Ok(Protocol::Http1),
            Poll::Ready(Ok(n)) if n == H2_PREFACE.len() => Ok(Protocol::Http2),
            // A strict prefix of the preface: wait for more.
            Poll::Ready(Ok(_)) | Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            Poll::Ready(Err(err)) => Err(err),
        }
    })
    .await
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves a plain HTTP/1.1 connection with hyper, and each event stream on it
/// with [`handoff`]: hyper's connection (and its buffers) is dropped while the
/// stream lasts, and made again for the requests after it.
async fn serve_http1<S, B>(
    http1: &http1::Builder,
    mut guard: Guard,
    tcp: TcpStream,
    mut service: FirstRequest<S, B>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send + Unpin,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let handoff = Arc::new(Handoff::new());
    service.handoff = Some(handoff.clone());
    let mut io = guard.io(tcp);
    let watch = guard.watch.clone();
    loop {
        // Boxed: the task's own room does not hold hyper's connection while
        // a stream is written without it.
        let mut conn = Box::new(http1.serve_connection(io, service));
        // hyper flushes its write buffer at the end of each poll: a socket
        // whose last write went through holds nothing of an earlier response
        // there (a pipelined request's stream can be parked while the
        // response before it is flushed). Otherwise hyper is polled on until
        // it is (or the write timeout cuts the connection).
        let taken = || match watch.io_stuck() {
            true => None,
            false => handoff.take(),
        };
        let Some(parked) = guard.serve(Pin::new(&mut *conn), taken).await else {
            return;
        };
        let parts = conn.into_parts();
        service = parts.service;
        let stream = guard.stream(parts.io.into_inner(), parked, !parts.read_buf.is_empty());
        match stream.await {
            Some(socket) => io = TokioIo::new(socket),
            None => return,
        }
    }
}

/// The connection's service, as hyper calls it: marks that the connection has
/// sent a complete request head, and puts the response bodies under the
/// connection's watch. Calls the Tower service at the first poll, as
/// hyper-util's `TowerToHyperService` does, in one boxed future: hyper then
/// keeps a pointer, not the room of that future, for the connection's life.
/// With a [`Handoff`] (plain HTTP/1.1), parks each event stream there instead
/// of answering hyper.
struct FirstRequest<S, B> {
    inner: S,
    watch: Arc<Watch>,
    handoff: Option<Arc<Handoff<Watched<B>>>>,
}

// The service is only ever used through `&self`, never pinned.
impl<S, B> Unpin for FirstRequest<S, B> {}

impl<S, B> hyper::service::Service<Request<Incoming>> for FirstRequest<S, B>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
{
    type Response = Response<Watched<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.watch.saw_request();
        let mut inner = self.inner.clone();
        let watch = self.watch.clone();
        let handoff = self
            .handoff
            .as_ref()
            .filter(|_| handoff::request_qualifies(&req))
            .map(|handoff| (handoff.clone(), handoff::asks_to_close(req.headers())));
        Box::pin(async move {
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let response = inner.call(req).await.map_err(Into::into)?;
            let handoff = handoff.filter(|_| handoff::response_qualifies(&response));
            let response = response.map(|body| Watched::new(body, &watch));
            if let Some((handoff, close)) = handoff {
                handoff.park(response, close);
                // The connection's task takes it from here, and drops this
                // future with hyper's connection.
                return std::future::pending().await;
            }
            Ok(response)
        })
    }
}

/// The README's Rust snippets, compiled (and run, where they can) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
