//! Phase 4: many agents on one machine's DHT, in this process: bootstrap
//! nodes, brands (server mode, each publishing its signed record and
//! providing its account and service keys) and users (client mode). Once
//! all have joined and the joins' routing-table walks have quieted down
//! (the process uses under half a core over 5 s, or `dht_settle` s have passed;
//! both the time and that CPU use are reported), each user looks up brands
//! by NEAR account — at random
//! moments spread over a window, each lookup once, no retry — and one
//! service. A lookup succeeds when it returns exactly the brand's record
//! (by account), or only agents that offer the service (by service).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::dht::{Dht, DhtConfig};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity, PublicKey};
use agentwire_protocol::record::{AgentRecord, Currency, Service};
use libp2p::Multiaddr;
use rand_core::{OsRng, RngCore};
use tokio::sync::Semaphore;

use super::machine::{cpu_time, load1};

const BOOTSTRAP: usize = 4;
const SERVICES: [&str; 3] = ["chat", "search", "translate"];
/// Nodes started at once.
const STARTING: usize = 16;
/// Longest a node may take to start (its bootstrap answered).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The network counts as settled when the nodes use less than this (or
/// `dht_settle` s after the last one started; 0: lookups 5 s after it).
const QUIET_CORES: f64 = 0.5;
/// A lookup not done by then (the query timeout is 10 s) counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

fn loopback() -> Vec<Multiaddr> {
    vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("multiaddr")]
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What phase 4 measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub agents: usize,
    pub brands: usize,
    pub users: usize,
    pub start_failures: usize,
    pub starting: Duration,
    pub by_account: Lookups,
    pub by_service: Lookups,
    pub window: Duration,
    pub load_before: f64,
    pub load_after: f64,
    pub rss_kib: u64,
    /// This process's CPU use while the lookups ran (1.0 = one core).
    pub lookup_cores: f64,
    /// Its CPU use over the last 5 s before the lookups (every node up).
    pub idle_cores: f64,
    /// How long the nodes took to quiet down after the start.
    pub settling: Duration,
}

/// Lookups of one kind: how many, how many succeeded, their times.
#[derive(Debug, Default)]
pub struct Lookups {
    pub done: usize,
    pub succeeded: usize,
    pub failures: BTreeMap<String, usize>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Lookups {
    fn from(results: Vec<Result<Duration, String>>) -> Lookups {
        let mut l = Lookups { done: results.len(), ..Lookups::default() };
        let mut times = Vec::new();
        for r in results {
            match r {
                Ok(t) => times.push(t),
                Err(e) => *l.failures.entry(e).or_default() += 1,
            }
        }
        l.succeeded = times.len();
        times.sort();
        let at = |p: f64| times.get(((times.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default();
        (l.p50, l.p99, l.max) = (at(0.5), at(0.99), at(1.0));
        l
    }

    pub fn success_rate(&self) -> f64 {
        self.succeeded as f64 / self.done.max(1) as f64
    }
}

/// A failure's kind: its message without the name looked up or the count
/// of peers asked, so failures group by cause.
fn kind_of(message: &str, name: &str) -> String {
    let text = message.replace(name, "…");
    let text = match text.find("(the lookup asked") {
        Some(i) => format!("{}(the lookup asked n peers)", &text[..i]),
        None => text,
    };
    text.chars().take(100).collect()
}

struct Brand {
    account: AccountId,
    identity: PublicKey,
    _dht: Dht,
}

async fn start_node(key: &Keypair, bootstrap: &[Multiaddr], server: bool) -> Result<Dht, String> {
    let mut config = DhtConfig { listen: loopback(), bootstrap: bootstrap.to_vec(), server, ..DhtConfig::default() };
    // Knobs to compare connection policies (default: the agent's).
    let secs = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    if let Some(d) = secs("AGENTWIRE_SCALE_DHT_IDLE_SECS") {
        config.idle_connection_timeout = d;
    }
    if let Some(d) = secs("AGENTWIRE_SCALE_DHT_KEEPALIVE_SECS") {
        config.keep_alive = d;
    }
    match tokio::time::timeout(START_TIMEOUT, Dht::start(key, config)).await {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("not started within {START_TIMEOUT:?}")),
    }
}

async fn start_brand(i: usize, boot: Vec<Multiaddr>) -> Result<Brand, String> {
    let identity = LocalIdentity::generate(&mut OsRng);
    let dht = start_node(&identity.identity, &boot, true).await?;
    let account = AccountId::new(&format!("brand{i}.near")).map_err(|e| e.to_string())?;
    let service = SERVICES[i % SERVICES.len()];
    let record = AgentRecord {
        identity: identity.identity.public(),
        near_account: account.clone(),
        noise_static: identity.noise.public(),
        // Lookups are measured, not sessions: the address is never dialled.
        quic_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
        p2p_addrs: vec![],
        services: vec![Service::per_query(service, "", 0, Currency::Near)],
        channel_contract: AccountId::new("channels.devnet").map_err(|e| e.to_string())?,
        min_deposit: 0,
        seq: 1,
        expires_at: now_secs() + 3600,
    }
    .sign(&identity.identity)
    .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..20 {
        match dht.publish(record.clone()).await {
            Ok(()) => return Ok(Brand { account, identity: identity.identity.public(), _dht: dht }),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("publish: {last}"))
}

/// Runs phase 4 with `agents` nodes; each user looks up `per_user` brands by account within `window`.
pub async fn run(agents: usize, per_user: usize, window: Duration, settle_max: Duration) -> Figures {
    let brands_n = (agents.saturating_sub(BOOTSTRAP)) / 3;
    let users_n = agents.saturating_sub(BOOTSTRAP + brands_n);
    let mut f =
        Figures { agents, brands: brands_n, users: users_n, window, load_before: load1(), ..Figures::default() };
    let t = Instant::now();
    let mut boots = Vec::new();
    let mut boot_addrs: Vec<Multiaddr> = Vec::new();
    for _ in 0..BOOTSTRAP {
        let dht = start_node(&Keypair::generate(&mut OsRng), &boot_addrs, true).await.expect("bootstrap node");
        boot_addrs.extend(dht.listen_addrs().await.expect("bootstrap address"));
        boots.push(dht);
    }
    let sem = Arc::new(Semaphore::new(STARTING));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..brands_n {
        let (boot, sem) = (boot_addrs.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            start_brand(i, boot).await
        });
    }
    let mut brands = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("brand task") {
            Ok(b) => brands.push(b),
            Err(e) => {
                f.start_failures += 1;
                eprintln!("dht: a brand did not start: {e}");
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..users_n {
        let (boot, sem) = (boot_addrs.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            start_node(&Keypair::generate(&mut OsRng), &boot, false).await
        });
    }
    let mut users = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.expect("user task") {
            Ok(u) => users.push(u),
            Err(e) => {
                f.start_failures += 1;
                eprintln!("dht: a user did not start: {e}");
            }
        }
    }
    f.starting = t.elapsed();
    eprintln!(
        "dht: {} nodes up in {:.1} s; waiting for them to settle, then the lookups",
        boots.len() + brands.len() + users.len(),
        f.starting.as_secs_f64()
    );
    // Let the last publications and routing-table walks finish: until the
    // nodes' CPU use over 5 s falls below QUIET_CORES, at most SETTLE_MAX.
    let settling = Instant::now();
    loop {
        let (cpu0, t0) = (cpu_time(std::process::id()), Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
        f.idle_cores =
            cpu_time(std::process::id()).saturating_sub(cpu0).as_secs_f64() / t0.elapsed().as_secs_f64().max(1e-9);
        eprintln!("dht: {:.0} s after the start: {:.2} cores", settling.elapsed().as_secs_f64(), f.idle_cores);
        if f.idle_cores < QUIET_CORES || settling.elapsed() >= settle_max {
            break;
        }
    }
    f.settling = settling.elapsed();

    let brands = Arc::new(brands);
    let (cpu0, t0) = (cpu_time(std::process::id()), Instant::now());
    let mut by_account = tokio::task::JoinSet::new();
    let mut by_service = tokio::task::JoinSet::new();
    let window_ms = window.as_millis().max(1) as u64;
    for user in &users {
        // Distinct brands for each user, so no answer comes from its cache.
        let mut picks: Vec<usize> = Vec::new();
        while picks.len() < per_user.min(brands.len()) {
            let b = (OsRng.next_u64() % brands.len() as u64) as usize;
            if !picks.contains(&b) {
                picks.push(b);
            }
        }
        for b in picks {
            let (user, brands) = (user.clone(), brands.clone());
            let delay = Duration::from_millis(OsRng.next_u64() % window_ms);
            by_account.spawn(async move {
                tokio::time::sleep(delay).await;
                let brand = &brands[b];
                let t = Instant::now();
                match tokio::time::timeout(LOOKUP_TIMEOUT, user.find_by_account(&brand.account)).await {
                    Ok(Ok(found)) if found.len() == 1 && found[0].record().identity == brand.identity => {
                        Ok(t.elapsed())
                    }
                    Ok(Ok(found)) => Err(format!("{} records, not the brand's one", found.len())),
                    Ok(Err(e)) => Err(kind_of(&e.to_string(), brand.account.as_str())),
                    Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
                }
            });
        }
        let user = user.clone();
        let service = SERVICES[(OsRng.next_u64() % SERVICES.len() as u64) as usize];
        let delay = Duration::from_millis(OsRng.next_u64() % window_ms);
        by_service.spawn(async move {
            tokio::time::sleep(delay).await;
            let t = Instant::now();
            match tokio::time::timeout(LOOKUP_TIMEOUT, user.find_by_service(service)).await {
                Ok(Ok(found)) if !found.is_empty() && found.iter().all(|r| r.record().service(service).is_some()) => {
                    Ok(t.elapsed())
                }
                Ok(Ok(found)) => Err(format!("{} records, none or not all offering it", found.len())),
                Ok(Err(e)) => Err(kind_of(&e.to_string(), service)),
                Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
            }
        });
    }
    let mut results = Vec::new();
    while let Some(r) = by_account.join_next().await {
        results.push(r.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    f.by_account = Lookups::from(results);
    let mut results = Vec::new();
    while let Some(r) = by_service.join_next().await {
        results.push(r.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    f.by_service = Lookups::from(results);
    f.lookup_cores =
        cpu_time(std::process::id()).saturating_sub(cpu0).as_secs_f64() / t0.elapsed().as_secs_f64().max(1e-9);
    f.rss_kib = super::machine::rss_kib(std::process::id());
    f.load_after = load1();
    drop(users);
    drop(brands);
    drop(boots);
    f
}
