//! Storage accounting of the channel contract, attacked through the devnet's
//! JSON-RPC with a standard NEAR client (`near-api`), to the yoctoNEAR: the
//! four leaks an outside audit found (issue 11) as named regression tests,
//! and the storage methods with bad amounts, for other and for missing
//! accounts, twice in one block.
//!
//! Every test ends with the same check: each account got back exactly what it
//! put into storage, less only the 1 yoctoNEAR each `storage_withdraw` leaves
//! with the contract, and the contract holds exactly what it held before plus
//! those yoctoNEAR (spec/contract.md §6.5).

use agentwire_agent::near::{ChannelClient, NearAccount, NearError, TxOutcome};
use agentwire_devnet::contracts::Contract as Wasm;
use agentwire_devnet::{DevAccount, Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::identity::Keypair;
use near_api::types::transaction::actions::{Action, FunctionCallAction};
use near_api::types::transaction::result::TransactionResultError;
use near_api::{AccountId, Contract, NearGas, NearToken, NetworkConfig, Signer, Transaction};
use serde_json::{json, Value};

const HOUR_NS: u64 = 3_600_000_000_000;
/// `MIN_STORAGE_DEPOSIT`: 0.01 NEAR.
const MIN: u128 = ONE_NEAR / 100;

struct World {
    devnet: Devnet,
    client: ChannelClient,
}

fn near_account(a: &DevAccount) -> NearAccount {
    NearAccount::new(a.account_id.as_str(), &a.secret_key.to_string()).expect("dev account")
}

fn signer(a: &DevAccount) -> std::sync::Arc<Signer> {
    Signer::from_secret_key(a.secret_key.to_string().parse().expect("key")).expect("signer")
}

fn network(devnet: &Devnet) -> NetworkConfig {
    NetworkConfig::from_rpc_url("devnet", devnet.rpc_url().parse().unwrap())
}

/// A devnet with the channel contract on `channels.devnet`.
async fn world() -> World {
    let devnet = Devnet::start(DevnetConfig::default()).expect("devnet starts");
    let channels = devnet.create_account("channels", 50 * ONE_NEAR).unwrap();
    let id: AccountId = channels.account_id.as_str().parse().unwrap();
    Contract::deploy(id)
        .use_code(Wasm::Channel.wasm().expect("channel contract wasm"))
        .with_init_call(
            "new",
            json!({ "owner_id": "channels.devnet", "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": [] }),
        )
        .expect("init args")
        .gas(NearGas::from_tgas(300))
        .with_signer(signer(&channels))
        .send_to(&network(&devnet))
        .await
        .expect("deploy sent")
        .into_result()
        .expect("deploy and init succeed");
    let client = ChannelClient::new(&devnet.rpc_url(), "channels.devnet").unwrap();
    World { devnet, client }
}

impl World {
    fn user(&self, name: &str) -> NearAccount {
        near_account(&self.devnet.create_account(name, 10 * ONE_NEAR).unwrap())
    }

    fn near(&self, account: &str) -> u128 {
        self.devnet.balance(account)
    }

    fn contract(&self) -> u128 {
        self.near("channels.devnet")
    }
}

/// What a transaction of several function calls did.
struct Batch {
    ok: Result<(), String>,
    tokens_burnt: u128,
}

/// One transaction from `from` to the contract with the function calls
/// `calls` = (method, args, deposit): they run in one receipt, in one block.
async fn batch(w: &World, from: &NearAccount, calls: &[(&str, Value, u128)]) -> Batch {
    let actions = calls
        .iter()
        .map(|(method, args, deposit)| {
            Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: (*method).to_owned(),
                args: args.to_string().into_bytes(),
                gas: NearGas::from_tgas(290 / calls.len() as u64),
                deposit: NearToken::from_yoctonear(*deposit),
            }))
        })
        .collect();
    let result = Transaction::construct(from.id.clone(), "channels.devnet".parse().unwrap())
        .add_actions(actions)
        .with_signer(from.signer())
        .send_to(&network(&w.devnet))
        .await
        .expect("sent");
    match result.into_result() {
        Ok(s) => Batch { ok: Ok(()), tokens_burnt: s.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum() },
        Err(TransactionResultError::Failure(f)) => Batch {
            ok: Err(f.to_string()),
            tokens_burnt: f.outcomes().iter().map(|o| o.tokens_burnt.as_yoctonear()).sum(),
        },
        Err(other) => panic!("transaction did not finish: {other}"),
    }
}

fn burnt(o: &TxOutcome) -> u128 {
    assert!(o.tokens_burnt > 0, "every transaction burns gas");
    o.tokens_burnt
}

/// A refused call: returns the gas it burnt (its deposits came back).
fn refused<T: std::fmt::Debug>(r: Result<T, NearError>, text: &str) -> u128 {
    match r {
        Err(NearError::Failed { reason, tokens_burnt, .. }) => {
            assert!(reason.contains(text), "expected {text:?} in {reason:?}");
            assert!(tokens_burnt > 0, "a refused call still burns gas");
            tokens_burnt
        }
        other => panic!("expected an on-chain failure containing {text:?}, got {other:?}"),
    }
}

fn voucher_key() -> Keypair {
    Keypair::from_seed(&[42; 32])
}

/// Tracks one account's NEAR to the yoctoNEAR: what it should hold after
/// gas, deposits and refunds.
struct Wallet {
    id: String,
    expected: u128,
}

impl Wallet {
    fn of(w: &World, a: &NearAccount) -> Wallet {
        Wallet { id: a.id.to_string(), expected: w.near(a.id.as_str()) }
    }

    fn check(&self, w: &World, what: &str) {
        assert_eq!(w.near(&self.id), self.expected, "{}: {what}", self.id);
    }
}

/// Leak 1 (the drain): `storage_deposit` created an account record nobody paid
/// for, and a whole `storage_withdraw` deleted it and paid its bytes out on
/// top of the deposit. Ten cycles in one transaction took NEAR out of the
/// contract. Now the record is paid from the deposit that creates it, so ten
/// cycles return exactly what went in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_deposit_and_withdraw_cycles_take_nothing_out() {
    let w = world().await;
    let mallory = w.user("mallory");
    let mut wallet = Wallet::of(&w, &mallory);
    let contract0 = w.contract();
    let mut calls = Vec::new();
    for _ in 0..10 {
        calls.push(("storage_deposit", json!({}), MIN));
        calls.push(("storage_withdraw", json!({}), 1));
    }
    let b = batch(&w, &mallory, &calls).await;
    assert_eq!(b.ok, Ok(()));
    wallet.expected -= b.tokens_burnt + 10;
    wallet.check(&w, "ten deposit/withdraw cycles return the deposits, less 1 yoctoNEAR per withdrawal");
    assert_eq!(w.contract(), contract0 + 10, "the contract keeps only the ten 1-yoctoNEAR fees");
    assert_eq!(w.client.storage_balance_of(&mallory.id).await.unwrap(), 0);
}

/// Leak 2: two payers open channels to the same new payee. The first paid
/// for the payee's account record; whichever closed last was credited it.
/// Now the record's payer is remembered and credited when it is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_payers_to_one_new_payee_each_get_back_exactly_their_storage() {
    let w = world().await;
    let c = &w.client;
    let (first, second, payee) = (w.user("first"), w.user("second"), w.user("payee"));
    let key = voucher_key().public();
    let mut wallets = [Wallet::of(&w, &first), Wallet::of(&w, &second)];
    let contract0 = w.contract();
    let mut before = [0u128; 2];
    for (i, payer) in [&first, &second].into_iter().enumerate() {
        let o = c.storage_deposit(payer, MIN).await.unwrap();
        wallets[i].expected -= MIN + burnt(&o);
        before[i] = c.storage_balance_of(&payer.id).await.unwrap();
    }
    let mut ids = Vec::new();
    for (i, payer) in [&first, &second].into_iter().enumerate() {
        let (id, o) = c.open_near(payer, &payee.id, &key, HOUR_NS, ONE_NEAR, 0).await.unwrap();
        wallets[i].expected -= ONE_NEAR + burnt(&o);
        ids.push(id);
    }
    // The payee closes the first payer's channel first, then the second's.
    for (i, id) in ids.iter().enumerate() {
        c.close(&payee, *id, None).await.unwrap();
        wallets[i].expected += ONE_NEAR;
    }
    for (i, payer) in [&first, &second].into_iter().enumerate() {
        assert_eq!(c.storage_balance_of(&payer.id).await.unwrap(), before[i], "{}: all its storage back", payer.id);
        wallets[i].check(&w, "deposit refunded");
    }
    for (i, payer) in [&first, &second].into_iter().enumerate() {
        let o = c.storage_withdraw(payer, None).await.unwrap();
        wallets[i].expected += MIN - 1 - burnt(&o);
        wallets[i].check(&w, "everything it put into storage came back");
    }
    assert_eq!(w.contract(), contract0 + 2);
}

/// Leak 3: an account whose storage balance reached exactly 0 lost its record,
/// and revoking an endpoint key afterwards credited nobody for the key's
/// bytes. Now an account's record stays while it pays for anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_after_the_balance_reached_zero_credits_its_storage() {
    let w = world().await;
    let c = &w.client;
    let brand = w.user("brand");
    let mut wallet = Wallet::of(&w, &brand);
    let contract0 = w.contract();
    let o = c.storage_deposit(&brand, MIN).await.unwrap();
    wallet.expected -= MIN + burnt(&o);
    let key = Keypair::from_seed(&[3; 32]).public();
    let o = c.register_endpoint(&brand, &key).await.unwrap();
    wallet.expected -= burnt(&o);
    let left = c.storage_balance_of(&brand.id).await.unwrap();
    let o = c.storage_withdraw(&brand, None).await.unwrap();
    wallet.expected += left - 1 - burnt(&o);
    wallet.check(&w, "withdrew what the key did not use");
    assert_eq!(c.storage_balance_of(&brand.id).await.unwrap(), 0);
    let o = c
        .call_on(
            c.contract(),
            &brand,
            "revoke_endpoint",
            json!({ "key": key.to_bytes().map(|b| format!("{b:02x}")).concat() }),
            0,
            30,
        )
        .await
        .unwrap();
    wallet.expected -= burnt(&o);
    assert!(c.storage_balance_of(&brand.id).await.unwrap() > 0, "the key's storage was credited");
    let o = c.storage_withdraw(&brand, None).await.unwrap();
    wallet.expected += MIN - left - 1 - burnt(&o);
    wallet.check(&w, "everything it put into storage came back");
    assert_eq!(w.contract(), contract0 + 2);
}

/// Every method that takes no deposit, views included.
const NO_DEPOSIT: &[(&str, &str)] = &[
    ("get_channel", r#"{"channel_id":"0"}"#),
    ("channels_of", r#"{"account_id":"payee.devnet"}"#),
    ("config", "{}"),
    ("storage_balance_of", r#"{"account_id":"payee.devnet"}"#),
    ("is_endpoint", r#"{"account_id":"payee.devnet","key":"00"}"#),
    ("endpoint_keys", r#"{"account_id":"payee.devnet"}"#),
    ("claim", r#"{"channel_id":"0","cumulative":"1","signature":"00"}"#),
    ("close", r#"{"channel_id":"0"}"#),
    ("start_close", r#"{"channel_id":"0"}"#),
    ("finalize", r#"{"channel_id":"0"}"#),
    ("withdraw_owed", r#"{"channel_id":"0"}"#),
    ("register_endpoint", r#"{"key":"00"}"#),
    ("revoke_endpoint", r#"{"key":"00"}"#),
    ("add_token", r#"{"token":"usdc.devnet"}"#),
    ("ft_on_transfer", r#"{"sender_id":"payee.devnet","amount":"1","msg":""}"#),
];

/// Leak 4: NEAR attached to a method that takes no deposit (a view called in
/// a transaction, for example) was kept and recorded for no one. Now every
/// such method refuses it, and NEAR's runtime refunds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_attached_to_a_method_without_deposit_is_kept() {
    let w = world().await;
    let c = &w.client;
    let (payer, payee) = (w.user("payer"), w.user("payee"));
    c.open_near(&payer, &payee.id, &voucher_key().public(), HOUR_NS, ONE_NEAR, MIN).await.unwrap();
    let mut wallet = Wallet::of(&w, &payee);
    let contract0 = w.contract();
    for (method, args) in NO_DEPOSIT {
        for deposit in [1, ONE_NEAR] {
            let args: Value = serde_json::from_str(args).unwrap();
            let r = c.call_on(c.contract(), &payee, method, args, deposit, 30).await;
            wallet.expected -= refused(r, &format!("Method {method} doesn't accept deposit"));
            wallet.check(&w, &format!("{method} with {deposit} yoctoNEAR attached: refunded"));
            assert_eq!(w.contract(), contract0, "{method}: the contract kept nothing");
        }
    }
    // The contract's own callbacks, called from outside with NEAR attached:
    // refused as private, the NEAR refunded.
    for (method, args) in [
        ("on_payout", r#"{"channel_id":"0","to_payee":true,"amount":"1"}"#),
        ("on_settle", r#"{"channel_id":"0","payout":"1","refund":"1"}"#),
        ("on_storage_withdraw", r#"{"account":"payee.devnet","amount":"1","kept":true}"#),
    ] {
        let r = c.call_on(c.contract(), &payee, method, serde_json::from_str(args).unwrap(), ONE_NEAR, 30).await;
        wallet.expected -= refused(r, &format!("Method {method} is private"));
        wallet.check(&w, &format!("{method} called from outside: refunded"));
        assert_eq!(w.contract(), contract0);
    }
}

/// The storage methods with bad amounts, for another account and for one
/// that does not exist, and twice in one block (one transaction's receipt):
/// each works with exact accounting or is refused with the deposit refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_methods_with_bad_amounts_and_twice_in_one_block() {
    let w = world().await;
    let c = &w.client;
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    let mut wallet = Wallet::of(&w, &alice);
    let contract0 = w.contract();
    // 0, 1 yoctoNEAR and just under the minimum: refused, refunded.
    for amount in [0, 1, MIN - 1] {
        wallet.expected -= refused(c.storage_deposit(&alice, amount).await, "attach at least 0.01 NEAR");
        wallet.check(&w, "a refused deposit is refunded");
    }
    // Twice in one block, for itself: both count.
    let b = batch(&w, &alice, &[("storage_deposit", json!({}), MIN), ("storage_deposit", json!({}), MIN)]).await;
    assert_eq!(b.ok, Ok(()));
    wallet.expected -= 2 * MIN + b.tokens_burnt;
    wallet.check(&w, "two deposits");
    let balance = c.storage_balance_of(&alice.id).await.unwrap();
    assert_eq!(balance, 2 * MIN - (62 + alice.id.len() as u128) * 10_000_000_000_000_000_000, "less its record");
    // For another account and for one that does not exist, in one block.
    let b = batch(
        &w,
        &alice,
        &[
            ("storage_deposit", json!({ "account_id": "bob.devnet" }), MIN),
            ("storage_deposit", json!({ "account_id": "nobody.devnet" }), MIN),
        ],
    )
    .await;
    assert_eq!(b.ok, Ok(()));
    wallet.expected -= 2 * MIN + b.tokens_burnt;
    wallet.check(&w, "deposits for others");
    assert!(
        c.storage_balance_of(&"nobody.devnet".parse().unwrap()).await.unwrap() > 0,
        "kept for an account that does not exist"
    );
    // Withdrawing everything twice in one block: the second finds nothing,
    // so the whole receipt fails and both yoctoNEAR come back.
    let b = batch(&w, &alice, &[("storage_withdraw", json!({}), 1), ("storage_withdraw", json!({}), 1)]).await;
    assert!(b.ok.as_ref().is_err_and(|e| e.contains("not that much unused storage balance")), "{:?}", b.ok);
    wallet.expected -= b.tokens_burnt;
    wallet.check(&w, "a failed receipt changes nothing");
    assert_eq!(c.storage_balance_of(&alice.id).await.unwrap(), balance);
    // More than the balance, then exactly all of it.
    let r = c.storage_withdraw(&alice, Some(balance + 1)).await;
    wallet.expected -= refused(r, "not that much unused storage balance");
    let o = c.storage_withdraw(&alice, Some(balance)).await.unwrap();
    wallet.expected += 2 * MIN - 1 - burnt(&o);
    wallet.check(&w, "exactly what it deposited for itself, its record's storage included");
    // Bob withdraws what alice gave him.
    let mut bob_wallet = Wallet::of(&w, &bob);
    let o = c.storage_withdraw(&bob, None).await.unwrap();
    bob_wallet.expected += MIN - 1 - burnt(&o);
    bob_wallet.check(&w, "a deposit made for it");
    assert_eq!(w.contract(), contract0 + MIN + 2, "only nobody's deposit and the two fees stay");
}
