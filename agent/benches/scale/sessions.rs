//! Phase 1: many sessions held open against one brand. Users connect (QUIC,
//! TLS 1.3, Noise IK), each asks one free question so its session is in use,
//! then all stay open; the brand's resident memory is read before, at half
//! and at all of them, and again after they are closed. Clients are spread
//! over loopback source addresses (127.0.x.y), `per_ip` sessions each, one
//! quinn endpoint (one UDP socket) per address.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::quic::{connect, tls, Connection, Target, TransportLimits};
use agentwire_protocol::identity::LocalIdentity;
use rand_core::OsRng;
use tokio::sync::Semaphore;

use super::brand::CAPS;
use super::machine::{cpu_time, load1, rss_anon_kib, rss_kib, socket_drops, threads, Process, UdpDrops};

/// The `i`th client source address: 127.0.1.1, 127.0.1.2, … (any 127/8 address is local on Linux).
pub fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

/// Client endpoints for `sessions` sessions, `per_ip` to an address.
pub fn endpoints(sessions: usize, per_ip: usize, first: usize) -> Vec<quinn::Endpoint> {
    (0..sessions.div_ceil(per_ip))
        .map(|i| {
            let addr = SocketAddr::from((client_ip(first + i), 0));
            // As a user agent binds its socket (with the agent's default buffers).
            agentwire_agent::quic::client_endpoint(addr, TransportLimits::default().udp_buffer_bytes)
                .unwrap_or_else(|e| panic!("client endpoint on {addr}: {e}"))
        })
        .collect()
}

/// What phase 1 measured.
#[derive(Debug, Default)]
pub struct Held {
    pub wanted: usize,
    pub per_ip: usize,
    pub concurrency: usize,
    pub held: usize,
    pub alive_after_hold: usize,
    pub failures: BTreeMap<String, usize>,
    /// Time spent connecting (both halves).
    pub connecting: Duration,
    /// Brand CPU time spent while connecting.
    pub brand_cpu: Duration,
    pub rss_before: u64,
    pub rss_half: u64,
    pub rss_full: u64,
    pub rss_held: u64,
    pub rss_closed: u64,
    pub anon_before: u64,
    pub anon_full: u64,
    /// The server's live heap (its allocator's count), KiB, at the same moments as the RSS.
    pub heap_before: u64,
    pub heap_half: u64,
    pub heap_full: u64,
    pub heap_held: u64,
    pub heap_closed: u64,
    pub brand_threads: u64,
    pub drops: UdpDrops,
    /// Of those, dropped at the brand's socket.
    pub brand_drops: u64,
    pub load_before: f64,
    pub load_after: f64,
    pub hold: Duration,
}

impl Held {
    /// Brand RSS growth per session held, KiB (all sessions against the idle brand).
    pub fn kib_per_session(&self) -> f64 {
        self.rss_full.saturating_sub(self.rss_before) as f64 / self.held.max(1) as f64
    }

    /// The same from the second half only (one-time costs of the first sessions left out).
    pub fn kib_per_session_marginal(&self) -> f64 {
        let second = self.held.saturating_sub(self.held / 2).max(1);
        self.rss_full.saturating_sub(self.rss_half) as f64 / second as f64
    }

    /// Server live-heap growth per session held, KiB: what the sessions
    /// themselves hold, without what the allocator keeps for reuse.
    pub fn heap_kib_per_session(&self) -> f64 {
        self.heap_full.saturating_sub(self.heap_before) as f64 / self.held.max(1) as f64
    }

    pub fn handshakes_per_sec(&self) -> f64 {
        self.held as f64 / self.connecting.as_secs_f64().max(1e-9)
    }
}

/// Whom the sessions are held with.
#[derive(Clone)]
pub enum Kind {
    /// An AgentWire brand: QUIC, TLS 1.3, Noise IK, one free request.
    AgentWire(Box<Target>),
    /// The baseline: a plain quinn server (same TLS and transport settings, no
    /// Noise), one echo on a stream.
    Quinn(SocketAddr),
}

/// A session held open.
enum Session {
    AgentWire(Box<Connection>),
    Quinn(quinn::Connection),
}

impl Session {
    fn is_open(&self) -> bool {
        match self {
            Session::AgentWire(c) => c.quic().close_reason().is_none(),
            Session::Quinn(c) => c.close_reason().is_none(),
        }
    }

    fn close(&self) {
        match self {
            Session::AgentWire(c) => c.close(),
            Session::Quinn(c) => c.close(0u32.into(), b"bye"),
        }
    }
}

async fn open_one(
    ep: &quinn::Endpoint,
    id: Arc<LocalIdentity>,
    kind: &Kind,
    caps: &[String],
    limits: TransportLimits,
) -> Result<Session, String> {
    match kind {
        Kind::AgentWire(target) => {
            let conn = connect(ep, id, target, caps, limits).await.map_err(|e| format!("connect: {e}"))?;
            conn.request("free", vec![7; 200]).await.map_err(|e| format!("first request: {e}"))?;
            Ok(Session::AgentWire(Box::new(conn)))
        }
        Kind::Quinn(addr) => {
            let config = tls::client_config(&limits).map_err(|e| e.to_string())?;
            let conn = ep
                .connect_with(config, *addr, "agentwire")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(&[7; 200]).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            recv.read_to_end(4096).await.map_err(|e| format!("first request: {e}"))?;
            Ok(Session::Quinn(conn))
        }
    }
}

/// Opens `ids.len()` sessions over `eps` (`per_ip` each, from index `offset`), `concurrency` at once.
#[allow(clippy::too_many_arguments)]
async fn connect_all(
    kind: &Kind,
    eps: &[quinn::Endpoint],
    ids: Vec<Arc<LocalIdentity>>,
    offset: usize,
    per_ip: usize,
    concurrency: usize,
    limits: TransportLimits,
    failures: &mut BTreeMap<String, usize>,
) -> Vec<Session> {
    let sem = Arc::new(Semaphore::new(concurrency));
    let caps: Arc<Vec<String>> = Arc::new(CAPS.iter().map(|c| c.to_string()).collect());
    let mut tasks = tokio::task::JoinSet::new();
    for (k, id) in ids.into_iter().enumerate() {
        let ep = eps[(offset + k) / per_ip].clone();
        let (sem, caps, kind) = (sem.clone(), caps.clone(), kind.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            open_one(&ep, id, &kind, &caps, limits).await
        });
    }
    let mut conns = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(c)) => conns.push(c),
            Ok(Err(e)) => *failures.entry(e.chars().take(100).collect()).or_default() += 1,
            Err(e) => *failures.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    conns
}

/// How phase 1 opens its sessions.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Sessions to open.
    pub sessions: usize,
    /// Sessions from each client address.
    pub per_ip: usize,
    /// Handshakes at once.
    pub concurrency: usize,
    /// How long all are held open.
    pub hold: Duration,
    /// Index of the first client address (so runs use distinct ones).
    pub first_ip: usize,
}

/// Runs phase 1 against `server` (its process, and its UDP port for drop counts).
pub async fn run(kind: Kind, server: &mut Process, port: u16, plan: Plan) -> Held {
    let Plan { sessions: n, per_ip, concurrency, hold, first_ip } = plan;
    // Each session is its own user (its own identity), made before the clock starts.
    let pid = server.pid;
    let mut heap = || tokio::task::block_in_place(|| server.heap_kib());
    let ids: Vec<Arc<LocalIdentity>> = (0..n).map(|_| Arc::new(LocalIdentity::generate(&mut OsRng))).collect();
    let eps = endpoints(n, per_ip, first_ip);
    let limits = TransportLimits::default();
    let mut h = Held { wanted: n, per_ip, concurrency, hold, ..Held::default() };
    h.load_before = load1();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rss_before = rss_kib(pid);
    h.anon_before = rss_anon_kib(pid);
    h.heap_before = heap();
    let drops_before = UdpDrops::read();
    let brand_drops = socket_drops(port);
    let (first, second) = {
        let mut ids = ids;
        let second = ids.split_off(n / 2);
        (ids, second)
    };
    let cpu0 = cpu_time(pid);
    let t = Instant::now();
    let mut conns = connect_all(&kind, &eps, first, 0, per_ip, concurrency, limits, &mut h.failures).await;
    h.connecting += t.elapsed();
    h.brand_cpu += cpu_time(pid).saturating_sub(cpu0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rss_half = rss_kib(pid);
    h.heap_half = heap();
    let cpu0 = cpu_time(pid);
    let t = Instant::now();
    conns.extend(connect_all(&kind, &eps, second, n / 2, per_ip, concurrency, limits, &mut h.failures).await);
    h.connecting += t.elapsed();
    h.brand_cpu += cpu_time(pid).saturating_sub(cpu0);
    h.held = conns.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.rss_full = rss_kib(pid);
    h.anon_full = rss_anon_kib(pid);
    h.heap_full = heap();
    h.brand_threads = threads(pid);
    // Held past a keep-alive round (a third of the idle timeout).
    tokio::time::sleep(hold).await;
    h.rss_held = rss_kib(pid);
    h.heap_held = heap();
    h.alive_after_hold = conns.iter().filter(|c| c.is_open()).count();
    h.drops = UdpDrops::read().since(drops_before);
    h.brand_drops = socket_drops(port).saturating_sub(brand_drops);
    for c in &conns {
        c.close();
    }
    drop(conns);
    for ep in &eps {
        let _ = tokio::time::timeout(Duration::from_secs(5), ep.wait_idle()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.rss_closed = rss_kib(pid);
    h.heap_closed = heap();
    h.load_after = load1();
    h
}
