//! Load generator for paid queries (spec §13.5), not a timed test: it
//! prints figures for BENCHMARKS.md. Over one connection, in one run and on
//! one runtime configuration:
//!
//! - **paid**: AgentWire sessions with a voucher per request. The payer
//!   persists each new total (fsync, group commit) before sending; the payee
//!   verifies strictly, persists (fsync, group commit) before answering, and
//!   signs a receipt; the payer checks the receipt. The chain is the devnet,
//!   touched only to open the channel.
//! - **unpaid**: the same sessions and service, free.
//! - **ceiling**: plain quinn (TLS 1.3, no Noise), one stream per request; the
//!   client signs a voucher, the server verifies it strictly: the crypto a
//!   paid request cannot avoid, with no persistence and no receipt.
//!
//!   cargo bench -p agentwire-agent --bench paid [-- REQUESTS]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::devnet::provision;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, Payee, PayeeConfig, Payer, PayerConfig, Price};
use agentwire_agent::quic::{connect, tls, Connection, Meter, Server, Target, TransportLimits};
use agentwire_agent::services::{Builtin, Router};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::record::{AgentRecord, Currency, Service, SignedRecord};
use agentwire_protocol::voucher::Voucher;
use rand_core::OsRng;

const BODY: usize = 200;
const IN_FLIGHT: usize = 64;
const PRICE: u128 = ONE_NEAR / 1_000_000;

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

async fn measure<F, Fut>(call: F, sequential: usize, parallel: usize) -> Figures
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + Send,
{
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

struct Paid {
    conn: Connection,
    record: SignedRecord,
    payer: Payer,
    service: &'static str,
}

/// Paid and unpaid figures over one AgentWire session to a metered brand.
async fn agentwire(requests: usize, dir: &std::path::Path) -> (Figures, Figures) {
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice"], 1_000 * ONE_NEAR, 0).await.unwrap();
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
    ).unwrap();
    let limits = TransportLimits { max_requests_per_sec: u32::MAX / 2, ..TransportLimits::default() };
    let router = Router::new().route("chat", Arc::new(Builtin::Echo)).route("free", Arc::new(Builtin::Echo));
    let meter: Arc<dyn Meter> = Arc::new(payee);
    let server = Server::bind_metered(
        "127.0.0.1:0".parse().unwrap(),
        brand.clone(),
        vec!["pay/1".into(), "stream/1".into()],
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
    let user = Arc::new(LocalIdentity::generate(&mut OsRng));
    let conn = connect(&ep, user, &target, &["pay/1".into(), "stream/1".into()], limits).await.unwrap();
    let payer = Payer::near(
        chain,
        NearAccount::new("alice.devnet", &secret("alice.devnet")).unwrap(),
        Keypair::generate(&mut OsRng),
        Store::open(&dir.join("payer"), StoreConfig::default()).unwrap(),
        PayerConfig::default(),
    ).unwrap();
    payer.open("brand.devnet", &Currency::Near, 500 * ONE_NEAR).await.unwrap();
    let run = |service: &'static str, p: Arc<Paid>| {
        let _ = service;
        move |body: Vec<u8>| {
            let p = p.clone();
            async move {
                let payer = (p.service == "chat").then_some(&p.payer);
                query(&p.conn, &p.record, p.service, body, payer, |_| async {}).await.expect("query").body
            }
        }
    };
    let paid = Arc::new(Paid { conn, record: record.clone(), payer, service: "chat" });
    // Sequential paid requests wait for two fsyncs each: a tenth as many.
    let paid_figures = measure(run("chat", paid.clone()), requests / 10, requests).await;
    let paid = Arc::try_unwrap(paid).ok().expect("sole owner");
    let free = Arc::new(Paid { service: "free", ..paid });
    let free_figures = measure(run("free", free.clone()), requests, requests).await;
    drop(free);
    server.shutdown().await;
    drop(devnet);
    (paid_figures, free_figures)
}

/// The ceiling: plain quinn, a voucher signed per request and verified strictly.
async fn ceiling(requests: usize) -> Figures {
    let limits = TransportLimits::default();
    let server = quinn::Endpoint::server(tls::server_config(&limits).unwrap(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    let payer = Arc::new(Keypair::generate(&mut OsRng));
    let payer_key = payer.public();
    let contract = AccountId::new("channels.devnet").unwrap();
    let c2 = contract.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let contract = c2.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let contract = contract.clone();
                    tokio::spawn(async move {
                        let msg = recv.read_to_end(4096).await.unwrap();
                        let (body, rest) = msg.split_at(BODY);
                        let cumulative = u128::from_le_bytes(rest[..16].try_into().unwrap());
                        let signature: [u8; 64] = rest[16..80].try_into().unwrap();
                        let v = Voucher { contract, channel_id: 1, epoch: 1, cumulative };
                        SignedVoucher { voucher: v, signature }.verify(&payer_key).expect("strict verify");
                        send.write_all(body).await.unwrap();
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep.connect_with(tls::client_config(&limits).unwrap(), addr, "agentwire").unwrap().await.unwrap();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let call = move |body: Vec<u8>| {
        let (conn, payer, contract, counter) = (conn.clone(), payer.clone(), contract.clone(), counter.clone());
        async move {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
            let v = Voucher { contract, channel_id: 1, epoch: 1, cumulative: n };
            let signed = SignedVoucher::sign(v, &payer);
            let mut msg = body;
            msg.extend_from_slice(&n.to_le_bytes());
            msg.extend_from_slice(&signed.signature);
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&msg).await.unwrap();
            send.finish().unwrap();
            recv.read_to_end(4096).await.unwrap()
        }
    };
    measure(call, requests, requests).await
}

fn us(d: Duration) -> String {
    format!("{} µs", d.as_micros())
}

fn main() {
    let requests: usize = std::env::args().filter_map(|a| a.parse().ok()).next().unwrap_or(20_000);
    println!("Paid queries vs unpaid vs the crypto-only ceiling, {requests} requests of {BODY} B ({IN_FLIGHT} in flight; paid sequential: {})\n", requests / 10);
    println!("| runtime | stack | sequential req/s | p50 | p99 | {IN_FLIGHT} in flight req/s |");
    println!("|---|---|---|---|---|---|");
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
        let (paid, free, top) = rt
            .block_on(rt.spawn(async move {
                let (paid, free) = agentwire(requests, &d2).await;
                (paid, free, ceiling(requests).await)
            }))
            .expect("benchmark task");
        for (stack, f) in [
            ("AgentWire paid (durable vouchers)", &paid),
            ("AgentWire unpaid", &free),
            ("ceiling: quinn + sign + verify", &top),
        ] {
            println!("| {name} | {stack} | {:.0} | {} | {} | {:.0} |", f.seq_rps, us(f.p50), us(f.p99), f.par_rps);
        }
        println!(
            "| {name} | **paid / ceiling** | {:.2}× | {:.2}× | {:.2}× | **{:.2}×** |",
            paid.seq_rps / top.seq_rps,
            paid.p50.as_secs_f64() / top.p50.as_secs_f64(),
            paid.p99.as_secs_f64() / top.p99.as_secs_f64(),
            paid.par_rps / top.par_rps
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
