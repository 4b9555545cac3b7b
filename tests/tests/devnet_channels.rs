//! The whole life of a NEAR channel and of a NEP-141 channel, through the
//! devnet's JSON-RPC with the agent's NEAR client (`agentwire_agent::near`,
//! built on `near-api`): open, vouchers signed with `agentwire-protocol`,
//! claim, top-up, the payer's unilateral close, the payee's claim inside the
//! challenge period, finalize. Every balance is checked to the yoctoNEAR
//! (and to the token's smallest unit): a signer's NEAR balance moves by its
//! deposits, what it receives, and the `tokens_burnt` its transactions report.

use agentwire_agent::near::{ChannelClient, Currency, NearAccount, NearError, TxOutcome};
use agentwire_devnet::contracts::Contract as Wasm;
use agentwire_devnet::{DevAccount, Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId as ProtoAccount;
use agentwire_protocol::identity::Keypair;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::voucher::Voucher;
use near_api::{AccountId, Contract, NearGas, Signer};
use serde_json::json;

const HOUR_NS: u64 = 3_600_000_000_000;
const STORAGE: u128 = ONE_NEAR / 100;
const USDC: u128 = 1_000_000; // 6 decimals

struct World {
    devnet: Devnet,
    client: ChannelClient,
    token: AccountId,
    payer: NearAccount,
    payee: NearAccount,
}

fn near_account(a: &DevAccount) -> NearAccount {
    NearAccount::new(a.account_id.as_str(), &a.secret_key.to_string()).expect("dev account")
}

fn signer(a: &DevAccount) -> std::sync::Arc<Signer> {
    Signer::from_secret_key(a.secret_key.to_string().parse().expect("key")).expect("signer")
}

async fn deploy(devnet: &Devnet, account: &DevAccount, wasm: Vec<u8>, init: serde_json::Value) {
    let id: AccountId = account.account_id.as_str().parse().unwrap();
    let network = near_api::NetworkConfig::from_rpc_url("devnet", devnet.rpc_url().parse().unwrap());
    Contract::deploy(id)
        .use_code(wasm)
        .with_init_call("new", init)
        .expect("init args")
        .gas(NearGas::from_tgas(300))
        .with_signer(signer(account))
        .send_to(&network)
        .await
        .expect("deploy sent")
        .into_result()
        .expect("deploy and init succeed");
}

/// A devnet with the channel contract, a USDC-like token, a payer holding
/// 1,000 USDC and a payee; both registered with the token.
async fn world() -> World {
    let devnet = Devnet::start(DevnetConfig::default()).expect("devnet starts");
    let channels = devnet.create_account("channels", 50 * ONE_NEAR).unwrap();
    let usdc = devnet.create_account("usdc", 50 * ONE_NEAR).unwrap();
    let payer = devnet.create_account("payer", 100 * ONE_NEAR).unwrap();
    let payee = devnet.create_account("payee", 100 * ONE_NEAR).unwrap();
    let channel_wasm = Wasm::Channel.wasm().expect("channel contract wasm");
    let token_wasm = Wasm::Token.wasm().expect("token wasm");
    deploy(
        &devnet,
        &channels,
        channel_wasm,
        json!({ "owner_id": "channels.devnet", "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": ["usdc.devnet"] }),
    )
    .await;
    deploy(
        &devnet,
        &usdc,
        token_wasm,
        json!({ "owner_id": "payer.devnet", "total_supply": (1_000 * USDC).to_string(), "symbol": "USDC", "decimals": 6 }),
    )
    .await;
    let client = ChannelClient::new(&devnet.rpc_url(), "channels.devnet").unwrap();
    let token: AccountId = "usdc.devnet".parse().unwrap();
    let (payer, payee) = (near_account(&payer), near_account(&payee));
    // The channel contract and the payee must hold token storage to receive USDC.
    for who in ["channels.devnet", "payee.devnet"] {
        client.ft_storage_deposit(&payer, &token, &who.parse().unwrap(), STORAGE).await.expect("ft storage");
    }
    World { devnet, client, token, payer, payee }
}

fn voucher_key() -> Keypair {
    Keypair::from_seed(&[42; 32])
}

fn voucher(channel_id: u64, epoch: u64, cumulative: u128) -> SignedVoucher {
    let v = Voucher { contract: ProtoAccount::new("channels.devnet").unwrap(), channel_id, epoch, cumulative };
    SignedVoucher::sign(v, &voucher_key())
}

/// NEAR balances of the payer and payee, and the contract.
async fn near_balances(w: &World) -> [u128; 3] {
    let c = &w.client;
    [
        c.near_balance(&w.payer.id).await.unwrap(),
        c.near_balance(&w.payee.id).await.unwrap(),
        c.near_balance(c.contract()).await.unwrap(),
    ]
}

/// Adds `amount` to a running gas total and returns it.
fn gas(total: &mut u128, amount: u128) -> u128 {
    *total += amount;
    amount
}

fn burnt(o: &TxOutcome) -> u128 {
    assert!(o.tokens_burnt > 0, "every transaction burns gas");
    o.tokens_burnt
}

/// A refused call: returns the gas it burnt (its deposits came back).
fn expect_failure<T: std::fmt::Debug>(r: Result<T, NearError>, text: &str) -> u128 {
    match r {
        Err(NearError::Failed { reason, tokens_burnt, .. }) => {
            assert!(reason.contains(text), "expected {text:?} in {reason:?}");
            assert!(tokens_burnt > 0, "a refused call still burns gas");
            tokens_burnt
        }
        other => panic!("expected an on-chain failure containing {text:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_channel_life_through_json_rpc_to_the_yocto() {
    let w = world().await;
    let c = &w.client;
    let [payer0, payee0, contract0] = near_balances(&w).await;
    let (mut payer_gas, mut payee_gas) = (0u128, 0u128);

    // Open: 5 NEAR deposit plus 0.01 NEAR storage.
    let (id, o) =
        c.open_near(&w.payer, &w.payee.id, &voucher_key().public(), HOUR_NS, 5 * ONE_NEAR, STORAGE).await.unwrap();
    let ch = c.get_channel(id).await.unwrap().expect("channel exists");
    assert_eq!((ch.deposit, ch.claimed, ch.currency.clone()), (5 * ONE_NEAR, 0, Currency::Near));
    let mut payer = payer0 - 5 * ONE_NEAR - STORAGE - gas(&mut payer_gas, burnt(&o));
    let mut payee = payee0;
    let mut contract = contract0 + 5 * ONE_NEAR + STORAGE;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);

    // Claim 1 NEAR: the payout and its callback run as receipts.
    let o = c.claim(&w.payee, &voucher(id, ch.epoch, ONE_NEAR), u128::MAX).await.unwrap();
    payee = payee + ONE_NEAR - gas(&mut payee_gas, burnt(&o));
    contract -= ONE_NEAR;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);
    // The same voucher again pays nothing.
    payee -=
        gas(&mut payee_gas, expect_failure(c.claim(&w.payee, &voucher(id, ch.epoch, ONE_NEAR), u128::MAX).await, ""));
    assert_eq!(near_balances(&w).await, [payer, payee, contract], "a replayed voucher pays nothing");

    // Top up 2 NEAR.
    let o = c.top_up_near(&w.payer, id, 2 * ONE_NEAR).await.unwrap();
    payer -= 2 * ONE_NEAR + gas(&mut payer_gas, burnt(&o));
    contract += 2 * ONE_NEAR;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);
    assert_eq!(c.get_channel(id).await.unwrap().unwrap().deposit, 7 * ONE_NEAR);

    // The payer starts a unilateral close; no more top-ups.
    let (ends, o) = c.start_close(&w.payer, id).await.unwrap();
    payer -= gas(&mut payer_gas, burnt(&o));
    let ch = c.get_channel(id).await.unwrap().unwrap();
    assert_eq!(ends, ch.closing_since_ns.unwrap() + HOUR_NS);
    payer -= gas(&mut payer_gas, expect_failure(c.top_up_near(&w.payer, id, ONE_NEAR).await, "clos"));
    assert_eq!(near_balances(&w).await, [payer, payee, contract], "the refused top-up's deposit came back");

    // Inside the challenge period the payee claims its latest voucher (3 NEAR).
    let o = c.claim(&w.payee, &voucher(id, ch.epoch, 3 * ONE_NEAR), u128::MAX).await.unwrap();
    payee = payee + 2 * ONE_NEAR - gas(&mut payee_gas, burnt(&o));
    contract -= 2 * ONE_NEAR;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);

    // Finalize is refused until the period ends, then refunds 7 - 3 = 4 NEAR
    // and the channel's storage.
    payer -= gas(&mut payer_gas, expect_failure(c.finalize(&w.payer, id).await, ""));
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);
    w.devnet.fast_forward(3_601).unwrap();
    let o = c.finalize(&w.payer, id).await.unwrap();
    payer = payer + 4 * ONE_NEAR - gas(&mut payer_gas, burnt(&o));
    contract -= 4 * ONE_NEAR;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);
    assert_eq!(c.get_channel(id).await.unwrap(), None, "a finalized channel is deleted");
    // A late claim finds nothing.
    payee -= gas(
        &mut payee_gas,
        expect_failure(c.claim(&w.payee, &voucher(id, ch.epoch, 5 * ONE_NEAR), u128::MAX).await, ""),
    );
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);

    // The channel's storage was credited back; the payer's own record (its
    // storage balance) still holds a little, and withdrawing everything
    // returns all of the 0.01 NEAR it put in.
    let left = c.storage_balance_of(&w.payer.id).await.unwrap();
    assert!(left < STORAGE && left > STORAGE - ONE_NEAR / 1_000, "only the account record stays charged: {left}");
    let o = c.storage_withdraw(&w.payer, None).await.unwrap();
    payer = payer + STORAGE - 1 - gas(&mut payer_gas, burnt(&o));
    contract = contract - STORAGE + 1;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);
    assert_eq!(c.storage_balance_of(&w.payer.id).await.unwrap(), 0);
    // In sum: the payer paid the payee exactly the 3 NEAR it signed for, plus
    // gas; the contract keeps nothing but the 1 yoctoNEAR withdrawal fee.
    assert_eq!(contract, contract0 + 1);
    assert_eq!(payer0 - payer - payer_gas, 3 * ONE_NEAR + 1);
    assert_eq!(payee + payee_gas - payee0, 3 * ONE_NEAR);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nep141_channel_life_through_json_rpc_to_the_unit() {
    let w = world().await;
    let c = &w.client;
    let t = &w.token;
    let tokens = || async {
        [
            c.ft_balance_of(t, &w.payer.id).await.unwrap(),
            c.ft_balance_of(t, &w.payee.id).await.unwrap(),
            c.ft_balance_of(t, c.contract()).await.unwrap(),
        ]
    };
    assert_eq!(tokens().await, [1_000 * USDC, 0, 0]);
    let [payer0, payee0, contract0] = near_balances(&w).await;

    // Storage for the channel comes from the payer's storage balance.
    let o1 = c.storage_deposit(&w.payer, STORAGE).await.unwrap();
    let (id, o2) = c.open_token(&w.payer, t, &w.payee.id, &voucher_key().public(), HOUR_NS, 100 * USDC).await.unwrap();
    let ch = c.get_channel(id).await.unwrap().unwrap();
    assert_eq!((ch.deposit, ch.currency.clone()), (100 * USDC, Currency::parse(t.as_str()).unwrap()));
    assert_eq!(tokens().await, [900 * USDC, 0, 100 * USDC]);
    // ft_transfer_call attaches exactly 1 yoctoNEAR.
    let mut payer = payer0 - STORAGE - burnt(&o1) - 1 - burnt(&o2);
    let mut payee = payee0;
    let contract = contract0 + STORAGE;
    assert_eq!(near_balances(&w).await, [payer, payee, contract]);

    // Claim 30 USDC: ft_transfer with 1 yoctoNEAR from the contract, then the callback.
    let o = c.claim(&w.payee, &voucher(id, ch.epoch, 30 * USDC), u128::MAX).await.unwrap();
    payee -= burnt(&o);
    assert_eq!(tokens().await, [900 * USDC, 30 * USDC, 70 * USDC]);
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 1]);

    // Top up 50 USDC.
    let o = c.top_up_token(&w.payer, t, id, 50 * USDC).await.unwrap();
    payer -= 1 + burnt(&o);
    assert_eq!(tokens().await, [850 * USDC, 30 * USDC, 120 * USDC]);
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 1]);
    assert_eq!(c.get_channel(id).await.unwrap().unwrap().deposit, 150 * USDC);

    // Unilateral close; a token top-up is now refused and refunded by the token.
    let (_, o) = c.start_close(&w.payer, id).await.unwrap();
    payer -= burnt(&o);
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 1]);
    payer -= 1 + expect_failure(c.top_up_token(&w.payer, t, id, 10 * USDC).await, "refunded");
    assert_eq!(tokens().await, [850 * USDC, 30 * USDC, 120 * USDC], "the refused top-up was refunded");
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 1]);

    // The payee claims 60 in total inside the period.
    let o = c.claim(&w.payee, &voucher(id, ch.epoch, 60 * USDC), u128::MAX).await.unwrap();
    payee -= burnt(&o);
    assert_eq!(tokens().await, [850 * USDC, 60 * USDC, 90 * USDC]);
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 2]);

    // Finalize after the period: the payer gets 150 - 60 = 90 back.
    w.devnet.fast_forward(3_601).unwrap();
    let o = c.finalize(&w.payer, id).await.unwrap();
    payer -= burnt(&o);
    assert_eq!(tokens().await, [940 * USDC, 60 * USDC, 0]);
    assert_eq!(near_balances(&w).await, [payer, payee, contract - 3]);
    assert_eq!(c.get_channel(id).await.unwrap(), None);
}

/// An account with more channels than one `channels_of` page: the client
/// lists all of them (a brand's watcher must see a close starting on any),
/// and a token channel opened after them is found (its id is read back
/// from the listing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_past_the_first_page_are_listed_and_found() {
    use agentwire_agent::near::{CHANNELS_LISTED, CHANNELS_PAGE};
    assert_eq!(CHANNELS_PAGE, agentwire_channel::contract::MAX_PAGE, "the client pages as the contract does");
    assert_eq!(CHANNELS_LISTED, agentwire_channel::store::MAX_INDEXED);
    let w = world().await;
    let c = &w.client;
    let key = voucher_key().public();
    let mut opened = Vec::new();
    for _ in 0..CHANNELS_PAGE + 1 {
        let (id, _) = c.open_near(&w.payer, &w.payee.id, &key, HOUR_NS, ONE_NEAR / 1_000, STORAGE).await.unwrap();
        opened.push(id);
    }
    c.storage_deposit(&w.payer, STORAGE).await.unwrap();
    let (token_channel, _) = c.open_token(&w.payer, &w.token, &w.payee.id, &key, HOUR_NS, USDC).await.unwrap();
    assert_eq!(
        c.get_channel(token_channel).await.unwrap().unwrap().currency,
        Currency::parse(w.token.as_str()).unwrap()
    );
    opened.push(token_channel);
    for who in [&w.payer.id, &w.payee.id] {
        let listed: Vec<u64> = c.channels_of(who).await.unwrap().iter().map(|v| v.id).collect();
        assert_eq!(listed, opened, "every channel of {who}, in opening order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_answers_through_json_rpc() {
    let w = world().await;
    let c = &w.client;
    let agent = Keypair::from_seed(&[7; 32]).public();
    assert!(!c.is_endpoint(&w.payee.id, &agent).await.unwrap());
    c.storage_deposit(&w.payee, STORAGE).await.unwrap();
    c.register_endpoint(&w.payee, &agent).await.unwrap();
    assert!(c.is_endpoint(&w.payee.id, &agent).await.unwrap());
    assert!(!c.is_endpoint(&w.payer.id, &agent).await.unwrap(), "a key speaks only for the account that registered it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_devnet_is_ready_and_provisioning_again_changes_nothing() {
    use agentwire_agent::devnet::{provision, ONE_USDC};
    let devnet = Devnet::start(DevnetConfig::default()).unwrap();
    let ready = provision(&devnet, &["alice", "bob"], 10 * ONE_NEAR, 500 * ONE_USDC).await.unwrap();
    let c = ChannelClient::new(&ready.rpc_url, ready.channels.as_str()).unwrap();
    let config: serde_json::Value = c.view_on(c.contract(), "config", json!({})).await.unwrap();
    assert_eq!(config["tokens"], json!([ready.token]));
    for user in &ready.users {
        let id: AccountId = user.account_id.as_str().parse().unwrap();
        assert_eq!(c.ft_balance_of(&ready.token, &id).await.unwrap(), 500 * ONE_USDC);
        assert_eq!(c.near_balance(&id).await.unwrap(), 10 * ONE_NEAR);
    }
    let height = devnet.chain().state.head().height;
    let again = provision(&devnet, &["alice", "bob"], 10 * ONE_NEAR, 500 * ONE_USDC).await.unwrap();
    assert_eq!(devnet.chain().state.head().height, height, "nothing was sent the second time");
    assert_eq!(again.users.len(), 2);
}

/// A fresh devnet is a new chain: the contract deployed on the same account
/// draws another epoch from the chain's randomness, so a voucher for channel
/// 0 of the previous run (same contract account, same channel id, same payer
/// key) is refused by channel 0 of the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_from_a_previous_devnet_run_is_refused() {
    let first = world().await;
    let (id, _) = first
        .client
        .open_near(&first.payer, &first.payee.id, &voucher_key().public(), HOUR_NS, ONE_NEAR, STORAGE)
        .await
        .unwrap();
    let old_epoch = first.client.get_channel(id).await.unwrap().unwrap().epoch;
    let old = voucher(id, old_epoch, ONE_NEAR / 2);
    first.client.claim(&first.payee, &old, u128::MAX).await.expect("valid on its own chain");
    first.devnet.shutdown();

    let w = world().await;
    let c = &w.client;
    let (id2, _) =
        c.open_near(&w.payer, &w.payee.id, &voucher_key().public(), HOUR_NS, ONE_NEAR, STORAGE).await.unwrap();
    assert_eq!(id2, id, "the same channel id on the same contract account");
    let epoch = c.get_channel(id2).await.unwrap().unwrap().epoch;
    assert_ne!(epoch, old_epoch, "another chain, another epoch");
    let before = c.near_balance(&w.payee.id).await.unwrap();
    let burnt = expect_failure(c.claim(&w.payee, &old, u128::MAX).await, "voucher signature does not verify");
    assert_eq!(c.near_balance(&w.payee.id).await.unwrap(), before - burnt, "the old voucher paid nothing");
    assert_eq!(c.get_channel(id2).await.unwrap().unwrap().claimed, 0);
    c.claim(&w.payee, &voucher(id2, epoch, ONE_NEAR / 2), u128::MAX)
        .await
        .expect("a voucher for this chain's channel pays");
}
