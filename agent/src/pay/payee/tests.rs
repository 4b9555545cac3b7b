//! The payee over in-memory doubles that fail on purpose: a store write that
//! fails or hangs, a chain that refuses or never answers. Nothing is served
//! without a durable voucher, and every failure is a clear refusal.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::voucher::Voucher;
use agentwire_protocol::wire::ErrorCode;
use rand_core::OsRng;

use super::{LedgerMoney, Payee, PayeeConfig, Price};
use crate::exchange::{IncomingRequest, Meter, Outcome, Refusal};
use crate::pay::chain::PayerChain;
use crate::pay::testing::{MemoryChain, MemoryStore};

const PRICE: u128 = 1_000;

struct Setup {
    chain: MemoryChain,
    store: MemoryStore,
    payee: Payee,
    key: Keypair,
    channel_id: u64,
}

async fn setup(config: PayeeConfig) -> Setup {
    let chain = MemoryChain::new("channels.near", 42, "brand.near");
    let key = Keypair::generate(&mut OsRng);
    let payer = chain.as_account("alice.near");
    let brand = agentwire_protocol::account::AccountId::new("brand.near").unwrap();
    let channel_id = payer.open(&brand, &key.public(), 3_600, &Currency::Near, 100 * PRICE, 0).await.unwrap();
    let store = MemoryStore::new();
    let prices: HashMap<String, Price> = [("chat".to_string(), Price::per_query(PRICE, Currency::Near, None))].into();
    let money = Arc::new(LedgerMoney::new(store.clone(), 10));
    let payee = Payee::new(Arc::new(chain.clone()), money, prices, config);
    Setup { chain, store, payee, key, channel_id }
}

fn peer() -> PeerInfo {
    let id = LocalIdentity::generate(&mut OsRng);
    PeerInfo {
        identity: id.identity.public(),
        agent_id: id.identity.public().agent_id(),
        noise_static: id.noise.public(),
        capabilities: vec![],
    }
}

fn request(s: &Setup, cumulative: u128) -> IncomingRequest {
    let v = Voucher {
        contract: agentwire_protocol::account::AccountId::new("channels.near").unwrap(),
        channel_id: s.channel_id,
        epoch: 42,
        cumulative,
    };
    IncomingRequest {
        peer: Arc::new(peer()),
        id: 1,
        service: "chat".into(),
        body: b"q".to_vec(),
        payment: Some(SignedVoucher::sign(v, &s.key)),
    }
}

fn code(r: Result<Option<crate::exchange::Ticket>, Refusal>) -> ErrorCode {
    match r {
        Err(Refusal::Error(code, _)) => code,
        Err(Refusal::PaymentRequired { .. }) => ErrorCode::PaymentRequired,
        Ok(_) => panic!("admitted"),
    }
}

#[tokio::test]
async fn a_failed_write_refuses_the_request_and_the_channel_until_a_restart() {
    let s = setup(PayeeConfig::default()).await;
    s.store.faults.fail_next.store(1, Ordering::Release);
    let p = peer();
    assert_eq!(code(s.payee.admit(&p, &request(&s, PRICE)).await), ErrorCode::Unavailable);
    // The store failed: nothing more is admitted on that channel, even once it works.
    assert_eq!(code(s.payee.admit(&p, &request(&s, 2 * PRICE)).await), ErrorCode::Unavailable);
    assert_eq!(s.chain.paid_to("brand.near"), 0);
}

#[tokio::test]
async fn a_hanging_write_serves_nothing() {
    let s = setup(PayeeConfig::default()).await;
    s.store.faults.hang.store(true, Ordering::Release);
    let p = peer();
    let r = tokio::time::timeout(Duration::from_millis(200), s.payee.admit(&p, &request(&s, PRICE))).await;
    assert!(r.is_err(), "an admission never resolves before its voucher is durable");
    assert_eq!(s.store.writes.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_chain_that_never_answers_is_refused_within_the_bound() {
    let config = PayeeConfig { chain_timeout: Duration::from_millis(100), ..PayeeConfig::default() };
    let s = setup(config).await;
    s.chain.faults.hang.store(true, Ordering::Release);
    let p = peer();
    let t = std::time::Instant::now();
    assert_eq!(code(s.payee.admit(&p, &request(&s, PRICE)).await), ErrorCode::Unavailable);
    assert!(t.elapsed() < Duration::from_secs(2));
    s.chain.faults.hang.store(false, Ordering::Release);
    s.chain.faults.fail_next.store(1, Ordering::Release);
    assert_eq!(code(s.payee.admit(&p, &request(&s, PRICE)).await), ErrorCode::Unavailable);
    // Once the chain answers, the same voucher is admitted.
    assert!(s.payee.admit(&p, &request(&s, PRICE)).await.unwrap().is_some());
}

#[tokio::test]
async fn a_failed_answer_is_not_claimed_and_a_delivered_one_is() {
    let s = setup(PayeeConfig::default()).await;
    let p = peer();
    let t1 = s.payee.admit(&p, &request(&s, PRICE)).await.unwrap().unwrap();
    let settled = s.payee.settle(t1, Outcome::Failed).await.unwrap();
    assert_eq!(settled.cumulative, 0, "the statement: nothing charged on the channel");
    let t2 = s.payee.admit(&p, &request(&s, PRICE)).await.unwrap().unwrap();
    assert_eq!(s.payee.settle(t2, Outcome::Delivered { actual: None }).await.unwrap().cumulative, PRICE);
    let claims = s.payee.claim_due(true).await;
    assert_eq!(claims, vec![(s.channel_id, PRICE)]);
    assert_eq!(s.chain.paid_to("brand.near"), PRICE, "one answer delivered, one price claimed");
}

#[tokio::test]
async fn a_voucher_paid_ahead_of_need_is_made_durable_at_once_not_when_first_needed() {
    let s = setup(PayeeConfig::default()).await;
    let p = peer();
    // The first voucher covers 4 queries; its request waits for its write.
    let t = s.payee.admit(&p, &request(&s, 4 * PRICE)).await.unwrap().unwrap();
    let _ = s.payee.settle(t, Outcome::Delivered { actual: None }).await.unwrap();
    let writes = s.store.writes.load(Ordering::Relaxed);
    // The payer signs its next total early (spec §8.4, Credit): the request
    // carrying it is covered by the durable 4 and served without a write...
    s.store.faults.hang.store(true, Ordering::Release);
    let early = tokio::time::timeout(Duration::from_secs(2), s.payee.admit(&p, &request(&s, 12 * PRICE))).await;
    let t = early.expect("served from the durable voucher, not held for the new one").unwrap().unwrap();
    let _ = s.payee.settle(t, Outcome::Delivered { actual: None }).await;
    // ...and the new voucher's write has started at once (it hangs here).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    s.store.faults.hang.store(false, Ordering::Release);
    for _ in 0..2 {
        let t = s.payee.admit(&p, &request(&s, 12 * PRICE)).await.unwrap().unwrap();
        let _ = s.payee.settle(t, Outcome::Delivered { actual: None }).await;
    }
    // Beyond the durable 4, a request must wait for the 12 to be durable: the
    // write that started hangs forever, so the wait never ends.
    let fifth = tokio::time::timeout(Duration::from_millis(200), s.payee.admit(&p, &request(&s, 12 * PRICE))).await;
    assert!(fifth.is_err(), "served beyond what is durable");
    assert_eq!(s.store.writes.load(Ordering::Relaxed), writes, "the new voucher's write started while writes hung");
}
