//! What one multi-topic stream costs against as many single-topic streams
//! (issue 20), measured side by side in one run, on loopback:
//!
//! - **A**: C clients, each holding K single-topic SSE streams (one
//!   connection per topic, `Hub::subscribe`);
//! - **B**: C clients, each holding ONE stream over the same K topics
//!   (`Hub::subscribe_many`), whose every event's `id:` is a composite cursor
//!   built for that stream.
//!
//! ```sh
//! tools/multi_cost.sh                                   # C = 1000, K = 8, 200 events at 50/s
//! tools/multi_cost.sh --clients 500 --topics 4 --runs 2
//! ```
//!
//! Options: `--clients C` (1000), `--topics K` (8), `--events M` (200),
//! `--rate R` events per second (50), `--payload B` bytes of data per event
//! (100), `--runs N` (1: A then B; more runs alternate A, B, A, B, ...).
//! Scenario A opens C × K sockets in this process and as many in the
//! server's: the soft descriptor limit must be above that (`ulimit -n`, which
//! the wrapper script raises to the hard limit).
//!
//! For each scenario the program starts itself as the server in a fresh
//! process (`multi_cost serve`: a `Hub` behind `tower_sse_serve::Server`,
//! configured as the chat's, with `writev(true)`; it prints `listening on
//! http://ADDR`), so the server's memory and CPU are its own, read from
//! `/proc/PID/status` (`VmRSS`) and `/proc/PID/stat` (`utime + stime`):
//!
//! - **memory**: RSS once every stream's response head arrived (each stream is
//!   then subscribed) and 1.5 s passed, minus RSS before the first connection;
//!   per client (÷ C) and per connection;
//! - **publish to deliver**: the program asks the server (`POST /publish`) to
//!   publish M events, topic `w{seq % K}` for event `seq`, at R per second,
//!   each with `SEQ NANOS` in its data (`SystemTime` when the event is built,
//!   padded to the payload size). Every client reads its streams (a chunked
//!   HTTP/1.1 decoder and an SSE line parser of its own) and takes receive time
//!   minus `NANOS` for every event: p50, p99 and max over all deliveries;
//! - **server CPU of the publish phase**: from the publish request until every
//!   delivery arrived (or 10 s after the last publish), in total and per
//!   delivery; the load generator's own CPU beside it (both share the cores);
//! - **completeness**: each client must get each of the M events exactly once
//!   (in A, each on the connection of its topic; in B, with an `m1.` cursor
//!   as its id).
//!
//! - **bytes per delivery**: the SSE bytes each client read per event (the
//!   chunked framing aside): B's `id:` is a cursor over the K topics.
//!
//! Then the ratio B / A of each figure. Before the scenarios, the same
//! streams are drained in this process, without sockets (`Hub` only, one
//! thread): the time per event a `Subscriber` and a `MultiSubscriber` yield,
//! which isolates what B adds per delivery (its `id:` line) from the network.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::future::Either as EitherStream;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tower_sse::{Event, OkEvents, SseBody};
use tower_sse_hub::{Hub, MultiSubscriber, Subscriber};
use tower_sse_serve::Server;
use tower_sse_tools::{cpu, ServerProcess};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        serve();
    } else {
        drive(&Options::parse(&args));
    }
}

/// Nanoseconds since the Unix epoch: the clock the server stamps events with
/// and the clients read them by (one machine).
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

fn topic(j: usize) -> String {
    format!("w{j}")
}

// ----------------------------------------------------------------- server ---

type Events = EitherStream<Subscriber, MultiSubscriber>;
type Body = Either<SseBody<OkEvents<Events>>, Full<Bytes>>;

/// `GET /one?TOPIC`: a single-topic stream; `GET /many?T1,T2,...`: one stream
/// over those topics; `POST /publish?EVENTS,RATE,TOPICS,PAYLOAD`: publishes,
/// then answers.
#[tokio::main]
async fn serve() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!(
        "listening on http://{}",
        listener.local_addr().expect("addr")
    );
    let hub = Hub::new();
    let service = tower::service_fn(move |req: Request<Incoming>| {
        let hub = hub.clone();
        async move { Ok::<_, Infallible>(route(&hub, req).await) }
    });
    Server::new()
        .writev(true)
        .serve(listener, service)
        .await
        .expect("serve");
}

async fn route(hub: &Hub, req: Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or_default().to_owned();
    let stream = |events: Events| {
        SseBody::from_events(events)
            .into_response()
            .map(Either::Left)
    };
    match req.uri().path() {
        "/one" => match hub.subscribe(&query, None).await {
            Ok(sub) => stream(EitherStream::Left(sub)),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        "/many" => {
            let topics: Vec<&str> = query.split(',').collect();
            match hub.subscribe_many(&topics, None).await {
                Ok(sub) => stream(EitherStream::Right(sub)),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
        "/publish" => {
            let n: Vec<u64> = query.split(',').filter_map(|v| v.parse().ok()).collect();
            let &[events, rate, topics, payload] = n.as_slice() else {
                return text(StatusCode::BAD_REQUEST, "EVENTS,RATE,TOPICS,PAYLOAD".into());
            };
            publish(hub, events, rate, topics as usize, payload as usize).await;
            text(StatusCode::OK, format!("published {events}"))
        }
        _ => text(StatusCode::NOT_FOUND, String::new()),
    }
}

/// Event `seq` goes to topic `w{seq % topics}`, `rate` a second; its data is
/// `SEQ NANOS` padded with `x` to `payload` bytes, stamped as it is built.
async fn publish(hub: &Hub, events: u64, rate: u64, topics: usize, payload: usize) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    for seq in 0..events {
        tick.tick().await;
        let published = hub
            .publish_with(&topic(seq as usize % topics), |_| {
                Event::message(data(seq as usize, payload))
            })
            .await;
        published.expect("publish");
    }
}

/// `SEQ NANOS`, padded with ` xxx...` to `payload` bytes.
fn data(seq: usize, payload: usize) -> String {
    let mut data = format!("{seq} {}", now_ns());
    let pad = payload.saturating_sub(data.len() + 1);
    if pad > 0 {
        data.push(' ');
        data.extend(std::iter::repeat_n('x', pad));
    }
    data
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *res.status_mut() = status;
    res
}

// ---------------------------------------------------------------- options ---

struct Options {
    clients: usize,
    topics: usize,
    events: usize,
    rate: u64,
    payload: usize,
    runs: usize,
}

impl Options {
    fn parse(args: &[String]) -> Self {
        let mut o = Options {
            clients: 1_000,
            topics: 8,
            events: 200,
            rate: 50,
            payload: 100,
            runs: 1,
        };
        for pair in args.chunks(2) {
            let [flag, value] = pair else {
                panic!("options come as `--name value` pairs, got {pair:?}");
            };
            let value: usize = value
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {value}"));
            match flag.as_str() {
                "--clients" => o.clients = value.max(1),
                "--topics" => o.topics = value.clamp(1, tower_sse_hub::MAX_TOPICS),
                "--events" => o.events = value.max(1),
                "--rate" => o.rate = value.max(1) as u64,
                "--payload" => o.payload = value,
                "--runs" => o.runs = value.max(1),
                other => panic!("unknown option {other}: see the doc comment of multi_cost.rs"),
            }
        }
        o
    }
}

// ----------------------------------------------------------------- driver ---

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The soft limit on open descriptors of this process.
fn descriptor_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(usize::MAX)
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// K single-topic streams per client.
    Singles,
    /// One multi-topic stream per client.
    Multi,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Singles => "A: K streams",
            Scenario::Multi => "B: 1 stream",
        }
    }
}

/// What one scenario measured.
struct Figures {
    connections: usize,
    rss_per_client: f64,
    rss_per_connection: f64,
    connect_cpu_per_client: f64,
    deliveries: u64,
    bytes_per_delivery: f64,
    expected: u64,
    complete_clients: usize,
    missing: u64,
    duplicates: u64,
    misrouted: u64,
    streams_ended: usize,
    /// Publish to deliver, in µs.
    p50: f64,
    p99: f64,
    max: f64,
    publish_cpu: f64,
    client_cpu: f64,
}

fn drive(o: &Options) {
    let needed = o.clients * o.topics + 64;
    let limit = descriptor_limit();
    assert!(
        limit >= needed,
        "scenario A needs {needed} descriptors, the soft limit is {limit}: raise `ulimit -n` \
         (tools/multi_cost.sh raises it to the hard limit)"
    );
    println!(
        "C = {} clients, K = {} topics, M = {} events at {}/s, {} B of data each",
        o.clients, o.topics, o.events, o.rate, o.payload
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    hub_only(o);
    for run in 0..o.runs {
        let a = measure(&rt, o, Scenario::Singles);
        let b = measure(&rt, o, Scenario::Multi);
        print_run(run + 1, o, &a, &b);
    }
}

/// Publishes M events (as the server does) to a hub with C × K
/// `Subscriber`s (A) or C `MultiSubscriber`s (B), then drains every stream:
/// the time per event yielded, and its bytes.
fn hub_only(o: &Options) {
    use futures_util::{FutureExt, Stream, StreamExt};

    fn drain<S: Stream<Item = tower_sse::EncodedEvent> + Unpin>(
        streams: &mut [S],
    ) -> (Duration, u64, u64) {
        let (mut events, mut bytes) = (0, 0);
        let started = Instant::now();
        for stream in streams {
            while let Some(Some(event)) = stream.next().now_or_never() {
                events += 1;
                bytes += event.len() as u64;
            }
        }
        (started.elapsed(), events, bytes)
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topics: Vec<String> = (0..o.topics).map(topic).collect();
    let publish_all = |hub: &Hub| {
        rt.block_on(async {
            for seq in 0..o.events {
                hub.publish(&topic(seq % o.topics), Event::message(data(seq, o.payload)))
                    .await
                    .expect("publish");
            }
        })
    };
    let hub = Hub::new();
    let mut singles: Vec<Subscriber> = rt.block_on(async {
        let mut subs = Vec::new();
        for _ in 0..o.clients {
            for t in &topics {
                subs.push(hub.subscribe(t, None).await.expect("subscribe"));
            }
        }
        subs
    });
    publish_all(&hub);
    let a = drain(&mut singles);
    drop(singles);
    let hub = Hub::new();
    let mut multis: Vec<MultiSubscriber> = rt.block_on(async {
        let mut subs = Vec::new();
        for _ in 0..o.clients {
            subs.push(hub.subscribe_many(&topics, None).await.expect("subscribe"));
        }
        subs
    });
    publish_all(&hub);
    let b = drain(&mut multis);
    let per =
        |(time, events, _): (Duration, u64, u64)| time.as_nanos() as f64 / events.max(1) as f64;
    let size = |(_, events, bytes): (Duration, u64, u64)| bytes as f64 / events.max(1) as f64;
    println!(
        "hub only, {} events drained from each side: {:.0} ns per event yielded by a Subscriber, \
         {:.0} ns by a MultiSubscriber ({:.2}×); {:.0} B against {:.0} B per event",
        a.1,
        per(a),
        per(b),
        per(b) / per(a),
        size(a),
        size(b)
    );
}

fn print_run(run: usize, o: &Options, a: &Figures, b: &Figures) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split(' ').next().unwrap_or("?");
    println!("\nrun {run} (load average {load} on {} cores)", cores());
    println!(
        "{:<34} {:>15} {:>15} {:>8}",
        "",
        Scenario::Singles.name(),
        Scenario::Multi.name(),
        "B / A"
    );
    let row = |what: &str, a: f64, b: f64, unit: &str| {
        println!(
            "{what:<34} {:>11.1} {unit:<3} {:>11.1} {unit:<3} {:>7.2}×",
            a,
            b,
            b / a
        );
    };
    row(
        "connections",
        a.connections as f64,
        b.connections as f64,
        "",
    );
    row(
        "server RSS per client",
        a.rss_per_client / 1024.0,
        b.rss_per_client / 1024.0,
        "KiB",
    );
    row(
        "server RSS per connection",
        a.rss_per_connection / 1024.0,
        b.rss_per_connection / 1024.0,
        "KiB",
    );
    row(
        "server CPU to connect, per client",
        a.connect_cpu_per_client * 1e6,
        b.connect_cpu_per_client * 1e6,
        "µs",
    );
    row(
        "bytes per delivery",
        a.bytes_per_delivery,
        b.bytes_per_delivery,
        "B",
    );
    row("publish → deliver p50", a.p50, b.p50, "µs");
    row("publish → deliver p99", a.p99, b.p99, "µs");
    row("publish → deliver max", a.max, b.max, "µs");
    row(
        "server CPU, publish phase",
        a.publish_cpu * 1e3,
        b.publish_cpu * 1e3,
        "ms",
    );
    row(
        "server CPU per delivery",
        a.publish_cpu * 1e6 / a.deliveries.max(1) as f64,
        b.publish_cpu * 1e6 / b.deliveries.max(1) as f64,
        "µs",
    );
    row(
        "load generator CPU, publish phase",
        a.client_cpu * 1e3,
        b.client_cpu * 1e3,
        "ms",
    );
    for (scenario, f) in [(Scenario::Singles, a), (Scenario::Multi, b)] {
        println!(
            "{}: {}/{} deliveries, {}/{} clients got every event exactly once \
             ({} missing, {} duplicated, {} on a wrong stream or id, {} streams ended)",
            scenario.name(),
            f.deliveries,
            f.expected,
            f.complete_clients,
            o.clients,
            f.missing,
            f.duplicates,
            f.misrouted,
            f.streams_ended
        );
    }
}

fn measure(rt: &tokio::runtime::Runtime, o: &Options, scenario: Scenario) -> Figures {
    let server = ServerProcess::start(&["serve"]);
    std::thread::sleep(Duration::from_millis(500));
    let topics: Vec<String> = (0..o.topics).map(topic).collect();
    // Every stream a client opens: (client, topic index or None for all).
    let streams: Vec<(usize, Option<usize>)> = match scenario {
        Scenario::Singles => (0..o.clients)
            .flat_map(|c| (0..o.topics).map(move |j| (c, Some(j))))
            .collect(),
        Scenario::Multi => (0..o.clients).map(|c| (c, None)).collect(),
    };
    let rss0 = server.rss();
    let cpu0 = server.cpu();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let opened = rt.block_on(async {
        let mut opened = Vec::with_capacity(streams.len());
        // In batches, so that the listen backlog never overflows.
        for batch in streams.chunks(250) {
            let heads = futures_util::future::join_all(batch.iter().map(|&(_, j)| {
                let path = match j {
                    Some(j) => format!("/one?{}", topics[j]),
                    None => format!("/many?{}", topics.join(",")),
                };
                open(&server.addr, path)
            }))
            .await;
            opened.extend(heads);
        }
        opened
    });
    let cpu1 = server.cpu();
    let readers: Vec<_> = opened
        .into_iter()
        .zip(&streams)
        .map(|((socket, rest), &(_, j))| {
            let reader = Reader::new(rest, o.events, j.map(|j| (j, o.topics)));
            rt.spawn(reader.run(socket, delivered.clone(), stopped.clone()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let rss1 = server.rss();

    let expected = (o.clients * o.events) as u64;
    let (cpu2, client2) = (server.cpu(), cpu("/proc/self/stat"));
    rt.block_on(request(
        &server.addr,
        &format!(
            "/publish?{},{},{},{}",
            o.events, o.rate, o.topics, o.payload
        ),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let (cpu3, client3) = (server.cpu(), cpu("/proc/self/stat"));

    let _ = stop.send(true);
    let stats: Vec<Stats> = rt.block_on(async {
        let mut stats = Vec::with_capacity(readers.len());
        for reader in readers {
            stats.push(reader.await.expect("reader"));
        }
        stats
    });
    drop(server);
    std::thread::sleep(Duration::from_millis(500));

    // Each client's streams together: every event exactly once.
    let mut per_client = vec![vec![0u32; o.events]; o.clients];
    let mut latencies = Vec::with_capacity(expected as usize);
    let (mut misrouted, mut streams_ended, mut bytes) = (0, 0, 0);
    for (s, &(c, _)) in stats.into_iter().zip(&streams) {
        for (total, n) in per_client[c].iter_mut().zip(&s.counts) {
            *total += u32::from(*n);
        }
        latencies.extend(s.latencies_us);
        misrouted += s.misrouted;
        bytes += s.bytes;
        streams_ended += usize::from(s.ended);
    }
    let complete_clients = per_client
        .iter()
        .filter(|counts| counts.iter().all(|n| *n == 1))
        .count();
    let missing = per_client.iter().flatten().filter(|n| **n == 0).count() as u64;
    let duplicates: u64 = per_client
        .iter()
        .flatten()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i])
    };
    Figures {
        connections: streams.len(),
        rss_per_client: rss1.saturating_sub(rss0) as f64 / o.clients as f64,
        rss_per_connection: rss1.saturating_sub(rss0) as f64 / streams.len() as f64,
        connect_cpu_per_client: (cpu1 - cpu0) / o.clients as f64,
        deliveries: latencies.len() as u64,
        bytes_per_delivery: bytes as f64 / latencies.len().max(1) as f64,
        expected,
        complete_clients,
        missing,
        duplicates,
        misrouted,
        streams_ended,
        p50: quantile(0.50),
        p99: quantile(0.99),
        max: quantile(1.0),
        publish_cpu: cpu3 - cpu2,
        client_cpu: client3 - client2,
    }
}

/// Sends `GET path` for an event stream and waits for a `200` chunked head;
/// returns the socket and the bytes read after the head.
async fn open(addr: &str, path: String) -> (TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("send the request");
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let n = socket.read(&mut buf).await.expect("read the head");
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            assert!(
                text.starts_with("http/1.1 200") && text.contains("transfer-encoding: chunked"),
                "{text}"
            );
            return (socket, head.split_off(end + 4));
        }
    }
}

/// A one-shot request (`POST path`, `connection: close`); waits for the end
/// of the answer.
async fn request(addr: &str, path: &str) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(
            format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.expect("read");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

// ----------------------------------------------------------------- client ---

/// What one stream received.
struct Stats {
    /// How many times each event (by `seq`) arrived.
    counts: Vec<u8>,
    /// Receive time minus the event's stamp, in µs.
    latencies_us: Vec<u32>,
    /// Events of another topic (A), or whose id is not a cursor (B).
    misrouted: u64,
    /// The server ended the stream.
    ended: bool,
    /// SSE bytes read (the chunked framing aside).
    bytes: u64,
}

#[derive(Clone, Copy)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many payload bytes left in the chunk.
    Data(usize),
    /// The `\r\n` after a chunk's payload.
    End,
}

/// An HTTP/1.1 chunked decoder and an SSE line parser, for one stream.
struct Reader {
    /// Bytes read and not yet decoded.
    buf: Vec<u8>,
    chunk: Chunk,
    /// The SSE line being assembled.
    line: Vec<u8>,
    /// The current event's `SEQ NANOS`, once its data line was read.
    data: Option<(usize, u64)>,
    /// Whether the current event's id is a composite cursor.
    cursor_id: bool,
    /// For a single-topic stream: its topic's index, and K.
    single: Option<(usize, usize)>,
    stats: Stats,
}

impl Reader {
    fn new(rest: Vec<u8>, events: usize, single: Option<(usize, usize)>) -> Self {
        Self {
            buf: rest,
            chunk: Chunk::Size,
            line: Vec::with_capacity(256),
            data: None,
            cursor_id: false,
            single,
            stats: Stats {
                counts: vec![0; events],
                latencies_us: Vec::new(),
                misrouted: 0,
                ended: false,
                bytes: 0,
            },
        }
    }

    async fn run(
        mut self,
        mut socket: TcpStream,
        delivered: Arc<AtomicU64>,
        mut stop: watch::Receiver<bool>,
    ) -> Stats {
        self.decode(&delivered);
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                read = socket.read(&mut buf) => match read {
                    Ok(n @ 1..) => {
                        self.buf.extend_from_slice(&buf[..n]);
                        self.decode(&delivered);
                    }
                    _ => {
                        self.stats.ended = true;
                        break;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        self.stats
    }

    /// Decodes what `buf` holds of the chunked body.
    fn decode(&mut self, delivered: &AtomicU64) {
        let mut at = 0;
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(eol) = self.buf[at..].windows(2).position(|w| w == b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&self.buf[at..at + eol]).expect("size line");
                    let size =
                        usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                            .expect("chunk size");
                    at += eol + 2;
                    self.chunk = if size == 0 {
                        // The last chunk: the stream is over.
                        self.stats.ended = true;
                        Chunk::End
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(self.buf.len() - at);
                    let end = at + take;
                    let payload = std::mem::take(&mut self.buf);
                    self.feed(&payload[at..end], delivered);
                    self.buf = payload;
                    at = end;
                    if take < left {
                        self.chunk = Chunk::Data(left - take);
                        break;
                    }
                    self.chunk = Chunk::End;
                }
                Chunk::End => {
                    if self.buf.len() - at < 2 {
                        break;
                    }
                    at += 2;
                    self.chunk = Chunk::Size;
                }
            }
        }
        self.buf.drain(..at);
    }

    /// SSE bytes: lines, and an event at each blank line.
    fn feed(&mut self, mut bytes: &[u8], delivered: &AtomicU64) {
        self.stats.bytes += bytes.len() as u64;
        while let Some(eol) = bytes.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&bytes[..eol]);
            bytes = &bytes[eol + 1..];
            let line = std::mem::take(&mut self.line);
            self.field(&line, delivered);
            self.line = line;
            self.line.clear();
        }
        self.line.extend_from_slice(bytes);
    }

    fn field(&mut self, line: &[u8], delivered: &AtomicU64) {
        if line.is_empty() {
            if let Some((seq, stamp)) = self.data.take() {
                let received = now_ns();
                let wrong = match self.single {
                    Some((j, k)) => seq % k != j,
                    None => !self.cursor_id,
                };
                self.stats.misrouted += u64::from(wrong);
                if let Some(n) = self.stats.counts.get_mut(seq) {
                    *n = n.saturating_add(1);
                }
                let us = received.saturating_sub(stamp) / 1_000;
                self.stats
                    .latencies_us
                    .push(us.min(u64::from(u32::MAX)) as u32);
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            self.cursor_id = false;
        } else if let Some(id) = line.strip_prefix(b"id: ") {
            self.cursor_id = id.starts_with(b"m1.");
        } else if let Some(data) = line.strip_prefix(b"data: ") {
            let text = std::str::from_utf8(data).unwrap_or("");
            let mut fields = text.split(' ');
            let seq = fields.next().and_then(|s| s.parse().ok());
            let stamp = fields.next().and_then(|s| s.parse().ok());
            self.data = seq.zip(stamp);
        }
    }
}
