//! [`TcpOptions`]: the socket options that bound how long a vanished peer goes
//! unnoticed.

use std::{io, time::Duration};

/// Socket options for accepted connections of a streaming server.
///
/// A peer that vanishes without closing (a phone losing signal, a laptop going
/// to sleep, a NAT dropping its mapping) sends no FIN or RST: the server's next
/// writes (heartbeats) wait in the send buffer while the kernel retransmits,
/// for about 15 minutes by default on Linux, and nothing fails. These options
/// bound that time:
///
/// - **`TCP_USER_TIMEOUT`** (Linux and Android): data unacknowledged for this
///   long fails the connection, so the heartbeat written after the peer
///   vanished fails it at most this long later;
/// - **TCP keepalive** probes for connections with nothing in flight (heartbeats
///   off), after `keepalive_idle`, every `keepalive_interval`;
/// - **`TCP_NODELAY`**, so small events are not held back by Nagle's algorithm.
///
/// With heartbeats every `H`, a vanished peer is reported (`ClientGone`) within
/// about `H + user_timeout`: 15 s + 30 s with the defaults. Elsewhere than Linux
/// and Android, only keepalive applies.
///
/// Apply it to each accepted stream: [`Server`](super::Server) does; with
/// `axum::serve`, through `ListenerExt::tap_io`:
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// use axum::serve::ListenerExt;
/// use tower_sse_serve::TcpOptions;
///
/// let options = TcpOptions::new();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000")
///     .await?
///     .tap_io(move |tcp| {
///         let _ = options.apply(tcp); // best effort: a failed option is not fatal
///     });
/// axum::serve(listener, app).await
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    user_timeout: Option<Duration>,
    keepalive_idle: Option<Duration>,
    keepalive_interval: Duration,
    keepalive_retries: u32,
    nodelay: bool,
}

impl TcpOptions {
    /// The default `TCP_USER_TIMEOUT`: 30 s.
    pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(30);

    /// A user timeout of 30 s, keepalive probes after 30 s idle every 10 s (3
    /// probes), and `TCP_NODELAY`.
    pub const fn new() -> Self {
        Self {
            user_timeout: Some(Self::DEFAULT_USER_TIMEOUT),
            keepalive_idle: Some(Duration::from_secs(30)),
            keepalive_interval: Duration::from_secs(10),
            keepalive_retries: 3,
            nodelay: true,
        }
    }

    /// How long written data may stay unacknowledged before the connection
    /// fails (`None`: the kernel's default, many minutes). Values are rounded
    /// down to milliseconds and capped at `i32::MAX` ms (about 24 days).
    pub const fn user_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.user_timeout = timeout;
        self
    }

    /// Keepalive probes after `idle` without traffic, every `interval`, failing
    /// the connection after `retries` unanswered probes; `idle` of `None` turns
    /// keepalive off. Values are clamped to what the kernel accepts.
    pub const fn keepalive(
        mut self,
        idle: Option<Duration>,
        interval: Duration,
        retries: u32,
    ) -> Self {
        self.keepalive_idle = idle;
        self.keepalive_interval = interval;
        self.keepalive_retries = retries;
        self
    }

    /// Sets `TCP_NODELAY` (default `true`).
    pub const fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// The user timeout set, if any.
    pub const fn get_user_timeout(&self) -> Option<Duration> {
        self.user_timeout
    }

    /// Applies the options to an accepted connection.
    ///
    /// # Errors
    ///
    /// The first option the operating system refused; those before it are set.
    pub fn apply(&self, tcp: &tokio::net::TcpStream) -> io::Result<()> {
        let socket = socket2::SockRef::from(tcp);
        socket.set_tcp_nodelay(self.nodelay)?;
        if let Some(idle) = self.keepalive_idle {
            // Linux takes whole seconds from 1 to 32767.
            let secs = |d: Duration| Duration::from_secs(d.as_secs().clamp(1, 32_767));
            let keepalive = socket2::TcpKeepalive::new().with_time(secs(idle));
            #[cfg(any(
                target_os = "linux",
                target_os = "android",
                target_vendor = "apple",
                target_os = "freebsd",
                windows
            ))]
            let keepalive = keepalive.with_interval(secs(self.keepalive_interval));
            #[cfg(any(
                target_os = "linux",
                target_os = "android",
                target_vendor = "apple",
                target_os = "freebsd"
            ))]
            let keepalive = keepalive.with_retries(self.keepalive_retries.clamp(1, 127));
            socket.set_tcp_keepalive(&keepalive)?;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(timeout) = self.user_timeout {
            // Linux takes a signed int of milliseconds.
            let ms = timeout.as_millis().min(i32::MAX as u128);
            socket.set_tcp_user_timeout(Some(Duration::from_millis(ms as u64)))?;
        }
        Ok(())
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The accept queue of a listener made by [`bind`]: the kernel caps it at
/// `net.core.somaxconn` (4 096 on current Linux).
pub const BACKLOG: u32 = 4096;

/// Binds a listener on `addr` (the first of its addresses that binds) whose
/// accept queue holds [`BACKLOG`] connections, where tokio's
/// `TcpListener::bind` asks for 1 024: in a join storm (thousands of
/// `EventSource`s opening at once) the connections the server has not accepted
/// yet wait in the queue instead of being dropped and sent again by the client
/// a second or more later. `SO_REUSEADDR` is set, as tokio's `bind` does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// let listener = tower_sse_serve::bind("127.0.0.1:0").await?;
/// assert!(listener.local_addr()?.port() > 0);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// An address that does not resolve, or none that binds (the last error).
pub async fn bind(addr: impl tokio::net::ToSocketAddrs) -> io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn options_reach_the_socket_and_extremes_are_clamped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (tcp, _) = accepted.unwrap();
        TcpOptions::new().apply(&tcp).unwrap();
        let socket = socket2::SockRef::from(&tcp);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        #[cfg(target_os = "linux")]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(TcpOptions::DEFAULT_USER_TIMEOUT)
        );
        let extreme = TcpOptions::new()
            .user_timeout(Some(Duration::MAX))
            .keepalive(Some(Duration::MAX), Duration::ZERO, u32::MAX);
        extreme.apply(&tcp).unwrap();
        TcpOptions::new()
            .user_timeout(None)
            .keepalive(None, Duration::ZERO, 0)
            .apply(&tcp)
            .unwrap();
        drop(client);
    }
}
