//! Crash safety of money (spec §8.3 "persist before serve", §8.4): while a
//! user runs paid load, the brand process (`agentwire serve`) is killed with
//! SIGKILL and restarted 20 times; then the same for the user process
//! (`agentwire gateway`). Afterwards every answer the user received is
//! covered by a voucher the brand persisted, the brand's claims never exceed
//! what the user signed, and the user resyncs and goes on paying.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::dht::Dht;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, Payer, PayerConfig};
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{Lookup, UserAgent};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use rand_core::{OsRng, RngCore};

const KILLS: usize = 20;
const WORKERS: usize = 4;
const PRICE: u128 = ONE_NEAR / 1000;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct World {
    _devnet: Devnet,
    ready: Provisioned,
    _boot: Dht,
    boot_addr: String,
    dir: PathBuf,
}

async fn world(name: &str) -> World {
    // The in-process brand's warnings (a claim that failed, and why), shown
    // with a failing test's output only.
    let _ = tracing_subscriber::fmt().with_env_filter("agentwire_agent=warn").with_test_writer().try_init();
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice"], 100 * ONE_NEAR, 0).await.unwrap();
    let (boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let boot_addr = boot_addr.to_string();
    let dir = std::env::temp_dir().join(format!("agentwire-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for u in &ready.users {
        let file = dir.join(format!("{}.near-key", u.account_id));
        std::fs::write(file, u.secret_key.to_string()).unwrap();
    }
    World { _devnet: devnet, ready, _boot: boot, boot_addr, dir }
}

impl World {
    fn chain(&self) -> ChannelClient {
        ChannelClient::new(&self.ready.rpc_url, self.ready.channels.as_str()).unwrap()
    }

    fn brand_config(&self, port: u16) -> PathBuf {
        let path = self.dir.join("brand.toml");
        std::fs::write(
            &path,
            format!(
                r#"identity = "brand.key"
near_account = "brand.devnet"
listen = "127.0.0.1:{port}"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{boot}"]

[payments]
near_rpc = "{rpc}"
near_key_file = "brand.devnet.near-key"
store = "brand-vouchers"
watch_every_secs = 1

[[service]]
name = "chat"
price = "{PRICE}"
handler = {{ kind = "echo" }}
"#,
                boot = self.boot_addr,
                rpc = self.ready.rpc_url
            ),
        )
        .unwrap();
        path
    }
}

/// A child process that is killed if the test ends early (a failed assertion).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `agentwire <args>` and waits until it prints `ready` on stdout.
fn spawn(args: &[&str], log: &Path, ready: &str) -> Proc {
    let err = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_agentwire")).args(args).stdout(Stdio::piped()).stderr(err).spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(ready) => break,
            Some(_) => {}
            None => panic!("agentwire {args:?} exited before it was ready; see {}", log.display()),
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

fn kill(p: &mut Proc) {
    // SIGKILL: no shutdown code runs.
    p.0.kill().unwrap();
    p.0.wait().unwrap();
}

fn terminate(p: &mut Proc) {
    let _ = Command::new("kill").arg("-TERM").arg(p.0.id().to_string()).status();
    p.0.wait().unwrap();
}

fn jitter(min_ms: u64, max_ms: u64) -> Duration {
    Duration::from_millis(min_ms + OsRng.next_u64() % (max_ms - min_ms))
}

/// What the user received: (price paid, the receipt's channel and cumulative) per answer.
type Received = Arc<Mutex<Vec<(u128, u64, u128)>>>;

/// After the last restart: waits until the user is served again (10 more
/// answers), stops the workers and returns every answer received.
async fn served_again_then_stop(
    received: &Received,
    stop: &AtomicBool,
    workers: Vec<tokio::task::JoinHandle<()>>,
) -> Vec<(u128, u64, u128)> {
    let before = received.lock().unwrap().len();
    // Sessions to the killed process end by idle timeout, answer timeout or
    // stateless reset; give the user up to 30 s to be served again.
    for _ in 0..300 {
        if received.lock().unwrap().len() > before + 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for wk in workers {
        wk.await.unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(received.len() > before + 10, "served after the last restart: {} then {}", before, received.len());
    received
}

/// The highest receipt total per channel.
fn highest_receipts(received: &[(u128, u64, u128)]) -> std::collections::BTreeMap<u64, u128> {
    let mut m = std::collections::BTreeMap::new();
    for (_, id, c) in received {
        let e = m.entry(*id).or_insert(0);
        *e = (*e).max(*c);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_brand_20_times_loses_no_money() {
    let w = world("brand").await;
    let port = free_port();
    let config = w.brand_config(port);
    let log = w.dir.join("brand.log");
    let serve = |c: &Path| spawn(&["serve", "--config", c.to_str().unwrap()], &log, "Ctrl-C stops it");
    let mut brand = serve(&config);

    let user = Arc::new(
        UserAgent::start(
            Arc::new(LocalIdentity::generate(&mut OsRng)),
            vec![w.boot_addr.parse().unwrap()],
            None,
            // A killed brand sends nothing: give up on an answer after 3 s.
            TransportLimits { answer_timeout: Duration::from_secs(3), ..TransportLimits::default() },
        )
        .await
        .unwrap(),
    );
    let store = Store::open(&w.dir.join("alice-payer"), StoreConfig::default()).unwrap();
    let alice =
        NearAccount::new("alice.devnet", &std::fs::read_to_string(w.dir.join("alice.devnet.near-key")).unwrap())
            .unwrap();
    let payer =
        Arc::new(Payer::near(w.chain(), alice, Keypair::generate(&mut OsRng), store, PayerConfig::default()).unwrap());
    let lookup = Lookup::Account(AccountId::new("brand.devnet").unwrap());
    let mut record = None;
    for _ in 0..50 {
        if let Ok(r) = user.find(&lookup).await {
            record = r.into_iter().next();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let record = record.expect("brand found");

    let received: Received = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let (user, payer, record, received, stop) =
            (user.clone(), payer.clone(), record.clone(), received.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let Ok(conn) = user.session(&record).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let q = format!("worker {i} query {n}").into_bytes();
                match query(&conn, &record, "chat", q.clone(), Some(&payer), |_| async {}).await {
                    Ok(out) => {
                        assert_eq!(out.body, q);
                        let (channel, total) = out.charged_total().expect("a checked receipt");
                        received.lock().unwrap().push((out.paid, channel.channel_id, total));
                    }
                    // The brand died under us: drop the session; the next one reconnects.
                    _ => conn.close(),
                }
            }
        }));
    }
    for _ in 0..KILLS {
        tokio::time::sleep(jitter(300, 1200)).await;
        kill(&mut brand);
        tokio::time::sleep(jitter(50, 300)).await;
        brand = serve(&config);
    }
    // After the last restart the user keeps being served.
    let received = served_again_then_stop(&received, &stop, workers).await;

    // A graceful stop claims everything the brand persisted.
    terminate(&mut brand);
    let status = payer.status().await.unwrap();
    let view = w.chain().get_channel(status[0].channel_id).await.unwrap().unwrap();
    let delivered: u128 = received.iter().map(|r| r.0).sum();
    let highest_receipt = highest_receipts(&received)[&status[0].channel_id];
    assert_eq!(status.len(), 1, "{status:?}");
    let signed = status[0].signed;
    eprintln!(
        "brand kills: {KILLS}, answers {}, delivered {delivered}, claimed {}, signed {signed}",
        received.len(),
        view.claimed
    );
    assert!(view.claimed >= highest_receipt, "every answer received is covered by a persisted voucher");
    assert!(view.claimed >= delivered, "the brand holds vouchers for every answer delivered");
    assert!(view.claimed <= signed, "the brand never claims more than the user signed");
    // What the user paid for and did not receive: answers cut off by a kill after the
    // brand persisted their voucher; at most the requests in flight at each kill.
    let lost = view.claimed - delivered;
    assert!(lost <= (KILLS * WORKERS) as u128 * PRICE, "lost {lost}");
    let _ = std::fs::remove_dir_all(&w.dir);
}

async fn http(method: &str, addr: SocketAddr, path: &str, body: &str) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().ok()?;
    let url = format!("http://{addr}{path}");
    let r = match method {
        "GET" => client.get(url).send().await.ok()?,
        _ => client.post(url).body(body.to_owned()).send().await.ok()?,
    };
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_user_20_times_loses_no_money() {
    let w = world("user").await;
    let config = w.brand_config(0);
    let running = brand::start(BrandConfig::load(&config).unwrap(), TransportLimits::default()).await.unwrap();
    let payee = running.payee.clone().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let store = w.dir.join("gateway-payer");
    let key = w.dir.join("alice.devnet.near-key");
    let log = w.dir.join("gateway.log");
    let listen = addr.to_string();
    let user_key = w.dir.join("user.key");
    let args = [
        "gateway",
        "--listen",
        &listen,
        "--bootstrap",
        &w.boot_addr,
        "--key",
        user_key.to_str().unwrap(),
        "--near-rpc",
        &w.ready.rpc_url,
        "--skip-registry-check",
        "--near-account",
        "alice.devnet",
        "--near-key-file",
        key.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    let mut gateway = spawn(&args, &log, "gateway on");

    let received: Received = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let (received, stop) = (received.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let q = format!("worker {i} query {n}");
                match http("POST", addr, "/v1/query/brand.devnet/chat", &q).await {
                    Some(v) => {
                        assert_eq!(v["answer"], q.as_str());
                        let paid: u128 = v["paid"].as_str().unwrap().parse().unwrap();
                        let c: u128 = v["receipt"]["cumulative"].as_str().unwrap().parse().unwrap();
                        let id = v["receipt"]["channel_id"].as_u64().unwrap();
                        received.lock().unwrap().push((paid, id, c));
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    for _ in 0..KILLS {
        tokio::time::sleep(jitter(400, 1500)).await;
        kill(&mut gateway);
        gateway = spawn(&args, &log, "gateway on");
    }
    let received = served_again_then_stop(&received, &stop, workers).await;
    terminate(&mut gateway);

    // The payer's reservations per channel (at least what it signed), from its store (the gateway is gone).
    let payer_store = Store::open(&store, StoreConfig::default()).unwrap();
    let signed: std::collections::BTreeMap<u64, u128> = payer_store
        .entries()
        .into_iter()
        .filter_map(|e| {
            let k = String::from_utf8(e.key).ok()?;
            let instance = k.strip_prefix("payer/channels.devnet/")?.split('/').next()?;
            let id = instance.split('@').next()?.parse().ok()?;
            Some((id, e.value))
        })
        .collect();
    assert_eq!(signed.len(), 1, "one channel for the whole run, across 20 crashes: {signed:?}");
    let delivered: u128 = received.iter().map(|r| r.0).sum();
    let durable: std::collections::BTreeMap<u64, u128> = payee.channels().await.iter().map(|c| (c.0, c.1)).collect();
    for (id, highest) in highest_receipts(&received) {
        assert!(durable[&id] >= highest, "every answer received is covered by a persisted voucher (channel {id})");
    }
    // What the brand charged (answers it sent, some cut off by a kill); the rest of the durable voucher is credit.
    let charged: std::collections::BTreeMap<u64, u128> =
        payee.money().channels().await.unwrap().iter().map(|c| (c.channel.channel_id, c.charged)).collect();
    let report = running.shutdown().await;
    if !report.unclaimed.is_empty() {
        // A claim that failed at shutdown is kept and made at the next start; do what that start does.
        eprintln!("shutdown left claims undone: {report:?}; claiming as the next start would");
        payee.claim_due(true).await;
    }
    let mut claimed_total = 0;
    for (id, signed) in &signed {
        let claimed = w.chain().get_channel(*id).await.unwrap().unwrap().claimed;
        assert_eq!(
            claimed,
            charged[id].min(durable[id]),
            "the brand claimed what it charged, covered by its voucher: {report:?}"
        );
        assert!(claimed >= highest_receipts(&received)[id], "every receipt the user holds is claimed");
        assert!(claimed <= *signed, "the brand never claims more than the user signed");
        claimed_total += claimed;
    }
    let signed: u128 = signed.values().sum();
    eprintln!(
        "user kills: {KILLS}, answers {}, delivered {delivered}, claimed {claimed_total}, signed {signed}",
        received.len()
    );
    assert!(claimed_total >= delivered);
    // What the user paid on chain for answers it did not receive.
    let lost = claimed_total - delivered;
    assert!(lost <= (KILLS * WORKERS) as u128 * PRICE, "lost {lost}");
    let _ = std::fs::remove_dir_all(&w.dir);
}
