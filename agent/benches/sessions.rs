//! Load generator: AgentWire sessions (quinn + Noise, spec §11–13) against
//! a libp2p request-response echo over libp2p's QUIC, in the same run, on the
//! same tokio runtime configuration — both a 2-worker multi-thread runtime
//! and a current-thread runtime. Not a timed test: it prints figures for
//! BENCHMARKS.md.
//!
//!   cargo bench -p agentwire-agent --bench sessions [-- REQUESTS]
//!
//! Per runtime and stack: sequential request/response of 200-byte messages
//! over one connection (throughput, p50, p99), 64 requests in flight over one
//! connection (throughput), and connect + handshake + first answer (median
//! over fresh connections). The process uses the allocator the `agentwire`
//! binary ships with (mimalloc).
//!
//! The two stacks take turns: REQUESTS (default 100,000) per stack and
//! pattern are split into rounds, each round measuring both stacks one after
//! the other (the order alternating), so a change in the machine's speed
//! during the run falls on both alike. Throughput is the median of the
//! rounds and its ratio the median of the rounds' ratios, each round's
//! ratio printed too; latency percentiles pool every round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::quic::{connect, Answer, AnswerFuture, IncomingRequest, Server, Service, Target, TransportLimits};
use agentwire_protocol::identity::LocalIdentity;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot};

/// The allocator the `agentwire` binary ships with, for both stacks alike
/// (BENCHMARKS.md has figures with glibc's too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY: usize = 200;
const IN_FLIGHT: usize = 64;
const CONNECTS: usize = 100;
/// Rounds the stacks take turns in.
const ROUNDS: usize = 5;

struct Echo;
impl Service for Echo {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move { Answer::Response(r.body) })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

trait Client: Send + Sync + 'static {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'_, Vec<u8>>;
}

/// Sequential requests; each one's latency is added to `lat`. Returns requests per second.
async fn sequential(client: &dyn Client, requests: usize, lat: &mut Vec<Duration>) -> f64 {
    let body = vec![7u8; BODY];
    let start = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let r = client.call(body.clone()).await;
        lat.push(t.elapsed());
        assert_eq!(r.len(), BODY);
    }
    requests as f64 / start.elapsed().as_secs_f64()
}

/// `requests` over IN_FLIGHT tasks, each with one request in flight at a time.
async fn in_flight(client: Arc<dyn Client>, requests: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let client = client.clone();
        tasks.spawn(async move {
            let body = vec![7u8; BODY];
            for _ in 0..requests / IN_FLIGHT {
                assert_eq!(client.call(body.clone()).await.len(), BODY);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    (requests / IN_FLIGHT * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64()
}

/// One stack's measurements over all rounds.
#[derive(Default)]
struct Stack {
    seq_rps: Vec<f64>,
    par_rps: Vec<f64>,
    latencies: Vec<Duration>,
    connect_p50: Duration,
}

/// Both stacks, rounds interleaved; index 0 is AgentWire, 1 libp2p.
async fn compare(requests: usize) -> [Stack; 2] {
    let (aw, aw_connect) = agentwire().await;
    let (p2p, p2p_connect) = libp2p().await;
    let clients: [Arc<dyn Client>; 2] = [aw, p2p];
    for c in &clients {
        for _ in 0..200 {
            c.call(vec![7u8; BODY]).await; // warm-up
        }
    }
    let mut stacks: [Stack; 2] = Default::default();
    let per_round = requests / ROUNDS;
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let rps = sequential(clients[i].as_ref(), per_round, &mut stacks[i].latencies).await;
            stacks[i].seq_rps.push(rps);
        }
        for i in order {
            stacks[i].par_rps.push(in_flight(clients[i].clone(), per_round).await);
        }
    }
    stacks[0].connect_p50 = aw_connect.await;
    stacks[1].connect_p50 = p2p_connect.await;
    stacks
}

// ---- AgentWire ----

struct AwClient {
    conn: agentwire_agent::quic::Connection,
    /// Kept for as long as the connection: it runs on this endpoint.
    _endpoint: quinn::Endpoint,
}
impl Client for AwClient {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.conn.request("echo", body).await.expect("echo") })
    }
}

/// A connected AgentWire client, and a measurement of fresh connections to run later.
async fn agentwire() -> (Arc<dyn Client>, impl std::future::Future<Output = Duration>) {
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let limits = TransportLimits {
        max_requests_per_sec: u32::MAX / 2,
        max_request_burst: u32::MAX / 2,
        ..TransportLimits::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), brand.clone(), vec![], Arc::new(Echo), limits).unwrap();
    let target = Target {
        addr: server.local_addr().unwrap(),
        identity: Some(brand.identity.public()),
        noise_static: Some(brand.noise.public()),
    };
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = connect(&ep, user.clone(), &target, &[], limits).await.unwrap();
    let connects = async move {
        let _server = server;
        let mut times = Vec::new();
        for _ in 0..CONNECTS {
            let t = Instant::now();
            let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            let c = connect(&ep, user.clone(), &target, &[], limits).await.unwrap();
            c.request("echo", vec![1; BODY]).await.unwrap();
            times.push(t.elapsed());
            c.close();
        }
        times.sort();
        percentile(&times, 0.5)
    };
    (Arc::new(AwClient { conn, _endpoint: ep }), connects)
}

// ---- libp2p request-response (baseline) ----

#[derive(Clone, Default)]
struct RawCodec;

#[async_trait::async_trait]
impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &r).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> std::io::Result<()> {
        write_frame(io, &r).await
    }
}

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u32::from_be_bytes(len).min(1 << 20) as usize];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> std::io::Result<()> {
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

type RrBehaviour = request_response::Behaviour<RawCodec>;

fn swarm() -> Swarm<RrBehaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| {
            let cfg = request_response::Config::default().with_max_concurrent_streams(1024);
            RrBehaviour::new([(StreamProtocol::new("/bench/echo/1"), ProtocolSupport::Full)], cfg)
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

async fn libp2p_server() -> (PeerId, Multiaddr) {
    let mut s = swarm();
    s.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
            break address;
        }
    };
    let id = *s.local_peer_id();
    tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { request, channel, .. },
                ..
            }) = s.select_next_some().await
            {
                let _ = s.behaviour_mut().send_response(channel, request);
            }
        }
    });
    (id, addr)
}

struct P2pClient(mpsc::Sender<(Vec<u8>, oneshot::Sender<Vec<u8>>)>);
impl Client for P2pClient {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.0.send((body, tx)).await.expect("driver");
            rx.await.expect("answer")
        })
    }
}

fn libp2p_client(server: PeerId, addr: Multiaddr) -> P2pClient {
    let mut s = swarm();
    s.add_peer_address(server, addr);
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, oneshot::Sender<Vec<u8>>)>(1024);
    tokio::spawn(async move {
        let mut waiting = std::collections::HashMap::new();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some((body, reply)) => { waiting.insert(s.behaviour_mut().send_request(&server, body), reply); }
                    None => return,
                },
                ev = s.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response }, ..
                    }) = ev {
                        if let Some(reply) = waiting.remove(&request_id) { let _ = reply.send(response); }
                    }
                }
            }
        }
    });
    P2pClient(tx)
}

/// A connected libp2p client, and a measurement of fresh connections to run later.
async fn libp2p() -> (Arc<dyn Client>, impl std::future::Future<Output = Duration>) {
    let (id, addr) = libp2p_server().await;
    let client = libp2p_client(id, addr.clone());
    let connects = async move {
        let mut times = Vec::new();
        for _ in 0..CONNECTS {
            let t = Instant::now();
            let c = libp2p_client(id, addr.clone());
            c.call(vec![1; BODY]).await;
            times.push(t.elapsed());
        }
        times.sort();
        percentile(&times, 0.5)
    };
    (Arc::new(client), connects)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let requests: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(100_000);
    println!(
        "AgentWire sessions vs libp2p request-response (QUIC), {requests} requests of {BODY} B per stack and \
         pattern in {ROUNDS} interleaved rounds, {IN_FLIGHT} in flight\n"
    );
    println!("| runtime | stack | sequential req/s | p50 | p99 | {IN_FLIGHT} in flight req/s | connect + handshake + first answer (p50) |");
    println!("|---|---|---|---|---|---|---|");
    let mut per_round = Vec::new();
    for (name, rt) in [
        (
            "multi-thread (2 workers)",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        ),
        ("current-thread", tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()),
    ] {
        // The load runs on a runtime worker, as an application's tasks do,
        // not on the thread that called `block_on` (for both stacks alike).
        let [mut aw, mut p2p] = rt.block_on(rt.spawn(compare(requests))).expect("benchmark task");
        let ratios = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>();
        let seq_ratios = ratios(&aw.seq_rps, &p2p.seq_rps);
        let par_ratios = ratios(&aw.par_rps, &p2p.par_rps);
        for (stack, f) in [("AgentWire", &mut aw), ("libp2p", &mut p2p)] {
            f.latencies.sort();
            println!(
                "| {name} | {stack} | {:.0} | {} | {} | {:.0} | {} |",
                median(f.seq_rps.clone()),
                us(percentile(&f.latencies, 0.5)),
                us(percentile(&f.latencies, 0.99)),
                median(f.par_rps.clone()),
                us(f.connect_p50)
            );
        }
        let lat_ratio = |p| percentile(&aw.latencies, p).as_secs_f64() / percentile(&p2p.latencies, p).as_secs_f64();
        println!(
            "| {name} | ratio | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            median(seq_ratios.clone()),
            lat_ratio(0.5),
            lat_ratio(0.99),
            median(par_ratios.clone()),
            aw.connect_p50.as_secs_f64() / p2p.connect_p50.as_secs_f64()
        );
        per_round.push((name, seq_ratios, par_ratios));
    }
    let list = |v: &[f64]| v.iter().map(|r| format!("{r:.2}×")).collect::<Vec<_>>().join(", ");
    println!("\nThroughput ratio in each round (AgentWire / libp2p):\n");
    for (name, seq, par) in per_round {
        println!("- {name}: sequential {}; {IN_FLIGHT} in flight {}", list(&seq), list(&par));
    }
}
