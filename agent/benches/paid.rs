//! Load generator for paid queries (spec §8.4 credit, §8.7 receipts in
//! batches, §13.5), not a timed test: it prints figures for BENCHMARKS.md.
//! Over one connection, in one run, on each runtime configuration, the
//! stacks take turns in interleaved rounds (this machine's speed drifts):
//!
//! - **plain quinn**: TLS 1.3, one stream per request, an echo: no Noise, no
//!   payment — the transport ceiling.
//! - **unpaid**: AgentWire sessions (Noise inside QUIC), a free echo.
//! - **paid**: the same session and echo, priced: the payer pays ahead
//!   (default policy: 8 queries per voucher; `k = 1`: a voucher per query),
//!   the payee admits against durable vouchers (fsync'd, group commit) and
//!   signs receipts in batches; the payer checks every batch. Answers are
//!   measured as they arrive; their receipts are checked alongside, and all
//!   of them before a round ends.
//!
//!   cargo bench -p agentwire-agent --bench paid [-- REQUESTS]
//!
//! The last line is machine-readable (multi-thread runtime, default policy):
//! `RATIO paid_over_unpaid_64=<x> paid_over_unpaid_p50=<y> unpaid_over_quinn_64=<z>`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::devnet::provision;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query_deferred, Payee, PayeeConfig, Payer, PayerConfig, Price, ReceiptDue};
use agentwire_agent::quic::{connect, tls, Connection, Meter, Server, Target, TransportLimits};
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

/// The allocator the `agentwire` binary ships with, for every stack alike
/// (the figures before 2026-12-04 22:45 UTC were measured with glibc's).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PRICE: u128 = ONE_NEAR / 1_000_000;
const ROUNDS: usize = 3;
const CAPS: [&str; 3] = ["pay/1", "stream/1", "receipts/1"];

#[derive(Default, Clone, Copy)]
struct Figures {
    seq_rps: f64,
    p50: Duration,
    p99: Duration,
    par_rps: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

type Call = Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

async fn measure(call: &Call, sequential: usize, parallel: usize) -> Figures {
    let body = vec![7u8; BODY];
    for _ in 0..100 {
        call(body.clone()).await;
    }
    let mut lat = Vec::with_capacity(sequential);
    let start = Instant::now();
    for _ in 0..sequential {
        let t = Instant::now();
        assert_eq!(call(body.clone()).await.len(), BODY);
        lat.push(t.elapsed());
    }
    let seq_rps = sequential as f64 / start.elapsed().as_secs_f64();
    lat.sort();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (call, body) = (call.clone(), body.clone());
        tasks.spawn(async move {
            for _ in 0..parallel / IN_FLIGHT {
                assert_eq!(call(body.clone()).await.len(), BODY);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let par_rps = (parallel / IN_FLIGHT * IN_FLIGHT) as f64 / start.elapsed().as_secs_f64();
    Figures { seq_rps, p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99), par_rps }
}

/// One payer paying over one session; its receipts are settled on a task of their own.
struct Paid {
    conn: Connection,
    record: SignedRecord,
    payer: Arc<Payer>,
    service: &'static str,
    dues: mpsc::UnboundedSender<ReceiptDue>,
    sent: AtomicU64,
    settled: Arc<AtomicU64>,
}

impl Paid {
    fn call(self: &Arc<Self>) -> Call {
        let p = self.clone();
        Arc::new(move |body| {
            let p = p.clone();
            Box::pin(async move {
                let payer = (p.service == "chat").then_some(&*p.payer);
                let (out, due) =
                    query_deferred(&p.conn, &p.record, p.service, body, payer, |_| async {}).await.expect("query");
                if let Some(due) = due {
                    p.sent.fetch_add(1, Ordering::Relaxed);
                    let _ = p.dues.send(due);
                }
                out.body
            })
        })
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

struct World {
    _devnet: Devnet,
    _server: Server,
    default: Arc<Paid>,
    exact: Arc<Paid>,
    free: Arc<Paid>,
    quinn: Call,
}

/// A metered brand on the devnet, and payers with each policy.
async fn world(dir: &std::path::Path) -> World {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice", "bob"], 1_000 * ONE_NEAR, 0).await.unwrap();
    let secret = |who: &str| ready.users.iter().find(|u| u.account_id.as_str() == who).unwrap().secret_key.to_string();
    let chain = ChannelClient::new(&ready.rpc_url, ready.channels.as_str()).unwrap();
    let brand = Arc::new(LocalIdentity::generate(&mut OsRng));
    let prices: HashMap<String, Price> = [
        ("chat".to_string(), Price::per_query(PRICE, Currency::Near, None)),
        ("free".to_string(), Price::per_query(0, Currency::Near, None)),
    ]
    .into();
    let payee = Payee::near(
        chain.clone(),
        NearAccount::new("brand.devnet", &secret("brand.devnet")).unwrap(),
        prices,
        Store::open(&dir.join("payee"), StoreConfig::default()).unwrap(),
        PayeeConfig::default(),
    )
    .unwrap();
    let limits = TransportLimits {
        max_requests_per_sec: u32::MAX / 2,
        max_request_burst: u32::MAX / 2,
        ..TransportLimits::default()
    };
    let router = Router::new().route("chat", Arc::new(Builtin::Echo)).route("free", Arc::new(Builtin::Echo));
    let meter: Arc<dyn Meter> = Arc::new(payee);
    let caps: Vec<String> = CAPS.iter().map(|c| c.to_string()).collect();
    let server = Server::bind_metered(
        "127.0.0.1:0".parse().unwrap(),
        brand.clone(),
        caps.clone(),
        Arc::new(router),
        Some(meter),
        limits,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let service = |name: &str, price| Service::per_query(name, "", price, Currency::Near);
    let record = AgentRecord {
        identity: brand.identity.public(),
        near_account: AccountId::new("brand.devnet").unwrap(),
        noise_static: brand.noise.public(),
        quic_addrs: vec![addr],
        p2p_addrs: vec![],
        services: vec![service("chat", PRICE), service("free", 0)],
        channel_contract: AccountId::new("channels.devnet").unwrap(),
        min_deposit: 0,
        seq: 1,
        expires_at: u64::MAX / 2,
    }
    .sign(&brand.identity)
    .unwrap();
    let target = Target { addr, identity: Some(brand.identity.public()), noise_static: Some(brand.noise.public()) };
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut paid = Vec::new();
    for (who, ahead, service) in [("alice", None, "chat"), ("bob", Some(0), "chat"), ("alice", None, "free")] {
        let conn = connect(&ep, Arc::new(LocalIdentity::generate(&mut OsRng)), &target, &caps, limits).await.unwrap();
        let mut config = PayerConfig::default();
        if let Some(k) = ahead {
            config.pay_ahead_queries = k;
            config.pay_ahead_max_queries = k;
        } else if let Some(most) = std::env::var("AGENTWIRE_PAID_AHEAD_MAX").ok().and_then(|v| v.parse().ok()) {
            // Whether paying further ahead (more credit durable at once) moves paid throughput.
            config.pay_ahead_max_queries = most;
        }
        let store = Store::open(&dir.join(format!("payer-{who}-{service}")), StoreConfig::default()).unwrap();
        let account = format!("{who}.devnet");
        let near = NearAccount::new(&account, &secret(&account)).unwrap();
        let payer = Arc::new(Payer::near(chain.clone(), near, Keypair::generate(&mut OsRng), store, config).unwrap());
        if service == "chat" {
            payer.open("brand.devnet", &Currency::Near, 500 * ONE_NEAR).await.unwrap();
        }
        let settled = Arc::new(AtomicU64::new(0));
        let dues = settle_receipts(payer.clone(), settled.clone());
        paid.push(Arc::new(Paid {
            conn,
            record: record.clone(),
            payer,
            service,
            dues,
            sent: AtomicU64::new(0),
            settled,
        }));
    }
    let free = paid.pop().unwrap();
    let exact = paid.pop().unwrap();
    let default = paid.pop().unwrap();
    World { _devnet: devnet, _server: server, default, exact, free, quinn: plain_quinn().await }
}

/// Plain quinn: an echo over TLS 1.3, one bidirectional stream per request.
async fn plain_quinn() -> Call {
    let limits = TransportLimits::default();
    let server = quinn::Endpoint::server(tls::server_config(&limits).unwrap(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(msg) = recv.read_to_end(4096).await else { return };
                        let _ = send.write_all(&msg).await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep.connect_with(tls::client_config(&limits).unwrap(), addr, "agentwire").unwrap().await.unwrap();
    Arc::new(move |body| {
        let conn = conn.clone();
        Box::pin(async move {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&body).await.unwrap();
            send.finish().unwrap();
            recv.read_to_end(4096).await.unwrap()
        })
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

/// Medians over rounds of each stack's figures.
#[derive(Default)]
struct Rounds(Vec<Figures>);

impl Rounds {
    fn summary(&self) -> Figures {
        let pick = |f: fn(&Figures) -> f64| median(self.0.iter().map(f).collect());
        Figures {
            seq_rps: pick(|f| f.seq_rps),
            p50: Duration::from_secs_f64(pick(|f| f.p50.as_secs_f64())),
            p99: Duration::from_secs_f64(pick(|f| f.p99.as_secs_f64())),
            par_rps: pick(|f| f.par_rps),
        }
    }
}

/// `AGENTWIRE_PAID_PROFILE=unpaid|default|k1`: runs only that stack's 64-in-flight phase (with
/// `AGENTWIRE_PAID_AHEAD_MAX=n`, the default policy pays ahead up to n queries instead of 64), `REQUESTS` at a time
/// until 20 s have passed, printing each pass's rate, for `perf record` to see that phase alone.
fn profiled_stack() -> Option<usize> {
    match std::env::var("AGENTWIRE_PAID_PROFILE").ok()?.as_str() {
        "unpaid" => Some(1),
        "default" => Some(2),
        "k1" => Some(3),
        other => panic!("AGENTWIRE_PAID_PROFILE={other}: expected unpaid, default or k1"),
    }
}

async fn profile(w: &World, stack: usize, requests: usize) {
    let call = match stack {
        1 => w.free.call(),
        2 => w.default.call(),
        _ => w.exact.call(),
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let f = measure(&call, 1, requests).await;
        println!("PROFILE stack {stack}: {:.0} req/s at {IN_FLIGHT} in flight", f.par_rps);
    }
}

fn main() {
    let requests: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(20_000);
    println!(
        "Paid vs unpaid vs plain quinn, {requests} requests of {BODY} B ({IN_FLIGHT} in flight; sequential: {}), median of {ROUNDS} interleaved rounds\n",
        requests / 4
    );
    println!("| runtime | stack | sequential req/s | p50 | p99 | {IN_FLIGHT} in flight req/s |");
    println!("|---|---|---|---|---|---|");
    let mut ratio_line = String::new();
    for (name, rt) in [
        (
            "multi-thread (2 workers)",
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
        ),
        ("current-thread", tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()),
    ] {
        let dir = std::env::temp_dir().join(format!("agentwire-bench-paid-{}-{}", std::process::id(), name.len()));
        let _ = std::fs::remove_dir_all(&dir);
        let d2 = dir.clone();
        // The load runs on a runtime worker, as an application's tasks do.
        let stacks = rt
            .block_on(rt.spawn(async move {
                let w = world(&d2).await;
                if let Some(stack) = profiled_stack() {
                    profile(&w, stack, requests).await;
                    std::process::exit(0);
                }
                let calls: [(&str, Call); 4] = [
                    ("plain quinn (TLS 1.3 echo)", w.quinn.clone()),
                    ("AgentWire unpaid", w.free.call()),
                    ("AgentWire paid, default policy (8 ahead)", w.default.call()),
                    ("AgentWire paid, k = 1", w.exact.call()),
                ];
                let mut rounds: Vec<Rounds> = (0..calls.len()).map(|_| Rounds::default()).collect();
                for round in 0..ROUNDS {
                    // Alternate the order so drift does not fall on one stack.
                    let order: Vec<usize> =
                        if round % 2 == 0 { (0..calls.len()).collect() } else { (0..calls.len()).rev().collect() };
                    for i in order {
                        rounds[i].0.push(measure(&calls[i].1, requests / 4, requests).await);
                        for p in [&w.default, &w.exact] {
                            p.all_settled().await;
                        }
                    }
                }
                calls.iter().map(|c| c.0.to_owned()).zip(rounds.iter().map(Rounds::summary)).collect::<Vec<_>>()
            }))
            .expect("benchmark task");
        for (stack, f) in &stacks {
            println!("| {name} | {stack} | {:.0} | {} | {} | {:.0} |", f.seq_rps, us(f.p50), us(f.p99), f.par_rps);
        }
        let (quinn, unpaid, paid, exact) = (stacks[0].1, stacks[1].1, stacks[2].1, stacks[3].1);
        for (label, p) in [("paid (default) / unpaid", paid), ("paid (k = 1) / unpaid", exact)] {
            println!(
                "| {name} | **{label}** | {:.2}× | {:.2}× | {:.2}× | **{:.2}×** |",
                p.seq_rps / unpaid.seq_rps,
                p.p50.as_secs_f64() / unpaid.p50.as_secs_f64(),
                p.p99.as_secs_f64() / unpaid.p99.as_secs_f64(),
                p.par_rps / unpaid.par_rps
            );
        }
        println!(
            "| {name} | **unpaid / plain quinn** | {:.2}× | {:.2}× | {:.2}× | **{:.2}×** |",
            unpaid.seq_rps / quinn.seq_rps,
            unpaid.p50.as_secs_f64() / quinn.p50.as_secs_f64(),
            unpaid.p99.as_secs_f64() / quinn.p99.as_secs_f64(),
            unpaid.par_rps / quinn.par_rps
        );
        if ratio_line.is_empty() {
            ratio_line = format!(
                "RATIO paid_over_unpaid_64={:.3} paid_over_unpaid_p50={:.3} unpaid_over_quinn_64={:.3}",
                paid.par_rps / unpaid.par_rps,
                paid.p50.as_secs_f64() / unpaid.p50.as_secs_f64(),
                unpaid.par_rps / quinn.par_rps
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!("\n{ratio_line}");
}
