//! The PostgreSQL money store against a real, throwaway PostgreSQL cluster:
//!
//! - the same random operation sequences run against it and against the
//!   embedded reference (`LedgerMoney`, the protocol's `PayeeLedger`), and
//!   every outcome and state is compared;
//! - two endpoints sharing a channel never admit the same credit, whatever
//!   the interleaving;
//! - a dead endpoint's unsettled admissions are taken back and its claimer
//!   lease passes to another endpoint within a bounded time;
//! - with the database down, admissions are refused with a clear error, and
//!   they work again once it is back.
//!
//! PostgreSQL must be installed (`bash scripts/test.sh` installs it): these
//! tests fail, saying what is missing, when it is not.

#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_agent::pay::payee::{ChainChannel, MoneyError};
use agentwire_agent::pay::pg::testing::TempCluster;
use agentwire_agent::pay::pg::{PgConfig, PgMoney};
use agentwire_agent::pay::testing::MemoryStore;
use agentwire_agent::pay::{LedgerMoney, PayeeMoney};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::Keypair;
use agentwire_protocol::ledger::{Admission, ChannelRef};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::{PaymentError, SignedVoucher};
use agentwire_protocol::voucher::Voucher;

const UNIT: u128 = 1_000_000_000_000_000_000_000; // 0.001 NEAR

fn cluster() -> TempCluster {
    TempCluster::start().unwrap_or_else(|e| panic!("a throwaway PostgreSQL cluster is needed for this test: {e}"))
}

/// SplitMix64: the sequences are reproducible from their seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn payer_key() -> Keypair {
    Keypair::from_seed(&[7; 32])
}

fn channel(contract: &str, id: u64) -> ChannelRef {
    ChannelRef { contract: AccountId::new(contract).unwrap(), channel_id: id, epoch: 40 + id }
}

fn voucher(c: &ChannelRef, cumulative: u128, key: &Keypair) -> SignedVoucher {
    SignedVoucher::sign(
        Voucher { contract: c.contract.clone(), channel_id: c.channel_id, epoch: c.epoch, cumulative },
        key,
    )
}

fn chain_channel(c: &ChannelRef, deposit: u128) -> ChainChannel {
    ChainChannel {
        channel: c.clone(),
        payer_key: payer_key().public(),
        currency: Currency::Near,
        deposit,
        claimed: 0,
        closing: false,
    }
}

async fn pg(cluster: &TempCluster, payee: &str, contract: &str, lease: Duration) -> PgMoney {
    let mut config = PgConfig::new(&cluster.url(), payee, contract, "test-agent");
    config.lease = lease;
    PgMoney::connect(config).await.unwrap_or_else(|e| panic!("connecting to the throwaway cluster: {e}"))
}

/// An outcome both stores must agree on.
fn admitted(r: &Result<Admission, MoneyError>) -> String {
    match r {
        Ok(a) => format!(
            "Ok(required {}, price {}, persist {:?})",
            a.required,
            a.price,
            a.persist.as_ref().map(|v| v.voucher.cumulative)
        ),
        Err(MoneyError::Payment(e)) => format!("{e:?}"),
        Err(e) => format!("other error: {e}"),
    }
}

async fn compare_state(seed: u64, step: usize, a: &dyn PayeeMoney, b: &dyn PayeeMoney, ids: &[u64]) {
    // The embedded reference `a` serves from credit paid ahead at once and
    // makes a higher voucher durable only when an answer needs it; the shared
    // store `b` commits every accepted voucher with its admission. So their
    // durable totals may differ (both safe: each covers what it charged);
    // everything else about the money is the same, to the yocto.
    let money = |v: Vec<agentwire_agent::pay::payee::ChannelMoney>| {
        v.into_iter().map(|c| (c.channel, c.charged, c.forgiven, c.unclaimed, c.closing)).collect::<Vec<_>>()
    };
    let mut tries = 0;
    let (ca, cb) = loop {
        let (ca, cb) = (a.channels().await.unwrap(), b.channels().await.unwrap());
        tries += 1;
        if money(ca.clone()) == money(cb.clone()) || tries >= 200 {
            break (ca, cb);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(money(ca.clone()), money(cb.clone()), "seed {seed} step {step}: channel states differ");
    for (x, y) in ca.iter().zip(&cb) {
        let accepted = b.highest(y.channel.channel_id).await.unwrap().map_or(0, |v| v.voucher.cumulative);
        assert!(
            x.durable <= y.durable && y.durable <= accepted,
            "seed {seed} step {step}: durable totals out of order: reference {x:?}, shared {y:?}, accepted {accepted}"
        );
    }
    // A claim brings the claimed total to what was charged, as far as the
    // durable voucher covers it: the shared store, durable ahead, may claim
    // further than the reference, never past what was charged.
    let due = |v: Vec<agentwire_agent::pay::payee::ClaimDue>| {
        v.into_iter().map(|d| (d.channel.channel_id, d.target)).collect::<std::collections::BTreeMap<_, _>>()
    };
    let (da, db) = (due(a.claims_due().await.unwrap()), due(b.claims_due().await.unwrap()));
    for (id, target) in &da {
        assert!(db.get(id).is_some_and(|t| t >= target), "seed {seed} step {step}: claims due differ: {da:?} {db:?}");
    }
    for (id, target) in &db {
        let charged = cb.iter().find(|c| c.channel.channel_id == *id).map_or(0, |c| c.charged);
        assert!(*target <= charged, "seed {seed} step {step}: a claim past what was charged: {db:?} {cb:?}");
    }
    for id in ids {
        assert_eq!(
            a.highest(*id).await.unwrap(),
            b.highest(*id).await.unwrap(),
            "seed {seed} step {step}: highest {id}"
        );
    }
}

/// Runs one random sequence against both stores; `contract` keeps each
/// sequence's channels apart in the shared database.
async fn one_sequence(cluster: &TempCluster, seed: u64, steps: usize) {
    let contract = format!("c{seed}.near");
    let reference = LedgerMoney::new(MemoryStore::new(), 100);
    let shared = pg(cluster, "brand.near", &contract, Duration::from_secs(30)).await;
    let mut rng = Rng(seed);
    let key = payer_key();
    let forger = Keypair::from_seed(&[9; 32]);
    let ids = [0u64, 1, 2];
    let mut deposits = [0u128; 3];
    for id in ids {
        deposits[id as usize] = UNIT * (5 + rng.below(30) as u128);
        let c = chain_channel(&channel(&contract, id), deposits[id as usize]);
        reference.load(c.clone()).await.unwrap();
        shared.load(c).await.unwrap();
    }
    // Admissions not settled yet: (channel, reference's, shared's).
    let mut open: Vec<(u64, Admission, Admission)> = Vec::new();
    for step in 0..steps {
        let id = ids[rng.below(3) as usize];
        let c = channel(&contract, id);
        let highest = reference.highest(id).await.unwrap().map_or(0, |v| v.voucher.cumulative);
        match rng.below(20) {
            0..=9 => {
                // A voucher: mostly the next totals, sometimes the highest again, a lower one, a bad one.
                let price = UNIT * (1 + rng.below(3) as u128);
                let total = match rng.below(8) {
                    0 => highest,
                    1 => highest.saturating_sub(UNIT * rng.below(3) as u128),
                    2 => deposits[id as usize] + UNIT,
                    _ => highest + UNIT * rng.below(4) as u128,
                };
                let v = match rng.below(12) {
                    0 => voucher(&c, total, &forger),
                    1 => voucher(&channel(&contract, id + 10), total, &key),
                    2 => {
                        let mut other = c.clone();
                        other.epoch += 1;
                        voucher(&other, total, &key)
                    }
                    3 => voucher(&channel("evil.near", id), total, &key),
                    _ => voucher(&c, total, &key),
                };
                let delivering = rng.below(5) == 0;
                let (ra, rb) =
                    (reference.admit(id, &v, price, delivering).await, shared.admit(id, &v, price, delivering).await);
                assert_eq!(admitted(&ra), admitted(&rb), "seed {seed} step {step}: admit {total} for {price}");
                if let (Ok(a), Ok(b)) = (ra, rb) {
                    open.push((id, a, b));
                }
            }
            10..=14 if !open.is_empty() => {
                let (id, a, b) = open.swap_remove(rng.below(open.len() as u64) as usize);
                let price = a.price;
                let actual = match rng.below(4) {
                    0 => 0,
                    1 => price / 3,
                    _ => price,
                };
                if rng.below(4) == 0 {
                    shared.delivering(id, &b).await.unwrap();
                }
                reference.settle(id, a, actual).await.unwrap();
                shared.settle(id, b, actual).await.unwrap();
            }
            15 => {
                let deposit = deposits[id as usize] + UNIT * rng.below(4) as u128;
                let lower = rng.below(4) == 0;
                let d = if lower { deposit.saturating_sub(UNIT * 2) } else { deposit };
                deposits[id as usize] = deposits[id as usize].max(d);
                reference.top_up(id, d).await.unwrap();
                shared.top_up(id, d).await.unwrap();
            }
            16 if rng.below(6) == 0 => {
                reference.start_close(id).await.unwrap();
                shared.start_close(id).await.unwrap();
            }
            17 => {
                // A claim of what is due, as the payee makes it.
                let due = reference.claims_due().await.unwrap();
                if let Some(d) = due.first() {
                    reference.record_claim(d.channel.channel_id, d.target).await.unwrap();
                    shared.record_claim(d.channel.channel_id, d.target).await.unwrap();
                }
            }
            18 => {
                // The chain says again what it knows (the watcher's reload).
                let mut again = chain_channel(&c, deposits[id as usize]);
                again.claimed = reference.channels().await.unwrap()[id as usize].charged.min(highest) / 2;
                reference.load(again.clone()).await.unwrap();
                shared.load(again).await.unwrap();
            }
            _ => {
                // An unknown channel.
                let v = voucher(&channel(&contract, 99), UNIT, &key);
                let (ra, rb) = (reference.admit(99, &v, UNIT, false).await, shared.admit(99, &v, UNIT, false).await);
                assert!(matches!(ra, Err(MoneyError::NotLoaded(99))), "{ra:?}");
                assert!(matches!(rb, Err(MoneyError::NotLoaded(99))), "{rb:?}");
            }
        }
        compare_state(seed, step, &reference, &shared, &ids).await;
    }
    for (id, a, b) in open {
        reference.settle(id, a, 0).await.unwrap();
        shared.settle(id, b, 0).await.unwrap();
    }
    compare_state(seed, steps, &reference, &shared, &ids).await;
    shared.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_store_matches_the_ledger_on_random_sequences() {
    let cluster = cluster();
    for seed in 1..=12 {
        one_sequence(&cluster, seed, 150).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_endpoints_never_admit_the_same_credit() {
    let cluster = cluster();
    let contract = "channels.near";
    let a = Arc::new(pg(&cluster, "brand.near", contract, Duration::from_secs(30)).await);
    let b = Arc::new(pg(&cluster, "brand.near", contract, Duration::from_secs(30)).await);
    assert_ne!(a.endpoint(), b.endpoint());
    let c = channel(contract, 5);
    for m in [&a, &b] {
        m.load(chain_channel(&c, 1_000 * UNIT)).await.unwrap();
    }
    let key = payer_key();
    // One voucher worth ten requests, replayed 60 times at each endpoint at once.
    let v = Arc::new(voucher(&c, 10 * UNIT, &key));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..120 {
        let (m, v) = (if i % 2 == 0 { a.clone() } else { b.clone() }, v.clone());
        tasks.spawn(async move { m.admit(5, &v, UNIT, false).await.map(|adm| (i % 2, adm)) });
    }
    let mut admitted = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(x) => admitted.push(x),
            Err(MoneyError::Payment(PaymentError::InsufficientPayment { .. })) => {}
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!(admitted.len(), 10, "ten requests paid, ten admitted");
    let mut totals: Vec<u128> = admitted.iter().map(|(_, adm)| adm.required).collect();
    totals.sort();
    assert_eq!(totals, (1..=10).map(|n| n * UNIT).collect::<Vec<_>>(), "each admission takes the next unit");
    // Increasing vouchers from both endpoints at once, out of order: each pays exactly its increment.
    let mut tasks = tokio::task::JoinSet::new();
    for n in 11..=50u128 {
        let m = if n % 2 == 0 { a.clone() } else { b.clone() };
        let v = voucher(&c, n * UNIT, &key);
        tasks.spawn(async move { m.admit(5, &v, UNIT, false).await.map(|adm| (usize::from(n % 2 == 0), adm)) });
    }
    let mut more = 0;
    while let Some(r) = tasks.join_next().await {
        if let Ok(x) = r.unwrap() {
            admitted.push(x);
            more += 1;
        }
    }
    assert_eq!(more, 40, "every increment admitted once, whatever the order");
    for (who, adm) in admitted {
        let m = if who == 0 { &a } else { &b };
        m.settle(5, adm, UNIT).await.unwrap();
    }
    let s = &a.channels().await.unwrap()[0];
    assert_eq!((s.durable, s.charged, s.forgiven, s.unclaimed), (50 * UNIT, 50 * UNIT, 0, 50 * UNIT));
    assert_eq!(b.channels().await.unwrap(), a.channels().await.unwrap(), "both endpoints see one state");
    let due = b.claims_due().await.unwrap();
    assert_eq!((due.len(), due[0].target, due[0].voucher.voucher.cumulative), (1, 50 * UNIT, 50 * UNIT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoints_admissions_are_taken_back_and_its_lease_passes() {
    let cluster = cluster();
    let contract = "channels.near";
    let lease = Duration::from_secs(1);
    let a = pg(&cluster, "brand.near", contract, lease).await;
    let b = pg(&cluster, "brand.near", contract, lease).await;
    let c = channel(contract, 1);
    a.load(chain_channel(&c, 100 * UNIT)).await.unwrap();
    b.load(chain_channel(&c, 100 * UNIT)).await.unwrap();
    assert!(a.claimer().await.unwrap(), "the first to ask holds the lease");
    assert!(!b.claimer().await.unwrap(), "one claimer at a time");
    let key = payer_key();
    // A: one answer settled, one streamed answer begun, one admitted and not begun; then it dies.
    let settled = a.admit(1, &voucher(&c, 3 * UNIT, &key), UNIT, false).await.unwrap();
    let streaming = a.admit(1, &voucher(&c, 3 * UNIT, &key), UNIT, false).await.unwrap();
    let _never_answered = a.admit(1, &voucher(&c, 3 * UNIT, &key), UNIT, false).await.unwrap();
    a.settle(1, settled, UNIT).await.unwrap();
    a.delivering(1, &streaming).await.unwrap();
    let before = b.channels().await.unwrap()[0].clone();
    assert_eq!((before.charged, before.unclaimed), (UNIT, UNIT), "pending answers are not claimed");
    let died = Instant::now();
    drop(a);
    // B takes the lease once A's expires, and sweeps once it has held it a whole lease.
    let mut took = None;
    while died.elapsed() < Duration::from_secs(10) {
        if b.claimer().await.unwrap() {
            took.get_or_insert(died.elapsed());
            let s = &b.channels().await.unwrap()[0];
            if s.forgiven > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = took.expect("the lease passed");
    assert!(took <= lease * 2 + Duration::from_millis(500), "lease passed after {took:?}");
    let after = &b.channels().await.unwrap()[0];
    // The unbegun answer is forgiven (the payer's credit); the begun stream is charged.
    assert_eq!((after.charged, after.forgiven, after.unclaimed), (2 * UNIT, UNIT, 2 * UNIT), "{after:?}");
    assert!(died.elapsed() <= lease * 4 + Duration::from_secs(1), "swept after {:?}", died.elapsed());
    // The forgiven credit pays the next request without a new voucher.
    let next = b.admit(1, &voucher(&c, 3 * UNIT, &key), UNIT, false).await.unwrap();
    assert_eq!(next.required, 3 * UNIT);
    b.settle(1, next, UNIT).await.unwrap();
    b.leave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_admission_is_refused_then_recovers() {
    let cluster = cluster();
    let contract = "channels.near";
    let m = pg(&cluster, "brand.near", contract, Duration::from_secs(10)).await;
    let c = channel(contract, 3);
    m.load(chain_channel(&c, 100 * UNIT)).await.unwrap();
    let key = payer_key();
    let first = m.admit(3, &voucher(&c, UNIT, &key), UNIT, false).await.unwrap();
    m.settle(3, first, UNIT).await.unwrap();
    tokio::task::block_in_place(|| cluster.stop("fast")).unwrap();
    let t = Instant::now();
    let down = m.admit(3, &voucher(&c, 2 * UNIT, &key), UNIT, false).await;
    assert!(matches!(down, Err(MoneyError::Unavailable(_))), "{down:?}");
    assert!(t.elapsed() < Duration::from_secs(8), "refused within the timeout, not hung: {:?}", t.elapsed());
    tokio::task::block_in_place(|| cluster.start_again()).unwrap();
    let mut again = None;
    for _ in 0..50 {
        match m.admit(3, &voucher(&c, 2 * UNIT, &key), UNIT, false).await {
            Ok(a) => {
                again = Some(a);
                break;
            }
            Err(MoneyError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let again = again.expect("admission works again once the database is back");
    assert_eq!(again.required, 2 * UNIT, "nothing was lost or charged twice across the restart");
    m.settle(3, again, UNIT).await.unwrap();
    let s = &m.channels().await.unwrap()[0];
    assert_eq!((s.charged, s.forgiven, s.durable), (2 * UNIT, 0, 2 * UNIT));
}
