//! Phases 2 and 3: paid queries at a fixed offered rate, spread over many
//! sessions, each session its own payer with its own channel on the devnet
//! (durable payer store, default policy: 8 queries paid ahead, receipts in
//! batches checked alongside). Open loop: request `i` is due at
//! `t0 + i / rate` on session `i mod sessions`, whether or not earlier ones
//! were answered. Latency is measured from when the request was sent (and,
//! to show the generator kept its schedule, from when it was due). The
//! baseline runs the same schedule against the brand's free service.
//!
//! Phase 3 runs the same schedule while another client — a process of its
//! own, this bench in the `flood` role — asks a free service as fast as its
//! connection lets it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, query_deferred, Payer, PayerConfig, ReceiptDue};
use agentwire_agent::quic::{connect, Connection, Target, TransportLimits};
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::record::{Currency, SignedRecord};
use agentwire_protocol::wire::ErrorCode;
use futures::stream::{FuturesUnordered, StreamExt};
use rand_core::OsRng;
use tokio::sync::{mpsc, Semaphore};

use super::brand::{payer_name, BrandProcess, Chain, BRAND, CAPS, PRICE};
use super::machine::{cpu_time, load1, UdpDrops};
use super::sessions::{client_ip, endpoints};

const BODY: usize = 200;
/// The brand's priced service (each answer paid, with a receipt).
pub const PAID: &str = "chat";
/// Its free service (the baseline: no voucher, no receipt).
pub const FREE: &str = "free";
/// A request not answered within this counts as an error (and stops waiting).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the receipts of a run once its last answer came.
const RECEIPT_WAIT: Duration = Duration::from_secs(30);

/// One user: a session, a payer and its channel, receipts checked on a task of their own.
pub struct PaidSession {
    conn: Connection,
    payer: Arc<Payer>,
    dues: mpsc::UnboundedSender<ReceiptDue>,
    sent: AtomicU64,
    settled: Arc<AtomicU64>,
    bad_receipts: Arc<AtomicU64>,
}

/// Checks receipts as they come (each settle waits for its batch).
fn settle_receipts(
    payer: Arc<Payer>,
    settled: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
) -> mpsc::UnboundedSender<ReceiptDue> {
    let (tx, mut rx) = mpsc::unbounded_channel::<ReceiptDue>();
    tokio::spawn(async move {
        let mut running = FuturesUnordered::new();
        let count = |r: Result<_, _>| {
            if r.is_err() {
                bad.fetch_add(1, Ordering::Relaxed);
            }
            settled.fetch_add(1, Ordering::Relaxed);
        };
        loop {
            tokio::select! {
                due = rx.recv() => match due {
                    Some(due) => {
                        let payer = payer.clone();
                        running.push(async move { due.settle(&payer).await });
                    }
                    None => break,
                },
                Some(r) = running.next(), if !running.is_empty() => count(r),
            }
        }
        while let Some(r) = running.next().await {
            count(r);
        }
    });
    tx
}

/// What setting up the paid sessions took.
#[derive(Debug, Default)]
pub struct Setup {
    pub sessions: usize,
    pub opening: Duration,
    pub connecting: Duration,
    pub warm_up: Duration,
}

/// Opens `n` channels on the devnet (one per payer) and `n` sessions, and
/// pays 1 to 32 warm-up queries on each (the brand checks each channel on chain at the first).
pub async fn setup(
    chain: &Chain,
    brand: &BrandProcess,
    dir: &std::path::Path,
    n: usize,
    per_ip: usize,
    queries_each: u128,
) -> (Vec<Arc<PaidSession>>, Setup) {
    let mut s = Setup { sessions: n, ..Setup::default() };
    let client = ChannelClient::new(&chain.ready.rpc_url, chain.ready.channels.as_str()).expect("chain client");
    let t = Instant::now();
    let sem = Arc::new(Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let account = format!("{}.devnet", payer_name(i));
        let near = NearAccount::new(&account, &chain.secret(&account)).expect("payer account");
        let store = Store::open(&dir.join(format!("payer-{i}")), StoreConfig::default()).expect("payer store");
        let mut config = PayerConfig::default();
        if let Ok(n) = std::env::var("AGENTWIRE_SCALE_RESERVE_QUERIES") {
            // How far ahead each payer's reservation reaches (how often its store is written).
            config.reserve_queries = n.parse().expect("reserve queries");
        }
        let payer = Payer::near(client.clone(), near, Keypair::generate(&mut OsRng), store, config).expect("payer");
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            payer.open(BRAND, &Currency::Near, queries_each * PRICE).await.expect("channel opened");
            (i, Arc::new(payer))
        });
    }
    let mut payers: Vec<(usize, Arc<Payer>)> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        payers.push(r.expect("opening task"));
    }
    payers.sort_by_key(|p| p.0);
    s.opening = t.elapsed();

    let t = Instant::now();
    // Source addresses after phase 1's.
    let eps = endpoints(n, per_ip, 200);
    let caps: Vec<String> = CAPS.iter().map(|c| c.to_string()).collect();
    let limits = TransportLimits::default();
    let mut sessions = Vec::new();
    for (i, payer) in payers {
        let id = Arc::new(LocalIdentity::generate(&mut OsRng));
        let conn = connect(&eps[i / per_ip], id, &brand.target, &caps, limits).await.expect("paid session");
        let settled = Arc::new(AtomicU64::new(0));
        let bad_receipts = Arc::new(AtomicU64::new(0));
        let dues = settle_receipts(payer.clone(), settled.clone(), bad_receipts.clone());
        sessions.push(Arc::new(PaidSession { conn, payer, dues, sent: AtomicU64::new(0), settled, bad_receipts }));
    }
    s.connecting = t.elapsed();

    let t = Instant::now();
    let record = Arc::new(brand.record.clone());
    let sem = Arc::new(Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    // Independent users are not in step: session i pays 1 + (i mod STAGGER)
    // warm-up queries, so the payers' periodic store writes (a reservation
    // extended every 32 queries) are spread over the schedule instead of
    // landing together (BENCHMARKS.md, scale: 1,000 in-step writes stalled
    // the generator). `AGENTWIRE_SCALE_STAGGER=0`: one each, all in step.
    let stagger: usize = std::env::var("AGENTWIRE_SCALE_STAGGER").map_or(STAGGER, |v| v.parse().expect("stagger"));
    for (i, p) in sessions.iter().enumerate() {
        let (p, record, sem) = (p.clone(), record.clone(), sem.clone());
        let queries = 1 + i.checked_rem(stagger).unwrap_or(0);
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            for _ in 0..queries {
                query(&p.conn, &record, PAID, vec![7; BODY], Some(&p.payer), |_| async {})
                    .await
                    .expect("warm-up query");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("warm-up task");
    }
    s.warm_up = t.elapsed();
    (sessions, s)
}

/// Warm-up queries spread over this many (see `setup`): half the default
/// reservation step, the period of a payer's reservation extension.
const STAGGER: usize = 32;

/// One request's timing.
#[derive(Clone, Copy)]
struct Sample {
    /// From when it was sent to its answer.
    sent_us: u32,
    /// From when it was due (the schedule) to its answer.
    due_us: u32,
    /// When it was due, from the run's start.
    at_ms: u32,
}

/// With `AGENTWIRE_SCALE_TIMELINE` set: the run's 100 ms windows that held
/// answers slower than 10 ms, to tell a steady tail from stalls.
fn print_timeline(samples: &[Sample]) {
    if std::env::var_os("AGENTWIRE_SCALE_TIMELINE").is_none() {
        return;
    }
    let mut windows: BTreeMap<u32, (usize, u32)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.sent_us > 10_000) {
        let w = windows.entry(s.at_ms / 100).or_default();
        w.0 += 1;
        w.1 = w.1.max(s.sent_us);
    }
    let list: Vec<String> =
        windows.iter().map(|(w, (n, max))| format!("{}ms:{n}({:.0}ms)", w * 100, f64::from(*max) / 1000.0)).collect();
    println!("timeline (100 ms windows with answers over 10 ms: start: count (max)): {}", list.join(" "));
}

/// What one run of the schedule measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub offered: usize,
    pub answered: usize,
    pub errors: BTreeMap<String, usize>,
    pub bad_receipts: u64,
    pub receipts_missing: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub due_p99: Duration,
    pub elapsed: Duration,
    /// Brand CPU time over the run's duration (1.0 = one core).
    pub brand_cores: f64,
    /// This process's CPU time over the run's duration.
    pub generator_cores: f64,
    pub drops: UdpDrops,
    pub load_before: f64,
    pub load_after: f64,
    pub flood: Option<Flood>,
    /// Every answered request's latency from when it was sent, µs, sorted.
    pub samples: Vec<u32>,
}

impl Run {
    pub fn error_count(&self) -> usize {
        self.errors.values().sum::<usize>() + self.bad_receipts as usize + self.receipts_missing as usize
    }
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_micros(u64::from(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]))
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Offers `rate` queries per second to `service` ([`PAID`] or [`FREE`]) over `sessions` for `duration`, open loop.
pub async fn run(
    sessions: &[Arc<PaidSession>],
    record: &SignedRecord,
    service: &'static str,
    brand_pid: u32,
    rate: f64,
    duration: Duration,
) -> Run {
    let total = (rate * duration.as_secs_f64()) as usize;
    let record = Arc::new(record.clone());
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let errors: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let before: Vec<(u64, u64)> =
        sessions.iter().map(|s| (s.settled.load(Ordering::Relaxed), s.bad_receipts.load(Ordering::Relaxed))).collect();
    let sent_before: Vec<u64> = sessions.iter().map(|s| s.sent.load(Ordering::Relaxed)).collect();
    let mut r = Run { offered: total, load_before: load1(), ..Run::default() };
    let drops = UdpDrops::read();
    let (brand_cpu, own_cpu) = (cpu_time(brand_pid), cpu_time(std::process::id()));
    let mut tasks = tokio::task::JoinSet::new();
    let t0 = tokio::time::Instant::now() + Duration::from_millis(20);
    let at = |i: usize| t0 + Duration::from_secs_f64(i as f64 / rate);
    let mut i = 0;
    while i < total {
        tokio::time::sleep_until(at(i)).await;
        let now = tokio::time::Instant::now();
        // Everything due by now is sent now.
        while i < total && at(i) <= now {
            let due = at(i);
            let s = sessions[i % sessions.len()].clone();
            let (record, samples, errors) = (record.clone(), samples.clone(), errors.clone());
            tasks.spawn(async move {
                let sent = tokio::time::Instant::now();
                let q = query_deferred(&s.conn, &record, service, vec![7; BODY], Some(&s.payer), |_| async {});
                let outcome = tokio::time::timeout(REQUEST_TIMEOUT, q).await;
                let done = tokio::time::Instant::now();
                let error = match outcome {
                    Ok(Ok((out, due))) => {
                        if let Some(due) = due {
                            s.sent.fetch_add(1, Ordering::Relaxed);
                            let _ = s.dues.send(due);
                        }
                        (out.body.len() != BODY).then(|| "wrong answer".to_string())
                    }
                    Ok(Err(e)) => Some(e.to_string().chars().take(80).collect()),
                    Err(_) => Some(format!("no answer within {REQUEST_TIMEOUT:?}")),
                };
                match error {
                    None => samples.lock().expect("samples").push(Sample {
                        sent_us: micros(done - sent),
                        due_us: micros(done - due),
                        at_ms: micros(due - t0) / 1000,
                    }),
                    Some(e) => *errors.lock().expect("errors").entry(e).or_default() += 1,
                }
            });
            i += 1;
        }
    }
    while tasks.join_next().await.is_some() {}
    r.elapsed = (tokio::time::Instant::now() - t0).max(duration);
    r.brand_cores = cpu_time(brand_pid).saturating_sub(brand_cpu).as_secs_f64() / r.elapsed.as_secs_f64();
    r.generator_cores = cpu_time(std::process::id()).saturating_sub(own_cpu).as_secs_f64() / r.elapsed.as_secs_f64();
    r.drops = UdpDrops::read().since(drops);
    // Every answer's receipt, checked.
    let deadline = Instant::now() + RECEIPT_WAIT;
    loop {
        let missing: u64 = sessions
            .iter()
            .zip(&before)
            .zip(&sent_before)
            .map(|((s, (settled, _)), sent)| {
                (s.sent.load(Ordering::Relaxed) - sent).saturating_sub(s.settled.load(Ordering::Relaxed) - settled)
            })
            .sum();
        if missing == 0 || Instant::now() > deadline {
            r.receipts_missing = missing;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.bad_receipts =
        sessions.iter().zip(&before).map(|(s, (_, bad))| s.bad_receipts.load(Ordering::Relaxed) - bad).sum();
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    print_timeline(&samples);
    r.answered = samples.len();
    let mut sent: Vec<u32> = samples.iter().map(|s| s.sent_us).collect();
    let mut due: Vec<u32> = samples.iter().map(|s| s.due_us).collect();
    sent.sort_unstable();
    due.sort_unstable();
    r.p50 = percentile(&sent, 0.5);
    r.p99 = percentile(&sent, 0.99);
    r.p999 = percentile(&sent, 0.999);
    r.max = percentile(&sent, 1.0);
    r.due_p99 = percentile(&due, 0.99);
    r.samples = sent;
    r.errors = std::mem::take(&mut *errors.lock().expect("errors"));
    r.load_after = load1();
    r
}

/// What the flooding client got.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flood {
    pub answered: u64,
    pub rate_limited: u64,
    pub other_errors: u64,
    pub elapsed: Duration,
}

impl Flood {
    pub fn parse(line: &str) -> Flood {
        let mut f = Flood::default();
        for field in line.split_whitespace() {
            let Some((k, v)) = field.split_once('=') else { continue };
            match k {
                "answered" => f.answered = v.parse().unwrap_or(0),
                "rate_limited" => f.rate_limited = v.parse().unwrap_or(0),
                "other" => f.other_errors = v.parse().unwrap_or(0),
                "elapsed_ms" => f.elapsed = Duration::from_millis(v.parse().unwrap_or(0)),
                _ => {}
            }
        }
        f
    }
}

const FLOOD_TARGET_ENV: &str = "AGENTWIRE_SCALE_FLOOD_TARGET";
const FLOOD_IN_FLIGHT_ENV: &str = "AGENTWIRE_SCALE_FLOOD_IN_FLIGHT";
/// A flood left running by a load generator that hangs stops after this long.
const FLOOD_MAX: Duration = Duration::from_secs(600);

/// The environment of a `flood` process against `target` with `in_flight` requests at once.
pub fn flood_env(target: &Target, in_flight: usize) -> Vec<(&'static str, String)> {
    vec![(FLOOD_TARGET_ENV, target.addr.to_string()), (FLOOD_IN_FLIGHT_ENV, in_flight.to_string())]
}

/// The `flood` role: one session from its own address, `in_flight` free
/// requests at once, each sent again as soon as it is answered (or
/// refused), until stdin closes; then prints what it got.
pub fn run_flood_child() {
    let addr = std::env::var(FLOOD_TARGET_ENV).expect("flood target").parse().expect("flood target address");
    let in_flight: usize = std::env::var(FLOOD_IN_FLIGHT_ENV).expect("in flight").parse().expect("in flight");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let ep = agentwire_agent::quic::client_endpoint(
            (client_ip(249 * 250), 0).into(),
            agentwire_agent::quic::TransportLimits::default().udp_buffer_bytes,
        )
        .expect("flood endpoint");
        let id = Arc::new(LocalIdentity::generate(&mut OsRng));
        let target = Target { addr, identity: None, noise_static: None };
        let conn = Arc::new(connect(&ep, id, &target, &[], TransportLimits::default()).await.expect("flood session"));
        let (answered, limited, other) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let stop = Arc::new(tokio::sync::Notify::new());
        let mut tasks = tokio::task::JoinSet::new();
        let t = Instant::now();
        for _ in 0..in_flight {
            let (conn, answered, limited, other) = (conn.clone(), answered.clone(), limited.clone(), other.clone());
            tasks.spawn(async move {
                while t.elapsed() < FLOOD_MAX {
                    match conn.request("free", vec![7; BODY]).await {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(e) if e.remote().is_some_and(|(c, _)| c == ErrorCode::RateLimited) => {
                            limited.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => {
                            // The session is gone or failing: do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            other.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        println!("STARTED");
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                if line.is_err() {
                    break;
                }
            }
            stopped.notify_one();
        });
        tokio::select! {
            () = stop.notified() => {}
            () = tokio::time::sleep(FLOOD_MAX) => {}
        }
        let elapsed = t.elapsed();
        tasks.abort_all();
        println!(
            "FLOOD answered={} rate_limited={} other={} elapsed_ms={}",
            answered.load(Ordering::Relaxed),
            limited.load(Ordering::Relaxed),
            other.load(Ordering::Relaxed),
            elapsed.as_millis()
        );
        std::process::exit(0);
    });
}
