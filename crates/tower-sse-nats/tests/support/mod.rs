//! Shared by the tests: the NATS server to use, unique prefixes.

#![allow(dead_code)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
};

use tower_sse_hub::Epoch;
use tower_sse_nats::NatsConfig;

/// The server's address (env `NATS_URL`, default `127.0.0.1:4222`).
pub fn addr() -> String {
    std::env::var("NATS_URL")
        .ok()
        .map(|u| u.trim_start_matches("nats://").to_owned())
        .unwrap_or_else(|| "127.0.0.1:4222".to_owned())
}

/// `Some(url)` when a server answers; `None` (and `SKIP` printed) when none
/// does, but a panic when env `CI` is set.
pub async fn server() -> Option<String> {
    let addr = addr();
    let up = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(addr.clone()),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if up {
        return Some(format!("nats://{addr}"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no NATS server at {addr} (CI is set)"
    );
    println!("SKIP: no NATS server at {addr}");
    None
}

/// A prefix no other test (or run) uses.
pub fn prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}{}_{name}",
        Epoch::random(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A config for `url` with a unique prefix.
pub fn config(url: &str, name: &str) -> NatsConfig {
    NatsConfig::new(url).prefix(prefix(name))
}

/// A TCP proxy to the NATS server that the test can cut: while cut, its
/// connections are dropped and new ones closed at once.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn to(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (cut, links) = (cut.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        continue;
                    }
                    let upstream = upstream.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Self {
            port,
            cut,
            links,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
