//! The payer over in-memory doubles that fail on purpose: a reservation that
//! cannot be written sends no voucher; a restart learns the brand's total
//! before it signs anything new.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use agentwire_protocol::identity::Keypair;
use agentwire_protocol::money::Currency;
use rand_core::OsRng;

use super::{PayError, Payer, PayerConfig};
use crate::pay::testing::{MemoryChain, MemoryStore};
use crate::pay::PayerStore;

const PRICE: u128 = 1_000;

fn payer(chain: &MemoryChain, store: &MemoryStore, key: &Keypair) -> Payer {
    Payer::new(Arc::new(chain.clone()), key.clone(), Arc::new(store.clone()), PayerConfig::default())
}

#[tokio::test]
async fn no_voucher_leaves_before_its_reservation_is_durable() {
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    let store = MemoryStore::new();
    let key = Keypair::generate(&mut OsRng);
    let p = payer(&chain, &store, &key);
    let first = p.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    assert!(first.reserve.is_some() && first.new_total);
    let writes = store.writes.load(Ordering::Relaxed);
    // Spend the credit and the reservation; the next reservation write fails.
    let mut last = first;
    for _ in 0..200 {
        p.answered("brand.near", &Currency::Near, &last, Some(last.voucher.voucher.cumulative)).await;
        store.faults.fail_next.store(1, Ordering::Release);
        match p.pay("brand.near", &Currency::Near, 0, PRICE).await {
            Ok(pay) if pay.reserve.is_none() => last = pay,
            Ok(pay) => panic!("a voucher above the reservation left without its write: {pay:?}"),
            Err(PayError::Store(_)) => {
                assert!(store.writes.load(Ordering::Relaxed) >= writes);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the reservation was never renewed");
}

#[tokio::test]
async fn a_chain_that_refuses_the_open_opens_nothing() {
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    chain.faults.fail_next.store(1, Ordering::Release);
    let store = MemoryStore::new();
    let p = payer(&chain, &store, &Keypair::generate(&mut OsRng));
    assert!(matches!(p.pay("brand.near", &Currency::Near, 0, PRICE).await, Err(PayError::Chain(_))));
    assert!(p.status().await.unwrap().is_empty());
}

#[tokio::test]
async fn after_a_restart_the_floor_voucher_is_sent_first() {
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    let store = MemoryStore::new();
    let key = Keypair::generate(&mut OsRng);
    let before = payer(&chain, &store, &key);
    let a = before.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    before.answered("brand.near", &Currency::Near, &a, Some(PRICE)).await;
    drop(before);
    // A new process: the recorded voucher is re-sent, nothing new is signed.
    let after = payer(&chain, &store, &key);
    let probe = after.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    assert!(!probe.new_total, "a restart never signs its reservation");
    assert_eq!(probe.voucher, a.voucher);
    let status = after.status().await.unwrap();
    assert!(status[0].signed_unconfirmed);
}

#[tokio::test]
async fn after_a_restart_an_increment_is_paid_above_the_brands_voucher_not_probed() {
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    let store = MemoryStore::new();
    let key = Keypair::generate(&mut OsRng);
    let before = payer(&chain, &store, &key);
    let a = before.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    before.answered("brand.near", &Currency::Near, &a, Some(PRICE)).await;
    drop(before);
    // A new process: its request is paid by the probe (the recorded voucher);
    // the brand serves it from credit and asks for a metered increment before
    // any receipt says what it charged.
    let after = payer(&chain, &store, &key);
    let probe = after.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    assert!(!probe.new_total);
    after.increment_required("brand.near", &Currency::Near, Some(&a.voucher)).await.unwrap();
    let inc = after.pay("brand.near", &Currency::Near, 0, PRICE / 2).await.unwrap();
    assert!(inc.new_total, "an increment is never paid by re-sending a voucher the brand already holds");
    assert!(inc.voucher.voucher.cumulative >= a.voucher.voucher.cumulative + PRICE / 2, "{inc:?}");
    assert!(!after.status().await.unwrap()[0].signed_unconfirmed);
}

#[tokio::test]
async fn under_a_daily_budget_nothing_is_signed_ahead() {
    use crate::pay::limits::{Limits, Spending};
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    let key = Keypair::generate(&mut OsRng);
    // Without a budget the payer signs ahead by the policy (default 8 prices).
    let free = payer(&chain, &MemoryStore::new(), &key);
    let a = free.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    assert_eq!(a.voucher.voucher.cumulative, 9 * PRICE);
    for budget in [
        Limits { per_brand_per_day: Some(100 * PRICE), ..Limits::default() },
        Limits { per_day: Some(100 * PRICE), ..Limits::default() },
    ] {
        let spending = Spending::new([(Currency::Near, budget)].into(), None).unwrap();
        let p = payer(&chain, &MemoryStore::new(), &key).with_spending(spending);
        // Two requests in flight: each voucher covers exactly what is in flight.
        let first = p.pay("other.near", &Currency::Near, 0, PRICE).await.unwrap();
        assert_eq!(first.voucher.voucher.cumulative, PRICE, "what the budget reserved, nothing ahead");
        let second = p.pay("other.near", &Currency::Near, 0, PRICE).await.unwrap();
        assert_eq!(second.voucher.voucher.cumulative, 2 * PRICE);
        p.answered("other.near", &Currency::Near, &first, Some(PRICE)).await;
        p.answered("other.near", &Currency::Near, &second, Some(2 * PRICE)).await;
        let status = p.status().await.unwrap();
        assert_eq!((status[0].signed, status[0].charged), (2 * PRICE, 2 * PRICE), "{status:?}");
    }
}

#[tokio::test]
async fn reservations_are_extended_off_the_payments_path_and_a_stuck_write_holds_back_what_it_covers() {
    let chain = MemoryChain::new("channels.near", 1, "alice.near");
    let store = MemoryStore::new();
    let p = payer(&chain, &store, &Keypair::generate(&mut OsRng));
    let durable = || store.recorded("channels.near").iter().map(|r| r.snapshot.reserved).max().unwrap_or(0);
    // A deposit that needs no top-up (a top-up is a chain transaction: the
    // reservation written after it is not what a request waits for).
    p.open("brand.near", &Currency::Near, 10_000 * PRICE).await.unwrap();
    let mut last = p.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
    assert!(last.reserve.is_some(), "the first reservation is written before the first voucher");
    // A healthy store: 1,000 payments, none of which waits for a reservation.
    let mut extended = 0;
    let mut charged = 0;
    for _ in 0..1_000 {
        charged += PRICE;
        p.answered("brand.near", &Currency::Near, &last, Some(charged)).await;
        last = p.pay("brand.near", &Currency::Near, 0, PRICE).await.unwrap();
        assert_eq!(last.reserve, None, "a payment waited for a reservation write");
        assert!(last.voucher.voucher.cumulative <= durable(), "a voucher left above the durable reservation");
        extended += usize::from(last.extend.is_some());
        // Let the background write land.
        tokio::task::yield_now().await;
    }
    assert!(extended >= 1_000 / 64, "{extended} extensions for 1,000 queries");
    // Writes now hang: payments go on within what is durable, then wait; none leaves above it.
    store.faults.hang.store(true, Ordering::Release);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let ceiling = durable();
    for n in 0.. {
        charged += PRICE;
        p.answered("brand.near", &Currency::Near, &last, Some(charged)).await;
        match tokio::time::timeout(
            std::time::Duration::from_millis(200),
            p.pay("brand.near", &Currency::Near, 0, PRICE),
        )
        .await
        {
            Ok(Ok(pay)) => {
                assert!(pay.voucher.voucher.cumulative <= ceiling, "a voucher left above the durable reservation");
                last = pay;
            }
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {
                assert!(n >= 1, "the reservation left nothing to pay from");
                break;
            }
        }
    }
}
