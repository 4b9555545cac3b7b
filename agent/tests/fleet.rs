//! A brand's fleet (spec §13.9 "Fleet"): three `agentwire serve` processes
//! for one NEAR account, each with its own agent key in the registry and
//! its own record on the DHT, sharing their channels through a throwaway
//! PostgreSQL cluster; the devnet is the chain.
//!
//! - Concurrent paid queries spread over the three endpoints, and one
//!   voucher replayed at every endpoint at once: each payment buys one
//!   answer, never two; the claims are what was delivered, to the yocto.
//! - An endpoint SIGKILLed 10 times under load while the user fails over
//!   (`UserAgent::ask`): no answer without a durable voucher, claims equal
//!   the brand's charged total, to the yocto, and differ from what the user
//!   received only by answers charged whose bytes the kill cut off.
//! - The database stopped under load: paid queries are refused with a
//!   clear error while it is down, and served again without loss after.
//!
//! PostgreSQL must be installed (`bash scripts/test.sh` installs it): these
//! tests fail, saying what is missing, when it is not.

#![cfg(feature = "postgres")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_agent::devnet::{provision, Provisioned};
use agentwire_agent::dht::Dht;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::pg::testing::TempCluster;
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{Payer, PayerConfig};
use agentwire_agent::quic::{FirstAnswer, TransportLimits};
use agentwire_agent::user::{AskError, Lookup, UserAgent};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::record::SignedRecord;
use agentwire_protocol::voucher::Voucher;
use rand_core::{OsRng, RngCore};

const ENDPOINTS: usize = 3;
const KILLS: usize = 10;
const WORKERS: usize = 4;
const PRICE: u128 = ONE_NEAR / 1000;

/// The fleet tests share the machine's two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn jitter(min_ms: u64, max_ms: u64) -> Duration {
    Duration::from_millis(min_ms + OsRng.next_u64() % (max_ms - min_ms))
}

/// A child process that is killed if the test ends early.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct World {
    _devnet: Devnet,
    ready: Provisioned,
    _boot: Dht,
    boot_addr: String,
    pg: TempCluster,
    dir: PathBuf,
    ports: Vec<u16>,
}

async fn world(name: &str) -> World {
    let pg = tokio::task::block_in_place(TempCluster::start)
        .unwrap_or_else(|e| panic!("a throwaway PostgreSQL cluster is needed for the fleet tests: {e}"));
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["brand", "alice", "bob"], 100 * ONE_NEAR, 0).await.unwrap();
    let (boot, boot_addr) = Dht::loopback_bootstrap().await.unwrap();
    let dir = std::env::temp_dir().join(format!("agentwire-fleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for u in &ready.users {
        std::fs::write(dir.join(format!("{}.near-key", u.account_id)), u.secret_key.to_string()).unwrap();
    }
    let ports = (0..ENDPOINTS).map(|_| free_port()).collect();
    World { _devnet: devnet, ready, _boot: boot, boot_addr: boot_addr.to_string(), pg, dir, ports }
}

impl World {
    fn chain(&self) -> ChannelClient {
        ChannelClient::new(&self.ready.rpc_url, self.ready.channels.as_str()).unwrap()
    }

    fn near(&self, who: &str) -> NearAccount {
        NearAccount::new(who, &std::fs::read_to_string(self.dir.join(format!("{who}.near-key"))).unwrap()).unwrap()
    }

    /// Endpoint `i`'s configuration: its own key and port, the shared store.
    fn config(&self, i: usize) -> PathBuf {
        let path = self.dir.join(format!("brand{i}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"identity = "brand{i}.key"
near_account = "brand.devnet"
listen = "127.0.0.1:{port}"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["{boot}"]

[payments]
near_rpc = "{rpc}"
near_key_file = "brand.devnet.near-key"
store_url = "{url}"
fleet_lease_secs = 2
watch_every_secs = 1

[[service]]
name = "chat"
price = "{PRICE}"
handler = {{ kind = "echo" }}
"#,
                port = self.ports[i],
                boot = self.boot_addr,
                rpc = self.ready.rpc_url,
                url = self.pg.url(),
            ),
        )
        .unwrap();
        path
    }

    /// Starts endpoint `i` and waits until it serves.
    fn serve(&self, i: usize) -> Proc {
        let config = self.config(i);
        let log = self.dir.join(format!("brand{i}.log"));
        let err = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentwire"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("Ctrl-C stops it") => break,
                Some(_) => {}
                None => panic!("endpoint {i} exited before it served; see {}", log.display()),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Proc(child)
    }

    /// Every endpoint, started one after the other (each registers its key
    /// with the brand's one NEAR key: one transaction at a time).
    fn serve_all(&self) -> Vec<Proc> {
        (0..ENDPOINTS).map(|i| self.serve(i)).collect()
    }

    /// Endpoint `i`'s id in the shared store: the last one its log says it
    /// joined under (it joins under a new id at every start).
    fn endpoint_id(&self, i: usize) -> Option<i64> {
        let log = std::fs::read_to_string(self.dir.join(format!("brand{i}.log"))).ok()?;
        let line = log.lines().rfind(|l| l.contains("joined the fleet's payment database"))?;
        let rest = &line[line.find("endpoint=")? + "endpoint=".len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    }

    /// Which endpoint of the fleet holds an unexpired claimer lease now.
    async fn lease_holder(&self) -> Option<usize> {
        let (client, conn) = tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(conn);
        let row = client
            .query_opt("SELECT holder FROM agentwire_leases WHERE payee = 'brand.devnet' AND expires > now()", &[])
            .await
            .ok()??;
        let holder: i64 = row.get(0);
        (0..ENDPOINTS).find(|&i| self.endpoint_id(i) == Some(holder))
    }

    /// Waits (up to `within`) until a live endpoint other than `not` holds the lease.
    async fn lease_passes(&self, not: usize, within: Duration) -> Option<usize> {
        let t = Instant::now();
        while t.elapsed() < within {
            match self.lease_holder().await {
                Some(h) if h != not => return Some(h),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        None
    }

    /// The money state of a channel in the shared database:
    /// (accepted, spent, forgiven, claimed, pending).
    async fn stored(&self, channel_id: u64) -> (u128, u128, u128, u128, u128) {
        let (client, conn) = tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT accepted::text, spent::text, forgiven::text, claimed::text,
                    (SELECT COALESCE(sum(price), 0) FROM agentwire_admissions a
                     WHERE a.channel_id = ch.channel_id AND a.epoch = ch.epoch AND a.state < 2)::text
                 FROM agentwire_channels ch WHERE channel_id = $1::text::numeric",
                &[&channel_id.to_string()],
            )
            .await
            .unwrap();
        let n = |i: usize| row.get::<_, String>(i).parse::<u128>().unwrap();
        (n(0), n(1), n(2), n(3), n(4))
    }
}

fn terminate(p: &mut Proc) {
    let _ = Command::new("kill").arg("-TERM").arg(p.0.id().to_string()).status();
    p.0.wait().unwrap();
}

fn kill(p: &mut Proc) {
    p.0.kill().unwrap();
    p.0.wait().unwrap();
}

/// A user agent that checks the registry, and a payer.
async fn user_agent(w: &World, who: &str, key: Keypair) -> (Arc<UserAgent>, Arc<Payer>, Vec<SignedRecord>) {
    let user = UserAgent::start(
        Arc::new(LocalIdentity::generate(&mut OsRng)),
        vec![w.boot_addr.parse().unwrap()],
        Some(w.chain()),
        // A killed endpoint says nothing: give up on an answer after 2 s.
        TransportLimits { answer_timeout: Duration::from_secs(2), ..TransportLimits::default() },
    )
    .await
    .unwrap();
    let store = Store::open(&w.dir.join(format!("{who}-payer")), StoreConfig::default()).unwrap();
    let payer = Payer::near(w.chain(), w.near(who), key, store, PayerConfig::default()).unwrap();
    let lookup = Lookup::Account(AccountId::new("brand.devnet").unwrap());
    let mut records = Vec::new();
    for _ in 0..100 {
        if let Ok(found) = user.find(&lookup).await {
            records = found;
            if records.len() == ENDPOINTS {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(records.len(), ENDPOINTS, "every endpoint found on the DHT and listed in the registry");
    (Arc::new(user), Arc::new(payer), records)
}

/// Answers the user received: (when, price paid, receipt total).
type Received = Arc<Mutex<Vec<(Instant, u128, u128)>>>;
/// What a load run gives back: answers, failures, their texts, the workers.
type Load = (Received, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>, Vec<tokio::task::JoinHandle<()>>);

/// Load through `UserAgent::ask` (fail-over) until `stop`; counts failures
/// and keeps the error texts.
fn load(user: &Arc<UserAgent>, payer: &Arc<Payer>, records: &[SignedRecord], stop: &Arc<AtomicBool>) -> Load {
    let received: Received = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers = (0..WORKERS)
        .map(|i| {
            let (user, payer, records, received, failed, errors, stop) = (
                user.clone(),
                payer.clone(),
                records.to_vec(),
                received.clone(),
                failed.clone(),
                errors.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let q = format!("worker {i} query {n}").into_bytes();
                    match user.ask(&records, "chat", q.clone(), Some(&payer), |_| async {}).await {
                        Ok((_, out)) => {
                            assert_eq!(out.body, q);
                            let (_, total) = out.charged_total().expect("a paid answer has a checked receipt");
                            received.lock().unwrap().push((Instant::now(), out.paid, total));
                        }
                        Err(e) => {
                            if matches!(e, AskError::Query(_)) {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                            errors.lock().unwrap().push(e.to_string());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect();
    (received, failed, errors, workers)
}

async fn wait_for_answers(received: &Received, more: usize, within: Duration) -> bool {
    let before = received.lock().unwrap().len();
    let t = Instant::now();
    while t.elapsed() < within {
        if received.lock().unwrap().len() >= before + more {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Whether the deployed contract claims the `amount` a payee asks for
/// (`claim(voucher, amount)`, spec/contract.md §4.9) or, as before that
/// argument existed, the whole voucher: bob opens a channel, and the brand
/// claims half of a voucher for all of it.
async fn contract_claims_amount(w: &World) -> bool {
    let key = Keypair::generate(&mut OsRng);
    let signs = Keypair::from_seed(&key.seed());
    let store = Store::open(&w.dir.join("probe-payer"), StoreConfig::default()).unwrap();
    let bob = Payer::near(w.chain(), w.near("bob.devnet"), key, store, PayerConfig::default()).unwrap();
    let s = bob.open("brand.devnet", &Currency::Near, 2 * PRICE).await.unwrap();
    let contract = AccountId::new(w.ready.channels.as_str()).unwrap();
    let v = Voucher { contract, channel_id: s.channel_id, epoch: s.epoch, cumulative: 2 * PRICE };
    w.chain().claim(&w.near("brand.devnet"), &SignedVoucher::sign(v, &signs), PRICE).await.unwrap();
    let claimed = w.chain().get_channel(s.channel_id).await.unwrap().unwrap().claimed;
    if claimed != PRICE {
        eprintln!(
            "NOTE: the contract paid {claimed} for a claim of {PRICE} on a voucher of {}: it does not take \
             claim's `amount` yet, so the fleet's claims are checked against the durable voucher, not the \
             charged total",
            2 * PRICE
        );
    }
    claimed == PRICE
}

/// The checks after a run with failures: every answer is covered by the
/// durable voucher, the claim is the charged total, and it exceeds what the
/// user received only by charged answers whose bytes were cut off.
async fn check_money(w: &World, payer: &Payer, received: &[(Instant, u128, u128)], failed: usize, what: &str) {
    let status = payer.status().await.unwrap();
    assert_eq!(status.len(), 1, "one channel for the whole run: {status:?}");
    let id = status[0].channel_id;
    let view = w.chain().get_channel(id).await.unwrap().unwrap();
    let (accepted, spent, forgiven, claimed_db, pending) = w.stored(id).await;
    let delivered: u128 = received.iter().map(|r| r.1).sum();
    let highest_receipt = received.iter().map(|r| r.2).max().unwrap_or(0);
    let charged = spent - pending;
    let cut = charged.saturating_sub(delivered) / PRICE;
    eprintln!(
        "{what}: answers {}, failed queries {failed}, delivered {delivered}, claimed {}, charged {charged}, \
         forgiven {forgiven}, accepted {accepted}, signed {}; charged answers cut off before they arrived: {cut}",
        received.len(),
        view.claimed,
        status[0].signed
    );
    assert!(highest_receipt <= accepted, "no answer without a durable voucher");
    assert_eq!(view.claimed, claimed_db, "the chain paid what the store recorded: one claim per total");
    if contract_claims_amount(w).await {
        assert_eq!(view.claimed, charged, "claims equal the charged total, to the yocto");
    } else {
        // A claim takes the whole voucher, forgiven credit included.
        assert_eq!(view.claimed, accepted, "the claim is the durable voucher, to the yocto");
    }
    assert!(charged >= delivered, "every answer delivered is charged");
    assert_eq!((charged - delivered) % PRICE, 0, "only whole answers differ");
    assert!(cut as usize <= failed, "at most the queries that failed were charged without arriving");
    assert!(view.claimed <= status[0].signed, "never more than the user signed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_share_one_channel_and_a_payment_buys_one_answer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = world("share").await;
    let mut fleet = w.serve_all();
    let (user, alice, records) = user_agent(&w, "alice.devnet", Keypair::generate(&mut OsRng)).await;
    // Concurrent paid queries, each worker on its own endpoint in turn.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (user, alice, record) = (user.clone(), alice.clone(), records[i % ENDPOINTS].clone());
        tasks.spawn(async move {
            let conn = user.session(&record).await.unwrap();
            let mut paid = 0;
            for n in 0..15 {
                let q = format!("worker {i} query {n}").into_bytes();
                let out = agentwire_agent::pay::query(&conn, &record, "chat", q.clone(), Some(&alice), |_| async {})
                    .await
                    .unwrap();
                assert_eq!(out.body, q);
                paid += out.paid;
            }
            paid
        });
    }
    let mut delivered = 0;
    while let Some(paid) = tasks.join_next().await {
        delivered += paid.unwrap();
    }
    assert_eq!(delivered, 90 * PRICE, "each answer paid its price once");

    // Bob opens a channel and replays one voucher at every endpoint at once.
    let bob_key = Keypair::generate(&mut OsRng);
    let bob_signs = Keypair::from_seed(&bob_key.seed());
    let (_, bob, _) = user_agent(&w, "bob.devnet", bob_key).await;
    let s = bob.open("brand.devnet", &Currency::Near, 100 * PRICE).await.unwrap();
    let sign = |total: u128| {
        let contract = AccountId::new(w.ready.channels.as_str()).unwrap();
        let v = Voucher { contract, channel_id: s.channel_id, epoch: s.epoch, cumulative: total };
        SignedVoucher::sign(v, &bob_signs)
    };
    let mut conns = Vec::new();
    for r in &records {
        conns.push(Arc::new(user.session(r).await.unwrap()));
    }
    let replay = |v: SignedVoucher| {
        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..5 {
            for c in &conns {
                let (c, v) = (c.clone(), v.clone());
                tasks.spawn(async move { c.call("chat", format!("replay {round}").into_bytes(), Some(v)).await });
            }
        }
        async move {
            let (mut answered, mut asked) = (0, 0);
            while let Some(r) = tasks.join_next().await {
                match r.unwrap() {
                    Ok(FirstAnswer::Response(_)) => answered += 1,
                    Ok(FirstAnswer::PaymentRequired(_)) => asked += 1,
                    other => panic!("unexpected answer: {other:?}"),
                }
            }
            (answered, asked)
        }
    };
    assert_eq!(replay(sign(PRICE)).await, (1, 14), "one payment, fifteen tries at three endpoints: one answer");
    assert_eq!(replay(sign(3 * PRICE)).await, (2, 13), "two more payments: two more answers");
    assert_eq!(replay(sign(3 * PRICE)).await, (0, 15), "the same voucher again buys nothing");

    for p in &mut fleet {
        terminate(p);
    }
    let alice_channel = alice.status().await.unwrap()[0].channel_id;
    let claimed = w.chain().get_channel(alice_channel).await.unwrap().unwrap().claimed;
    assert_eq!(claimed, delivered, "alice's channel: the claim is what was delivered, to the yocto");
    let claimed = w.chain().get_channel(s.channel_id).await.unwrap().unwrap().claimed;
    assert_eq!(claimed, 3 * PRICE, "bob's channel: three answers, three prices");
    let _ = std::fs::remove_dir_all(&w.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_10_times_under_load_loses_no_money() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = world("kill").await;
    let mut fleet = w.serve_all();
    let (user, payer, records) = user_agent(&w, "alice.devnet", Keypair::generate(&mut OsRng)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (received, failed, _errors, workers) = load(&user, &payer, &records, &stop);
    assert!(wait_for_answers(&received, 20, Duration::from_secs(20)).await, "served before the kills");
    // Every other kill is the claimer's: its lease must pass to another
    // endpoint within the lease (2 s) and a claimer tick; 8 s is generous.
    let mut passed = 0;
    for k in 0..KILLS {
        tokio::time::sleep(jitter(700, 1500)).await;
        let holder = w.lease_holder().await;
        let i = match holder {
            Some(h) if k % 2 == 0 => h,
            Some(h) => (h + 1 + k / 2 % (ENDPOINTS - 1)) % ENDPOINTS,
            None => k % ENDPOINTS,
        };
        kill(&mut fleet[i]);
        if holder == Some(i) {
            let to = w.lease_passes(i, Duration::from_secs(8)).await;
            assert!(to.is_some(), "kill {k}: the dead claimer's (endpoint {i}) lease passed to a live endpoint");
            passed += 1;
        } else {
            // Meanwhile the user's queries go to the other endpoints.
            tokio::time::sleep(jitter(200, 600)).await;
        }
        fleet[i] = tokio::task::block_in_place(|| w.serve(i));
    }
    assert!(passed >= KILLS / 2, "the claimer was killed {passed} times, its lease passed every time");
    assert!(wait_for_answers(&received, 20, Duration::from_secs(30)).await, "served after the last restart");
    stop.store(true, Ordering::Relaxed);
    for wk in workers {
        wk.await.unwrap();
    }
    for p in &mut fleet {
        terminate(p);
    }
    let received = received.lock().unwrap().clone();
    check_money(&w, &payer, &received, failed.load(Ordering::Relaxed), "endpoint kills").await;
    let _ = std::fs::remove_dir_all(&w.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_refuses_then_recovers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let w = world("db").await;
    let mut fleet = w.serve_all();
    let (user, payer, records) = user_agent(&w, "alice.devnet", Keypair::generate(&mut OsRng)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (received, failed, errors, workers) = load(&user, &payer, &records, &stop);
    assert!(wait_for_answers(&received, 30, Duration::from_secs(20)).await, "served before the database stops");
    tokio::task::block_in_place(|| w.pg.stop("fast")).unwrap();
    let down_at = Instant::now();
    errors.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let up_at = Instant::now();
    tokio::task::block_in_place(|| w.pg.start_again()).unwrap();
    assert!(wait_for_answers(&received, 30, Duration::from_secs(30)).await, "served again once the database is back");
    stop.store(true, Ordering::Relaxed);
    for wk in workers {
        wk.await.unwrap();
    }
    for p in &mut fleet {
        terminate(p);
    }
    let received = received.lock().unwrap().clone();
    // Answers whose settlement committed just before the stop may arrive just after it.
    let served_while_down =
        received.iter().filter(|r| r.0 > down_at + Duration::from_millis(500) && r.0 < up_at).count();
    assert_eq!(served_while_down, 0, "no paid answer while the payments cannot be recorded");
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.iter().any(|e| e.contains("payment database is unreachable")),
        "the user is told why: {:?}",
        errors.iter().take(5).collect::<Vec<_>>()
    );
    check_money(&w, &payer, &received, failed.load(Ordering::Relaxed), "database restart").await;
    let _ = std::fs::remove_dir_all(&w.dir);
}
