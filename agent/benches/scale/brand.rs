//! The brand under load runs in a process of its own, so its resident memory
//! and CPU time are its own: this bench re-executed in the `brand` role runs
//! what `agentwire serve` runs (`brand::start` from a TOML configuration:
//! session server, payee with its durable voucher store and chain watcher,
//! DHT node, record refresher), with only the connection limits raised. It
//! answers `stats` on stdin with its server counters and `heap` with its
//! live heap, and exits when stdin closes (so it never outlives the load
//! generator).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::keyfile;
use agentwire_agent::quic::{Target, TransportLimits};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::record::{AgentRecord, Currency, Service, SignedRecord};

use super::machine::Process;

/// The paid service's price: a millionth of a NEAR.
pub const PRICE: u128 = ONE_NEAR / 1_000_000;
/// The brand's NEAR account.
pub const BRAND: &str = "brand.devnet";
/// Capabilities both sides announce (a brand with payments announces these).
pub const CAPS: [&str; 3] = ["pay/1", "stream/1", "receipts/1"];

const CONFIG_ENV: &str = "AGENTWIRE_SCALE_BRAND_CONFIG";
const MAX_CONNECTIONS_ENV: &str = "AGENTWIRE_SCALE_MAX_CONNECTIONS";
const PER_IP_ENV: &str = "AGENTWIRE_SCALE_PER_IP";
/// A brand left running by a load generator that hangs exits after this long.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The devnet (in the load generator's process) with the brand's and the payers' accounts.
pub struct Chain {
    pub _devnet: Devnet,
    pub ready: Provisioned,
}

/// Payer account `i`'s name on the devnet.
pub fn payer_name(i: usize) -> String {
    format!("u{i}")
}

/// Starts the devnet and funds the brand and `payers` payer accounts.
pub async fn chain(payers: usize) -> Chain {
    let devnet = Devnet::start(DevnetConfig::default()).expect("devnet");
    let mut names: Vec<String> = vec!["brand".into()];
    names.extend((0..payers).map(payer_name));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let ready = provision(&devnet, &names, 10 * ONE_NEAR, 0).await.expect("provisioned accounts");
    Chain { _devnet: devnet, ready }
}

impl Chain {
    /// The secret key of devnet account `account` (full name).
    pub fn secret(&self, account: &str) -> String {
        self.ready
            .users
            .iter()
            .find(|u| u.account_id.as_str() == account)
            .map(|u| u.secret_key.to_string())
            .expect("a provisioned account")
    }
}

/// The brand process and what a user needs to reach it.
pub struct BrandProcess {
    pub process: Process,
    pub addr: SocketAddr,
    pub record: SignedRecord,
    pub target: Target,
    pub limits: TransportLimits,
}

/// The limits the brand runs with: the defaults, with room for `sessions`
/// connections, `per_ip` from one address.
pub fn limits(sessions: usize, per_ip: usize) -> TransportLimits {
    TransportLimits { max_connections: sessions + 1024, max_connections_per_ip: per_ip, ..TransportLimits::default() }
}

/// Writes the brand's configuration into `dir` and starts it.
pub fn start(chain: &Chain, dir: &Path, sessions: usize, per_ip: usize) -> BrandProcess {
    std::fs::create_dir_all(dir).expect("brand directory");
    let identity = keyfile::load_or_create(&dir.join("brand.key")).expect("brand key");
    std::fs::write(dir.join("brand.near-key"), chain.secret(BRAND)).expect("brand NEAR key");
    let config = dir.join("brand.toml");
    std::fs::write(
        &config,
        format!(
            r#"identity = "brand.key"
near_account = "{BRAND}"
channel_contract = "{contract}"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]

[payments]
near_rpc = "{rpc}"
near_key_file = "brand.near-key"
store = "vouchers"
{watch}
[[service]]
name = "chat"
price = "{PRICE}"
handler = {{ kind = "echo" }}

[[service]]
name = "free"
handler = {{ kind = "echo" }}
"#,
            contract = chain.ready.channels,
            rpc = chain.ready.rpc_url,
            // How often the brand reads its channels on chain (its default, 30 s, unless set).
            watch = std::env::var("AGENTWIRE_SCALE_WATCH_EVERY")
                .map(|s| format!("watch_every_secs = {}\n", s.parse::<u64>().expect("watch every (s)")))
                .unwrap_or_default(),
        ),
    )
    .expect("brand config");
    let process = Process::spawn(
        "brand",
        &[
            (CONFIG_ENV, config.display().to_string()),
            (MAX_CONNECTIONS_ENV, (sessions + 1024).to_string()),
            (PER_IP_ENV, per_ip.to_string()),
        ],
        &dir.join("brand.log"),
    );
    let addr: SocketAddr = process
        .expect("READY", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("brand: {e}; see {}", dir.join("brand.log").display()))
        .parse()
        .expect("brand address");
    let contract = AccountId::new(chain.ready.channels.as_str()).expect("contract account");
    let record = record(&identity, addr, &contract);
    let target =
        Target { addr, identity: Some(identity.identity.public()), noise_static: Some(identity.noise.public()) };
    BrandProcess { process, addr, record, target, limits: limits(sessions, per_ip) }
}

fn record(identity: &LocalIdentity, addr: SocketAddr, contract: &AccountId) -> SignedRecord {
    let service = |name: &str, price| Service::per_query(name, "", price, Currency::Near);
    AgentRecord {
        identity: identity.identity.public(),
        near_account: AccountId::new(BRAND).expect("account id"),
        noise_static: identity.noise.public(),
        quic_addrs: vec![addr],
        p2p_addrs: vec![],
        services: vec![service("chat", PRICE), service("free", 0)],
        channel_contract: contract.clone(),
        min_deposit: 0,
        seq: 1,
        expires_at: u64::MAX / 2,
    }
    .sign(&identity.identity)
    .expect("record")
}

/// The brand's server counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub connections: u64,
    pub refused: u64,
    pub handshakes: u64,
    pub handshake_failures: u64,
    pub requests: u64,
    pub errors: u64,
    pub payment_refusals: u64,
    pub disconnected: u64,
}

impl BrandProcess {
    /// Its server counters now.
    pub fn counters(&mut self) -> Counters {
        self.process.send("stats");
        let line = self.process.expect("STATS", Duration::from_secs(10)).unwrap_or_default();
        let mut c = Counters::default();
        for field in line.split_whitespace() {
            let Some((k, v)) = field.split_once('=') else { continue };
            let v = v.parse().unwrap_or(0);
            match k {
                "connections" => c.connections = v,
                "refused" => c.refused = v,
                "handshakes" => c.handshakes = v,
                "handshake_failures" => c.handshake_failures = v,
                "requests" => c.requests = v,
                "errors" => c.errors = v,
                "payment_refusals" => c.payment_refusals = v,
                "disconnected" => c.disconnected = v,
                _ => {}
            }
        }
        c
    }
}

/// The `brand` role: runs the brand until stdin closes.
pub fn run_child() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let config_path = PathBuf::from(var(CONFIG_ENV));
    let sessions: usize = var(MAX_CONNECTIONS_ENV).parse().expect("max connections");
    let per_ip: usize = var(PER_IP_ENV).parse().expect("per ip");
    let mut limits =
        TransportLimits { max_connections: sessions, max_connections_per_ip: per_ip, ..TransportLimits::default() };
    stream_limits(&mut limits);
    // The runtime `agentwire serve` uses: multi-thread, a worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let config = BrandConfig::load(&config_path).expect("brand configuration");
        let running = brand::start(config, limits).await.expect("brand started");
        let stats = running.server.stats_handle();
        println!("READY {}", running.server.local_addr().expect("bound"));
        let (tx, mut commands) = tokio::sync::mpsc::channel::<String>(8);
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = tokio::time::sleep(MAX_LIFETIME);
        tokio::pin!(deadline);
        let _running: Arc<_> = Arc::new(running);
        loop {
            tokio::select! {
                command = commands.recv() => match command.as_deref() {
                    Some("stats") => {
                        use std::sync::atomic::Ordering::Relaxed;
                        println!(
                            "STATS connections={} refused={} handshakes={} handshake_failures={} requests={} errors={} payment_refusals={} disconnected={}",
                            stats.connections.load(Relaxed),
                            stats.refused.load(Relaxed),
                            stats.handshakes.load(Relaxed),
                            stats.handshake_failures.load(Relaxed),
                            stats.requests.load(Relaxed),
                            stats.errors.load(Relaxed),
                            stats.payment_refusals.load(Relaxed),
                            stats.disconnected.load(Relaxed),
                        );
                    }
                    Some("heap") => super::heap::report(),
                    Some(_) => {}
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        // No graceful shutdown: the bench's money is not worth claims, and
        // closing 10,000 sessions is not what is measured.
        std::process::exit(0);
    });
}

/// Starts the baseline for phase 1: a plain quinn server in a process of its own.
pub fn start_quinn(dir: &Path) -> (Process, SocketAddr) {
    std::fs::create_dir_all(dir).expect("baseline directory");
    let process = Process::spawn("quinn", &[], &dir.join("quinn.log"));
    let addr = process
        .expect("READY", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("quinn baseline: {e}"))
        .parse()
        .expect("baseline address");
    (process, addr)
}

/// The `quinn` role: a plain quinn server with the brand's TLS and
/// transport settings (no Noise, no AgentWire) that echoes each stream and
/// holds its connections, answering `heap` like the brand, until stdin closes.
pub fn run_quinn_child() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let mut limits = TransportLimits::default();
        stream_limits(&mut limits);
        let config = agentwire_agent::quic::tls::server_config(&limits).expect("TLS config");
        let server = quinn::Endpoint::server(config, "127.0.0.1:0".parse().expect("address")).expect("endpoint");
        println!("READY {}", server.local_addr().expect("bound"));
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let Ok(msg) = recv.read_to_end(4096).await else { return };
                        let _ = send.write_all(&msg).await;
                        let _ = send.finish();
                    }
                });
            }
        });
        let _ = tokio::task::spawn_blocking(|| {
            for line in std::io::stdin().lines() {
                match line.as_deref() {
                    Ok("heap") => super::heap::report(),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        })
        .await;
        std::process::exit(0);
    });
}

/// The stream limits of the environment (main.rs): the ceiling and the
/// allowance a connection starts with.
fn stream_limits(limits: &mut TransportLimits) {
    if let Ok(n) = std::env::var("AGENTWIRE_SCALE_MAX_STREAMS") {
        limits.max_streams_per_connection = n.parse().expect("max streams");
    }
    if let Ok(n) = std::env::var("AGENTWIRE_SCALE_INITIAL_STREAMS") {
        limits.initial_streams_per_connection = n.parse().expect("initial streams");
    }
}
