//! Native unit tests of the near-sdk layer (near-sdk `unit-testing`).
//! `#[private]` and deposit checks of the wasm entry points are not enforced
//! natively; the VM tests cover those.

use near_sdk::json_types::{U128, U64};
use near_sdk::test_utils::{get_created_receipts, get_logs, VMContextBuilder};
use near_sdk::{testing_env, AccountId, NearToken, PromiseError};

use agentwire_protocol::identity::Keypair;
use agentwire_protocol::voucher::Voucher;

use crate::contract::{ChannelContract, Currency, FinalVoucher};

const HOUR_NS: u64 = 3_600_000_000_000;
const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
/// The block's random seed in every context, and the epoch `new` draws from it.
const SEED: [u8; 32] = [9; 32];
const EPOCH: u64 = u64::from_le_bytes([9; 8]);

fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

fn ctx(predecessor: &str, deposit: u128, now_ns: u64) {
    let mut b = VMContextBuilder::new();
    b.current_account_id(acc("channels.near"))
        .predecessor_account_id(acc(predecessor))
        .attached_deposit(NearToken::from_yoctonear(deposit))
        .block_timestamp(now_ns)
        .block_height(500)
        .random_seed(SEED)
        .account_balance(NearToken::from_near(1_000));
    testing_env!(b.build());
}

fn payer_key() -> Keypair {
    Keypair::from_seed(&[7; 32])
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sign(id: u64, epoch: u64, cumulative: u128) -> String {
    let v = Voucher {
        contract: agentwire_protocol::account::AccountId::new("channels.near").unwrap(),
        channel_id: id,
        epoch,
        cumulative,
    };
    hexs(&payer_key().sign_raw(&v.signing_bytes()))
}

/// `ft_transfer_call` msg opening a channel to brand.near with the fixture key.
fn token_open_msg() -> String {
    format!(
        r#"{{"Open":{{"payee":"brand.near","payer_key":"{}","challenge_period_ns":"{HOUR_NS}"}}}}"#,
        hexs(&payer_key().public().to_bytes())
    )
}

fn deploy() -> ChannelContract {
    ctx("owner.near", 0, 0);
    ChannelContract::new(acc("owner.near"), U64(HOUR_NS), vec![acc("usdc.near")])
}

fn open_near(c: &mut ChannelContract, deposit: u128) -> u64 {
    ctx("user.near", deposit + NEAR / 10, 0);
    c.open(acc("brand.near"), hexs(&payer_key().public().to_bytes()), U64(HOUR_NS), U128(deposit)).0
}

#[test]
fn open_charges_storage_and_shows_the_channel() {
    let mut c = deploy();
    let id = open_near(&mut c, 5 * NEAR);
    let v = c.get_channel(U64(id)).unwrap();
    assert_eq!(v.deposit, U128(5 * NEAR));
    assert_eq!(v.epoch, U64(EPOCH), "the epoch comes from the block's random seed");
    assert_eq!(v.payee, acc("brand.near"));
    let left = c.storage_balance_of(acc("user.near")).0;
    assert!(left < NEAR / 10 && left > 0, "storage charged from the extra attached NEAR: {left}");
    assert_eq!(c.channels_of(acc("brand.near"), None, None).len(), 1);
    assert!(get_logs().iter().any(|l| l.contains("\"event\":\"channel_opened\"")));
}

#[test]
fn claim_pays_the_payee_and_a_failed_transfer_rolls_back() {
    let mut c = deploy();
    let id = open_near(&mut c, 5 * NEAR);
    ctx("brand.near", 0, 10);
    let _ = c.claim(U64(id), U128(2 * NEAR), sign(id, EPOCH, 2 * NEAR));
    assert_eq!(c.get_channel(U64(id)).unwrap().claimed, U128(2 * NEAR));
    assert!(!get_created_receipts().is_empty());
    ctx("channels.near", 0, 11);
    let ok = c.on_payout(U64(id), true, U128(2 * NEAR), Err(PromiseError::Failed));
    assert!(!ok);
    assert_eq!(c.get_channel(U64(id)).unwrap().claimed, U128(0), "claim restored");
    // Success leaves state alone.
    ctx("brand.near", 0, 12);
    let _ = c.claim(U64(id), U128(NEAR), sign(id, EPOCH, NEAR));
    ctx("channels.near", 0, 13);
    assert!(c.on_payout(U64(id), true, U128(NEAR), Ok(())));
    assert_eq!(c.get_channel(U64(id)).unwrap().claimed, U128(NEAR));
}

#[test]
#[should_panic(expected = "only the payee may do this")]
fn claim_by_anyone_else_is_refused() {
    let mut c = deploy();
    let id = open_near(&mut c, NEAR);
    ctx("mallory.near", 0, 10);
    let _ = c.claim(U64(id), U128(1), sign(id, EPOCH, 1));
}

#[test]
#[should_panic(expected = "voucher signature does not verify")]
fn voucher_for_another_epoch_is_refused() {
    let mut c = deploy();
    let id = open_near(&mut c, NEAR);
    ctx("brand.near", 0, 10);
    let _ = c.claim(U64(id), U128(1), sign(id, EPOCH - 1, 1));
}

#[test]
#[should_panic(expected = "voucher exceeds the deposit")]
fn claim_above_the_deposit_never_touches_other_funds() {
    let mut c = deploy();
    let id = open_near(&mut c, NEAR);
    let _other = open_near(&mut c, 100 * NEAR);
    ctx("brand.near", 0, 10);
    let _ = c.claim(U64(id), U128(NEAR + 1), sign(id, EPOCH, NEAR + 1));
}

#[test]
#[should_panic(expected = "small-order")]
fn zero_key_is_refused() {
    let mut c = deploy();
    ctx("user.near", NEAR, 0);
    c.open(acc("brand.near"), "00".repeat(32), U64(HOUR_NS), U128(NEAR / 2));
}

#[test]
#[should_panic(expected = "token not accepted")]
fn unexpected_token_is_refused() {
    let mut c = deploy();
    ctx("fake-usdc.near", 0, 0);
    let msg = token_open_msg();
    let _ = c.ft_on_transfer(acc("user.near"), U128(1_000), msg);
}

#[test]
fn token_channel_unilateral_close_with_claim_then_finalize() {
    let mut c = deploy();
    ctx("user.near", NEAR / 10, 0);
    c.storage_deposit(None);
    ctx("usdc.near", 0, 0);
    let msg = token_open_msg();
    let _ = c.ft_on_transfer(acc("user.near"), U128(1_000_000), msg);
    let id = 0;
    assert_eq!(c.get_channel(U64(id)).unwrap().currency, Currency::Token(acc("usdc.near")));
    ctx("usdc.near", 0, 1);
    let _ = c.ft_on_transfer(acc("user.near"), U128(500_000), format!(r#"{{"TopUp":{{"channel_id":"{id}"}}}}"#));
    assert_eq!(c.get_channel(U64(id)).unwrap().deposit, U128(1_500_000));
    ctx("user.near", 0, 100);
    let ends = c.start_close(U64(id)).0;
    assert_eq!(ends, 100 + HOUR_NS);
    // The payee claims inside the challenge period.
    ctx("brand.near", 0, 200);
    let _ = c.claim(U64(id), U128(600_000), sign(id, EPOCH, 600_000));
    ctx("channels.near", 0, 201);
    assert!(c.on_payout(U64(id), true, U128(600_000), Ok(())));
    ctx("user.near", 0, ends);
    c.finalize(U64(id));
    assert!(get_logs().iter().any(|l| l.contains("\"refund\":\"900000\"")));
    assert!(c.get_channel(U64(id)).unwrap().settled, "kept until the refund is done");
    ctx("user.near", 0, ends + 1);
    let _ = std::panic::catch_unwind(|| ChannelContract.claim(U64(id), U128(600_001), sign(id, EPOCH, 600_001)))
        .expect_err("a settled channel takes no vouchers");
    ctx("channels.near", 0, ends + 2);
    assert!(c.on_payout(U64(id), false, U128(900_000), Ok(())));
    assert!(c.get_channel(U64(id)).is_none(), "channel and its key are gone");
}

#[test]
#[should_panic(expected = "channel is closing")]
fn top_up_while_closing_is_refused() {
    let mut c = deploy();
    let id = open_near(&mut c, NEAR);
    ctx("user.near", 0, 5);
    c.start_close(U64(id));
    ctx("user.near", NEAR, 6);
    c.top_up(U64(id));
}

#[test]
fn cooperative_close_settles_and_a_failed_refund_stays_owed_in_the_channel() {
    let mut c = deploy();
    let id = open_near(&mut c, 3 * NEAR);
    ctx("brand.near", 0, 10);
    c.close(U64(id), Some(FinalVoucher { cumulative: U128(NEAR), signature: sign(id, EPOCH, NEAR) }));
    let v = c.get_channel(U64(id)).unwrap();
    assert!(v.settled && v.closing_since_ns.is_some(), "settled, and shown as closing to older readers");
    ctx("channels.near", 0, 11);
    c.on_settle(U64(id), U128(NEAR), U128(2 * NEAR), [Ok(()), Err(PromiseError::Failed)]);
    let v = c.get_channel(U64(id)).unwrap();
    assert_eq!((v.owed_to_payee, v.owed_to_payer), (U128(0), U128(2 * NEAR)));
    assert!(get_logs().iter().any(|l| l.contains("\"event\":\"payout_owed\"")));
    ctx("brand.near", 0, 12);
    std::panic::catch_unwind(|| ChannelContract.withdraw_owed(U64(id))).expect_err("nothing owed to the payee");
    ctx("user.near", 0, 13);
    let _ = c.withdraw_owed(U64(id));
    assert_eq!(c.get_channel(U64(id)).unwrap().owed_to_payer, U128(0));
    ctx("channels.near", 0, 14);
    assert!(c.on_payout(U64(id), false, U128(2 * NEAR), Ok(())));
    assert!(c.get_channel(U64(id)).is_none(), "deleted once nothing is owed or in flight");
}

#[test]
fn endpoint_registry_charges_and_releases_storage() {
    let mut c = deploy();
    ctx("brand.near", NEAR / 10, 0);
    c.storage_deposit(None);
    let before = c.storage_balance_of(acc("brand.near")).0;
    let key = hexs(&Keypair::from_seed(&[3; 32]).public().to_bytes());
    ctx("brand.near", 0, 1);
    c.register_endpoint(key.clone());
    assert!(c.is_endpoint(acc("brand.near"), key.clone()));
    assert!(!c.is_endpoint(acc("other.near"), key.clone()));
    assert!(c.storage_balance_of(acc("brand.near")).0 < before);
    c.revoke_endpoint(key.clone());
    assert!(!c.is_endpoint(acc("brand.near"), key));
}

#[test]
fn close_credits_back_every_byte_the_open_charged_and_unindexes() {
    let mut c = deploy();
    ctx("user.near", NEAR, 0);
    c.storage_deposit(None);
    // (Native contexts reset storage_usage, so bytes are compared in the VM tests.)
    let balance0 = c.storage_balance_of(acc("user.near")).0;
    let id = open_near(&mut c, NEAR);
    assert!(c.storage_balance_of(acc("user.near")).0 < balance0 + NEAR / 10, "storage charged");
    assert_eq!(c.channels_of(acc("user.near"), None, None).len(), 1);
    ctx("brand.near", 0, 10);
    c.close(U64(id), None);
    ctx("channels.near", 0, 11);
    c.on_payout(U64(id), false, U128(NEAR), Ok(()));
    assert_eq!(c.storage_balance_of(acc("user.near")).0, balance0 + NEAR / 10, "all credited back");
    assert!(c.channels_of(acc("user.near"), None, None).is_empty());
    assert!(c.channels_of(acc("brand.near"), None, None).is_empty());
}

#[test]
fn settlement_with_two_failed_transfers_owes_both_parties() {
    let mut c = deploy();
    let id = open_near(&mut c, 7);
    ctx("brand.near", 0, 10);
    c.close(U64(id), Some(FinalVoucher { cumulative: U128(3), signature: sign(id, EPOCH, 3) }));
    ctx("channels.near", 0, 11);
    c.on_settle(U64(id), U128(3), U128(4), [Err(PromiseError::Failed), Ok(())]);
    let v = c.get_channel(U64(id)).unwrap();
    assert_eq!((v.owed_to_payee, v.owed_to_payer), (U128(3), U128(0)));
    assert!(get_logs().iter().any(|l| l.contains("\"event\":\"payout_owed\"")));
}

#[test]
fn the_index_is_bounded_but_unlisted_channels_still_work() {
    let mut c = deploy();
    for _ in 0..crate::store::MAX_INDEXED {
        open_near(&mut c, 1);
    }
    let id = open_near(&mut c, 1);
    let listed = c.channels_of(acc("brand.near"), Some(crate::store::MAX_INDEXED as u32 - 1), None);
    assert_eq!(listed.len(), 1, "the index is full");
    ctx("brand.near", 0, 10);
    let _ = c.claim(U64(id), U128(1), sign(id, EPOCH, 1));
    c.close(U64(id), None);
    ctx("channels.near", 0, 11);
    c.on_payout(U64(id), true, U128(1), Ok(()));
    assert!(c.get_channel(U64(id)).is_none());
}
