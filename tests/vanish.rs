//! A peer that vanishes (no FIN, no RST) is reported within the documented
//! bound: heartbeat interval + `TCP_USER_TIMEOUT`.
//!
//! The test builds its own network: a namespace for the client and a veth pair
//! to it, then cuts the client's link (`ip link set down`), as a phone losing
//! signal would. It needs root and `ip` (iproute2); otherwise it prints `SKIP`
//! (and fails when `CI` is set, so CI never passes it silently).

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use http::Request;
use hyper::body::Incoming;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::wrappers::IntervalStream;
use tower_sse::{EndReport, Event, KeepAlive, Shutdown, SseBody};
use tower_sse_serve::{Server, TcpOptions};

const HEARTBEAT: Duration = Duration::from_secs(1);
const USER_TIMEOUT: Duration = Duration::from_secs(3);
/// The documented bound, plus a second for the kernel's retransmission timer
/// and the report's way out.
const BOUND: Duration = Duration::from_secs(1 + 3 + 1);

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The client's namespace and its veth pair, removed on drop.
struct Net {
    ns: String,
    host_if: String,
    client_if: String,
    host_ip: String,
    client_ip: String,
}

impl Net {
    fn create() -> Option<Self> {
        let pid = std::process::id();
        let (a, b) = (pid % 200 + 20, (pid / 200) % 250 + 1);
        let host_if = format!("tsh{pid}");
        let net = Self {
            ns: format!("tsse{pid}"),
            host_if: host_if.clone(),
            client_if: format!("tsc{pid}"),
            host_ip: format!("10.{a}.{b}.1"),
            client_ip: format!("10.{a}.{b}.2"),
        };
        let ok = ip(&["netns", "add", &net.ns])
            && ip(&[
                "link",
                "add",
                &host_if,
                "type",
                "veth",
                "peer",
                "name",
                &net.client_if,
            ])
            && ip(&["link", "set", &net.client_if, "netns", &net.ns])
            && ip(&[
                "addr",
                "add",
                &format!("{}/30", net.host_ip),
                "dev",
                &host_if,
            ])
            && ip(&["link", "set", &host_if, "up"])
            && net.exec_ip(&[
                "addr",
                "add",
                &format!("{}/30", net.client_ip),
                "dev",
                &net.client_if,
            ])
            && net.exec_ip(&["link", "set", &net.client_if, "up"])
            && net.exec_ip(&["link", "set", "lo", "up"]);
        if !ok {
            // Whatever was made goes on drop.
            drop(net);
            return None;
        }
        Some(net)
    }

    fn exec_ip(&self, args: &[&str]) -> bool {
        let mut all = vec!["netns", "exec", &self.ns, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A client in the namespace: opens the stream with bash's `/dev/tcp` and
    /// reads it to stdout.
    fn client(&self, addr: SocketAddr) -> Child {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{}; printf 'GET /sse HTTP/1.1\\r\\nhost: x\\r\\naccept: text/event-stream\\r\\n\\r\\n' >&3; cat <&3",
            addr.ip(),
            addr.port()
        );
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "bash", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the client")
    }

    /// Cuts the client's link: no FIN, no RST, nothing ever comes back.
    fn cut(&self) {
        assert!(self.exec_ip(&["link", "set", &self.client_if, "down"]));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The pair goes first: the namespace may outlive its name while the cut
        // client's sockets retransmit, and would keep the pair with it.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Serves 2 KB events every second (a busy chat room) with 1 s heartbeats,
/// reporting each end with the time it arrived.
async fn serve(
    host_ip: &str,
    tcp: TcpOptions,
    shutdown: &Shutdown,
) -> (SocketAddr, mpsc::UnboundedReceiver<(Instant, EndReport)>) {
    let listener = TcpListener::bind((host_ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let svc = tower::service_fn(move |_req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
                .map(|_| Event::message("m".repeat(2048)));
            let body = SseBody::from_events(ticks)
                .keep_alive(KeepAlive::new().interval(HEARTBEAT))
                .on_end(move |report| drop(tx.send((Instant::now(), report))));
            Ok::<_, Infallible>(body.into_response())
        }
    });
    let server = Server::new().tcp(tcp).with_shutdown(shutdown);
    tokio::spawn(server.serve(listener, svc));
    (addr, rx)
}

/// Reads the client's stdout until the stream is open.
fn wait_open(child: &mut Child) {
    use std::io::Read;
    let out = child.stdout.as_mut().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: m") {
        let n = out.read(&mut buf).expect("client output");
        assert!(
            n > 0,
            "the client's stream closed: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_is_reported_within_heartbeat_plus_user_timeout() {
    let skip = |why: &str| {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: {why}"
        );
        println!("SKIP a_vanished_peer_is_reported_within_heartbeat_plus_user_timeout: {why}");
    };
    if !is_root() {
        return skip("needs root to create a network namespace");
    }
    let Some(net) = Net::create() else {
        return skip("could not create a network namespace and veth pair (`ip` missing?)");
    };
    let shutdown = Shutdown::new().grace(Duration::from_millis(100));
    // The crate's defaults, with a short user timeout to keep the test short...
    let bounded = TcpOptions::new().user_timeout(Some(USER_TIMEOUT));
    let (addr, mut reports) = serve(&net.host_ip, bounded, &shutdown).await;
    // ...and, as the control, the kernel's own defaults.
    let stock = TcpOptions::new()
        .user_timeout(None)
        .keepalive(None, Duration::ZERO, 0);
    let (control_addr, mut control_reports) = serve(&net.host_ip, stock, &shutdown).await;

    let mut client = net.client(addr);
    let mut control = net.client(control_addr);
    let opened = tokio::task::spawn_blocking(move || {
        wait_open(&mut client);
        wait_open(&mut control);
        (client, control)
    });
    let (mut client, mut control) = tokio::time::timeout(Duration::from_secs(20), opened)
        .await
        .expect("both streams open")
        .unwrap();

    net.cut();
    let cut = Instant::now();
    let (at, report) = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .expect("the vanished peer is reported")
        .unwrap();
    let took = at - cut;
    println!(
        "vanished peer reported after {took:?} (heartbeat {HEARTBEAT:?} + user timeout {USER_TIMEOUT:?}): {}",
        report.reason
    );
    assert!(report.reason.is_client_gone(), "{}", report.reason);
    assert!(took <= BOUND, "reported after {took:?}, bound {BOUND:?}");
    // Without the options, the same peer is still not noticed (the kernel
    // retransmits for ~15 minutes): the options are what bounds it.
    assert!(
        control_reports.try_recv().is_err(),
        "the control stream ended too: the cut was not silent"
    );

    let _ = client.kill();
    let _ = control.kill();
    let _ = client.wait();
    let _ = control.wait();
    shutdown.trigger();
    drop(net);
}
