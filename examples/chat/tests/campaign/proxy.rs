//! A TCP proxy between one node and Redis, in the test process, that the
//! campaign can cut: every connection through it is dropped at once, and new
//! ones are refused (accepted and closed) or blackholed (accepted and never
//! answered) until the cut ends. That isolates ONE node from Redis while the
//! others, and the test's own connections, keep working.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// New connections are closed as soon as they are accepted.
    Refuse,
    /// New connections are accepted and never answered: the node's Redis
    /// client has to time out.
    Blackhole,
}

struct State {
    upstream: SocketAddr,
    cut: Mutex<Option<CutMode>>,
    /// Bumped on every cut and every restore: each connection watches it and
    /// ends when it changes.
    generation: watch::Sender<u64>,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            upstream,
            cut: Mutex::new(None),
            generation: watch::Sender::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Self {
            port,
            state,
            accept,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses or blackholes new ones.
    pub fn cut(&self, mode: CutMode) {
        *self
            .state
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(mode);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again (blackholed ones are closed).
    pub fn restore(&self) {
        *self
            .state
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.state.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Ends the connection tasks too.
        self.state.generation.send_modify(|g| *g += 1);
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than stop
            // proxying for the rest of the campaign.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(forward(socket, state.clone()));
    }
}

async fn forward(mut socket: TcpStream, state: Arc<State>) {
    let mut generation = state.generation.subscribe();
    let mode = *state.cut.lock().unwrap_or_else(PoisonError::into_inner);
    match mode {
        Some(CutMode::Refuse) => {}
        Some(CutMode::Blackhole) => {
            let _ = generation.changed().await;
        }
        None => {
            let connect = TcpStream::connect(state.upstream);
            let Ok(Ok(mut upstream)) = tokio::time::timeout(Duration::from_secs(1), connect).await
            else {
                // Redis is down: the node sees its connection closed, as if
                // Redis had refused it.
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream) => {}
                _ = generation.changed() => {}
            }
        }
    }
}
