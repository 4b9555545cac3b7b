//! Load generator for a brand's money store (spec §13.9 "Fleet"), not a
//! timed test: it prints figures for BENCHMARKS.md. In one run, on one
//! devnet and one throwaway PostgreSQL cluster (fsync and synchronous commit
//! on), the configurations take turns in interleaved rounds:
//!
//! - **embedded, 1 endpoint**: the default store (append-only log, fsync,
//!   group commit) — the baseline;
//! - **PostgreSQL, 1 / 2 / 3 endpoints**: `PgMoney`, every admission one
//!   committed statement (batched under load), the endpoints sharing one
//!   channel; the payer's queries go round-robin over them.
//!
//! Each configuration has its own payer and channel (default policy: paying
//! 8 queries ahead) and in-process endpoints on loopback; receipts come in
//! batches and are all checked before a round ends.
//!
//!   cargo bench -p agentwire-agent --bench fleet [-- REQUESTS]
//!
//! The last line is machine-readable:
//! `RATIO pg1_over_embedded_64=<a> pg2_over_pg1_64=<b> pg3_over_pg1_64=<c> pg1_over_embedded_p50=<d>`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::devnet::provision;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::pg::testing::TempCluster;
use agentwire_agent::pay::pg::{PgConfig, PgMoney};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{
    query_deferred, LedgerMoney, Payee, PayeeConfig, PayeeMoney, Payer, PayerConfig, Price, ReceiptDue,
};
use agentwire_agent::quic::{connect, Connection, Meter, Server, Target, TransportLimits};
use agentwire_agent::services::{Builtin, Router};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::record::{AgentRecord, Currency, Service, SignedRecord};
use futures::stream::{FuturesUnordered, StreamExt};
use rand_core::OsRng;
use tokio::sync::mpsc;

const BODY: usize = 200;
const IN_FLIGHT: usize = 64;
const PRICE: u128 = ONE_NEAR / 1_000_000;
const ROUNDS: usize = 3;
const CAPS: [&str; 3] = ["pay/1", "stream/1", "receipts/1"];

#[derive(Default, Clone, Copy)]
struct Figures {
    p50: Duration,
    p99: Duration,
    par_rps: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One configuration: endpoints sharing a store, one payer spreading its
/// queries over them.
struct Fleet {
    _servers: Vec<Server>,
    conns: Vec<(Connection, SignedRecord)>,
    next: AtomicUsize,
    payer: Arc<Payer>,
    dues: mpsc::UnboundedSender<ReceiptDue>,
    sent: AtomicU64,
    settled: Arc<AtomicU64>,
}

impl Fleet {
    async fn call(&self, body: Vec<u8>) -> Vec<u8> {
        let (conn, record) = &self.conns[self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len()];
        let (out, due) =
            query_deferred(conn, record, "chat", body, Some(&*self.payer), |_| async {}).await.expect("query");
        if let Some(due) = due {
            self.sent.fetch_add(1, Ordering::Relaxed);
            let _ = self.dues.send(due);
        }
        out.body
    }

    /// Waits until every receipt sent for was checked.
    async fn all_settled(&self) {
        let want = self.sent.load(Ordering::Relaxed);
        for _ in 0..10_000 {
            if self.settled.load(Ordering::Relaxed) >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("receipts missing: {} of {want}", self.settled.load(Ordering::Relaxed));
    }
}

async fn measure(fleet: &Arc<Fleet>, sequential: usize, parallel: usize) -> Figures {
    let body = vec![7u8; BODY];
    for _ in 0..50 {
        fleet.call(body.clone()).await;
    }
    let mut lat = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let t = Instant::now();
        assert_eq!(fleet.call(body.clone()).await.len(), BODY);
        lat.push(t.elapsed());
    }
    lat.sort();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (fleet, body) = (fleet.clone(), body.clone());
        tasks.spawn(async move {
            for _ in 0..parallel / IN_FLIGHT {
                assert_eq!(fleet.call(body.clone()).await.len(), BODY);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let par_rps = (parallel / IN_FLIGHT * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64();
    Figures { p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99), par_rps }
}

/// Checks receipts as they come (each settle waits for its batch).
fn settle_receipts(payer: Arc<Payer>, settled: Arc<AtomicU64>) -> mpsc::UnboundedSender<ReceiptDue> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ReceiptDue>();
    tokio::spawn(async move {
        let mut running = FuturesUnordered::new();
        loop {
            tokio::select! {
                due = rx.recv() => match due {
                    Some(due) => {
                        let payer = payer.clone();
                        running.push(async move { due.settle(&payer).await });
                    }
                    None => break,
                },
                Some(r) = running.next(), if !running.is_empty() => {
                    r.expect("every receipt checks out");
                    settled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        while let Some(r) = running.next().await {
            r.expect("every receipt checks out");
            settled.fetch_add(1, Ordering::Relaxed);
        }
    });
    tx
}

struct Env {
    rpc: String,
    channels: String,
    keys: HashMap<String, String>,
    dir: std::path::PathBuf,
}

impl Env {
    fn chain(&self) -> ChannelClient {
        ChannelClient::new(&self.rpc, &self.channels).unwrap()
    }
    fn near(&self, who: &str) -> NearAccount {
        NearAccount::new(who, &self.keys[who]).unwrap()
    }
}

/// One endpoint of `brand.devnet` over `money`, and its record.
fn endpoint(env: &Env, money: Arc<dyn PayeeMoney>) -> (Server, SignedRecord, Target) {
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let prices: HashMap<String, Price> = [("chat".to_string(), Price::per_query(PRICE, Currency::Near, None))].into();
    let payee = Payee::near_with(env.chain(), env.near("brand.devnet"), prices, money, PayeeConfig::default()).unwrap();
    let limits = TransportLimits {
        max_requests_per_sec: u32::MAX / 2,
        max_request_burst: u32::MAX / 2,
        ..TransportLimits::default()
    };
    let router = Router::new().route("chat", Arc::new(Builtin::Echo));
    let meter: Arc<dyn Meter> = Arc::new(payee);
    let caps: Vec<String> = CAPS.iter().map(|c| c.to_string()).collect();
    let server = Server::bind_metered(
        "127.0.0.1:0".parse().unwrap(),
        brand.clone(),
        caps,
        Arc::new(router),
        Some(meter),
        limits,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let record = AgentRecord {
        identity: brand.identity.public(),
        near_account: AccountId::new("brand.devnet").unwrap(),
        noise_static: brand.noise.public(),
        quic_addrs: vec![addr],
        p2p_addrs: vec![],
        services: vec![Service::per_query("chat", "", PRICE, Currency::Near)],
        channel_contract: AccountId::new(&env.channels).unwrap(),
        min_deposit: 0,
        seq: 1,
        expires_at: u64::MAX / 2,
    }
    .sign(&brand.identity)
    .unwrap();
    let target = Target { addr, identity: Some(brand.identity.public()), noise_static: Some(brand.noise.public()) };
    (server, record, target)
}

/// A configuration: `moneys` are its endpoints' stores; `who` pays.
async fn fleet(env: &Env, moneys: Vec<Arc<dyn PayeeMoney>>, who: &str) -> Arc<Fleet> {
    let limits = TransportLimits::default();
    let caps: Vec<String> = CAPS.iter().map(|c| c.to_string()).collect();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let (mut servers, mut conns) = (Vec::new(), Vec::new());
    for money in moneys {
        let (server, record, target) = endpoint(env, money);
        let conn = connect(&ep, Arc::new(LocalIdentity::generate(&mut OsRng)), &target, &caps, limits).await.unwrap();
        servers.push(server);
        conns.push((conn, record));
    }
    let store = Store::open(&env.dir.join(format!("payer-{who}")), StoreConfig::default()).unwrap();
    let payer = Arc::new(
        Payer::near(env.chain(), env.near(who), Keypair::generate(&mut OsRng), store, PayerConfig::default()).unwrap(),
    );
    payer.open("brand.devnet", &Currency::Near, 500 * ONE_NEAR).await.unwrap();
    let settled = Arc::new(AtomicU64::new(0));
    let dues = settle_receipts(payer.clone(), settled.clone());
    Arc::new(Fleet {
        _servers: servers,
        conns,
        next: AtomicUsize::new(0),
        payer,
        dues,
        sent: AtomicU64::new(0),
        settled,
    })
}

async fn pg(cluster: &TempCluster, env: &Env, n: usize) -> Vec<Arc<dyn PayeeMoney>> {
    let mut out: Vec<Arc<dyn PayeeMoney>> = Vec::new();
    for i in 0..n {
        let config = PgConfig::new(&cluster.url(), "brand.devnet", &env.channels, &format!("bench-{n}-{i}"));
        out.push(Arc::new(PgMoney::connect(config).await.unwrap()));
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary(rounds: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect());
    Figures {
        p50: Duration::from_secs_f64(pick(|f| f.p50.as_secs_f64())),
        p99: Duration::from_secs_f64(pick(|f| f.p99.as_secs_f64())),
        par_rps: pick(|f| f.par_rps),
    }
}

fn main() {
    let requests: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(8_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("agentwire-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = TempCluster::start().unwrap_or_else(|e| panic!("the benchmark needs PostgreSQL: {e}"));
    println!(
        "Money stores, paid echo of {BODY} B: {requests} requests ({IN_FLIGHT} in flight; sequential: {}), \
         median of {ROUNDS} interleaved rounds, multi-thread runtime (2 workers), PostgreSQL {} on loopback\n",
        requests / 8,
        cluster.dir().display()
    );
    let d2 = dir.clone();
    let results = rt
        .block_on(rt.spawn(async move {
            let devnet = Devnet::start(DevnetConfig::default()).unwrap();
            let names = ["brand", "alice", "bob", "carol", "dave"];
            let ready = provision(&devnet, &names, 1_000 * ONE_NEAR, 0).await.unwrap();
            let keys = ready.users.iter().map(|u| (u.account_id.to_string(), u.secret_key.to_string())).collect();
            let env = Env { rpc: ready.rpc_url.clone(), channels: ready.channels.to_string(), keys, dir: d2 };
            let embedded: Arc<dyn PayeeMoney> = Arc::new(LedgerMoney::new(
                Store::open(&env.dir.join("payee"), StoreConfig::default()).unwrap(),
                100_000,
            ));
            let configs = vec![
                ("embedded store, 1 endpoint", fleet(&env, vec![embedded], "alice.devnet").await),
                ("PostgreSQL, 1 endpoint", fleet(&env, pg(&cluster, &env, 1).await, "bob.devnet").await),
                ("PostgreSQL, 2 endpoints", fleet(&env, pg(&cluster, &env, 2).await, "carol.devnet").await),
                ("PostgreSQL, 3 endpoints", fleet(&env, pg(&cluster, &env, 3).await, "dave.devnet").await),
            ];
            let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); configs.len()];
            for round in 0..ROUNDS {
                let order: Vec<usize> =
                    if round % 2 == 0 { (0..configs.len()).collect() } else { (0..configs.len()).rev().collect() };
                for i in order {
                    rounds[i].push(measure(&configs[i].1, requests / 8, requests).await);
                    configs[i].1.all_settled().await;
                }
            }
            let out: Vec<(String, Figures)> =
                configs.iter().map(|c| c.0.to_owned()).zip(rounds.iter().map(|r| summary(r))).collect();
            drop(configs);
            drop(devnet);
            (out, cluster)
        }))
        .expect("benchmark task");
    let (stacks, cluster) = results;
    println!("| store | p50 | p99 | {IN_FLIGHT} in flight req/s | req/s vs embedded |");
    println!("|---|---|---|---|---|");
    let base = stacks[0].1;
    for (name, f) in &stacks {
        println!(
            "| {name} | {} µs | {} µs | {:.0} | {:.2}× |",
            f.p50.as_micros(),
            f.p99.as_micros(),
            f.par_rps,
            f.par_rps / base.par_rps
        );
    }
    let (pg1, pg2, pg3) = (stacks[1].1, stacks[2].1, stacks[3].1);
    println!(
        "\nRATIO pg1_over_embedded_64={:.3} pg2_over_pg1_64={:.3} pg3_over_pg1_64={:.3} pg1_over_embedded_p50={:.3}",
        pg1.par_rps / base.par_rps,
        pg2.par_rps / pg1.par_rps,
        pg3.par_rps / pg1.par_rps,
        pg1.p50.as_secs_f64() / base.p50.as_secs_f64()
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
