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

struct Echo;
impl Service for Echo {
    fn handle(&self, r: IncomingRequest) -> AnswerFuture {
        Box::pin(async move { Answer::Response(r.body) })
    }
}

#[derive(Default)]
struct Figures {
    seq_rps: f64,
    p50: Duration,
    p99: Duration,
    par_rps: f64,
    connect_p50: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

trait Client: Send + Sync + 'static {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'_, Vec<u8>>;
}

async fn measure<C: Client>(client: Arc<C>, requests: usize) -> Figures {
    let body = vec![7u8; BODY];
    for _ in 0..200 {
        client.call(body.clone()).await; // warm-up
    }
    let mut lat = Vec::with_capacity(requests);
    let start = Instant::now();
    for _ in 0..requests {
        let t = Instant::now();
        let r = client.call(body.clone()).await;
        lat.push(t.elapsed());
        assert_eq!(r.len(), BODY);
    }
    let seq_rps = requests as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, body) = (client.clone(), body.clone());
        tasks.spawn(async move {
            for _ in 0..requests / IN_FLIGHT {
                assert_eq!(client.call(body.clone()).await.len(), BODY);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let par_rps = (requests / IN_FLIGHT * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64();
    Figures { seq_rps, p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99), par_rps, ..Figures::default() }
}

// ---- AgentWire ----

struct AwClient(agentwire_agent::quic::Connection);
impl Client for AwClient {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.0.request("echo", body).await.expect("echo") })
    }
}

async fn agentwire(requests: usize) -> Figures {
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let limits = TransportLimits { max_requests_per_sec: u32::MAX / 2, ..TransportLimits::default() };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), brand.clone(), vec![], Arc::new(Echo), limits).unwrap();
    let target = Target {
        addr: server.local_addr().unwrap(),
        identity: Some(brand.identity.public()),
        noise_static: Some(brand.noise.public()),
    };
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = connect(&ep, user.clone(), &target, &[], limits).await.unwrap();
    let mut f = measure(Arc::new(AwClient(conn)), requests).await;
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
    f.connect_p50 = percentile(&times, 0.5);
    f
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

async fn libp2p(requests: usize) -> Figures {
    let (id, addr) = libp2p_server().await;
    let mut f = measure(Arc::new(libp2p_client(id, addr.clone())), requests).await;
    let mut times = Vec::new();
    for _ in 0..CONNECTS {
        let t = Instant::now();
        let c = libp2p_client(id, addr.clone());
        c.call(vec![1; BODY]).await;
        times.push(t.elapsed());
    }
    times.sort();
    f.connect_p50 = percentile(&times, 0.5);
    f
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let requests: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(100_000);
    println!("AgentWire sessions vs libp2p request-response (QUIC), {requests} requests of {BODY} B, {IN_FLIGHT} in flight\n");
    println!("| runtime | stack | sequential req/s | p50 | p99 | {IN_FLIGHT} in flight req/s | connect + handshake + first answer (p50) |");
    println!("|---|---|---|---|---|---|---|");
    for (name, rt) in [
        (
            "multi-thread (2 workers)",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        ),
        ("current-thread", tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()),
    ] {
        // The load runs on a runtime worker, as an application's tasks do,
        // not on the thread that called `block_on` (for both stacks alike).
        let (aw, p2p) = rt
            .block_on(rt.spawn(async move { (agentwire(requests).await, libp2p(requests).await) }))
            .expect("benchmark task");
        for (stack, f) in [("AgentWire", &aw), ("libp2p", &p2p)] {
            println!(
                "| {name} | {stack} | {:.0} | {} | {} | {:.0} | {} |",
                f.seq_rps,
                us(f.p50),
                us(f.p99),
                f.par_rps,
                us(f.connect_p50)
            );
        }
        println!(
            "| {name} | ratio | {:.2}× | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
            aw.seq_rps / p2p.seq_rps,
            aw.p50.as_secs_f64() / p2p.p50.as_secs_f64(),
            aw.p99.as_secs_f64() / p2p.p99.as_secs_f64(),
            aw.par_rps / p2p.par_rps,
            aw.connect_p50.as_secs_f64() / p2p.connect_p50.as_secs_f64()
        );
    }
}
