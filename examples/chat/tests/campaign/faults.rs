//! The cluster the faults act on (Redis, one proxy per node, the nodes), and
//! the fault schedule drawn from the seed: `kill -9` of a node and its restart,
//! Redis shut down with and without its data, Redis paused, its Pub/Sub
//! connections killed, one node cut from Redis. Faults run one at a time,
//! spaced so that the system can recover between them.

use std::{fmt, time::Duration};

use super::{
    history::{Clock, FaultRecord},
    node::Node,
    proxy::{CutMode, Proxy},
    redis::RedisServer,
    rng::Rng,
};

pub struct Cluster {
    pub redis: RedisServer,
    pub proxies: Vec<Proxy>,
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
pub enum Fault {
    /// `kill -9` of a node, restarted on the same port after `down`.
    KillNode { node: usize, down: Duration },
    /// `SHUTDOWN SAVE` (restart from the RDB) or `SHUTDOWN NOSAVE` (restart
    /// empty: data loss), restarted after `down`.
    RedisShutdown { save: bool, down: Duration },
    /// `CLIENT PAUSE <ms> WRITE`: reads go on, writes wait.
    ClientPause { pause: Duration },
    /// `DEBUG SLEEP`: the whole server stops answering.
    DebugSleep { sleep: Duration },
    /// `CLIENT KILL TYPE pubsub`: every node loses its live feed at once.
    KillPubsub,
    /// One node's proxy drops its connections and refuses or blackholes new
    /// ones for a while.
    Cut {
        node: usize,
        mode: CutMode,
        span: Duration,
    },
    /// One node frozen (`SIGSTOP`, then `SIGCONT`) for longer than the
    /// presence TTL: its lease lapses, its members are announced gone by
    /// another node, and it must bring them back when it thaws.
    Freeze { node: usize, span: Duration },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KillNode { node, down } => {
                write!(f, "kill -9 node {node}, restart after {down:?}")
            }
            Self::RedisShutdown { save: true, down } => {
                write!(
                    f,
                    "redis SHUTDOWN SAVE, restart from the RDB after {down:?}"
                )
            }
            Self::RedisShutdown { save: false, down } => {
                write!(f, "redis SHUTDOWN NOSAVE, restart empty after {down:?}")
            }
            Self::ClientPause { pause } => {
                write!(f, "redis CLIENT PAUSE {} WRITE", pause.as_millis())
            }
            Self::DebugSleep { sleep } => write!(f, "redis DEBUG SLEEP {:.1}", sleep.as_secs_f64()),
            Self::KillPubsub => write!(f, "redis CLIENT KILL TYPE pubsub"),
            Self::Cut { node, mode, span } => {
                write!(f, "cut node {node} from redis ({mode:?}) for {span:?}")
            }
            Self::Freeze { node, span } => write!(f, "freeze node {node} for {span:?}"),
        }
    }
}

/// The kinds of fault, dealt like a deck: every kind once per round, in an
/// order shuffled by the seed, so that even a short CI run injects each kind.
const KINDS: usize = 8;

/// Deals the faults of the schedule.
pub struct Deck {
    rng: Rng,
    round: Vec<usize>,
}

impl Deck {
    pub fn new(rng: Rng) -> Self {
        Self {
            rng,
            round: Vec::new(),
        }
    }

    /// The next fault.
    pub fn draw(&mut self, nodes: usize) -> Fault {
        if self.round.is_empty() {
            self.round = (0..KINDS).collect();
            // Fisher-Yates.
            for i in (1..KINDS).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                self.round.swap(i, j);
            }
        }
        let kind = self.round.pop().unwrap_or(0);
        Fault::of_kind(kind, &mut self.rng, nodes)
    }

    /// The pause before the next fault.
    pub fn pause(&mut self) -> Duration {
        self.rng.millis(1500, 4000)
    }
}

impl Fault {
    fn of_kind(kind: usize, rng: &mut Rng, nodes: usize) -> Self {
        let node = rng.below(nodes as u64) as usize;
        match kind {
            0 => Self::KillNode {
                node,
                down: rng.millis(300, 2500),
            },
            1 => Self::RedisShutdown {
                save: false,
                down: rng.millis(300, 2000),
            },
            2 => Self::RedisShutdown {
                save: true,
                down: rng.millis(300, 2000),
            },
            3 => Self::ClientPause {
                pause: rng.millis(300, 2500),
            },
            4 => Self::DebugSleep {
                sleep: rng.millis(300, 2000),
            },
            5 => Self::KillPubsub,
            6 => Self::Freeze {
                node,
                span: rng.millis(1800, 4000),
            },
            _ => Self::Cut {
                node,
                mode: if rng.chance(50) {
                    CutMode::Refuse
                } else {
                    CutMode::Blackhole
                },
                span: rng.millis(500, 4000),
            },
        }
    }

    pub fn data_loss(&self) -> bool {
        matches!(self, Self::RedisShutdown { save: false, .. })
    }

    pub fn frozen(&self) -> Option<usize> {
        match self {
            Self::Freeze { node, .. } => Some(*node),
            _ => None,
        }
    }
}

/// Runs faults dealt by `deck` until `until` (µs on `clock`), each after a
/// pause of 1.5 to 4 s, and records them. An error is a harness failure
/// (a node or Redis that would not come back).
pub async fn run_schedule(
    cluster: &mut Cluster,
    deck: &mut Deck,
    clock: Clock,
    until: u64,
    records: &mut Vec<FaultRecord>,
) -> Result<(), String> {
    loop {
        tokio::time::sleep(deck.pause()).await;
        let fault = deck.draw(cluster.nodes.len());
        if clock.now() >= until {
            return Ok(());
        }
        let start = clock.now();
        eprintln!("[{}] fault: {fault}", super::history::At(start));
        let result = apply(cluster, &fault).await;
        records.push(FaultRecord {
            start,
            end: clock.now(),
            what: fault.to_string(),
            data_loss: fault.data_loss(),
            frozen: fault.frozen(),
        });
        result?;
        revive_crashed(cluster, clock, records).await?;
    }
}

/// A node that exited without being killed is a finding: it is recorded as a
/// fault (`crashed`) and restarted so that the campaign goes on.
pub async fn revive_crashed(
    cluster: &mut Cluster,
    clock: Clock,
    records: &mut Vec<FaultRecord>,
) -> Result<(), String> {
    for node in &mut cluster.nodes {
        if let Some(why) = node.crashed() {
            let start = clock.now();
            node.start().await?;
            records.push(FaultRecord {
                start,
                end: clock.now(),
                what: format!("CRASHED (not injected): {why}"),
                data_loss: false,
                frozen: None,
            });
        }
    }
    Ok(())
}

async fn apply(cluster: &mut Cluster, fault: &Fault) -> Result<(), String> {
    let server = &mut cluster.redis;
    match fault {
        Fault::KillNode { node, down } => {
            cluster.nodes[*node].kill();
            tokio::time::sleep(*down).await;
            cluster.nodes[*node].start().await
        }
        Fault::RedisShutdown { save, down } => {
            server.shutdown(*save).await?;
            tokio::time::sleep(*down).await;
            server.run().await
        }
        Fault::ClientPause { pause } => {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("PAUSE").arg(pause.as_millis() as u64).arg("WRITE");
            server.command::<()>(cmd, Duration::from_secs(5)).await?;
            tokio::time::sleep(*pause).await;
            Ok(())
        }
        Fault::DebugSleep { sleep } => {
            let mut cmd = redis::cmd("DEBUG");
            cmd.arg("SLEEP").arg(format!("{:.3}", sleep.as_secs_f64()));
            // Answered only once the server wakes up.
            server
                .command::<()>(cmd, *sleep + Duration::from_secs(5))
                .await
        }
        Fault::KillPubsub => {
            let mut cmd = redis::cmd("CLIENT");
            cmd.arg("KILL").arg("TYPE").arg("pubsub");
            server
                .command::<i64>(cmd, Duration::from_secs(5))
                .await
                .map(drop)
        }
        Fault::Cut { node, mode, span } => {
            cluster.proxies[*node].cut(*mode);
            tokio::time::sleep(*span).await;
            cluster.proxies[*node].restore();
            Ok(())
        }
        Fault::Freeze { node, span } => {
            cluster.nodes[*node].signal("STOP")?;
            tokio::time::sleep(*span).await;
            cluster.nodes[*node].signal("CONT")
        }
    }
}
