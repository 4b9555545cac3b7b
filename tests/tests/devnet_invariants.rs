//! A sample of the invariant harness's sequences replayed through the
//! compiled contract on the devnet (NEAR's VM, real receipts, JSON-RPC with
//! `near-api`): every named sequence of the corpus and a few random ones.
//!
//! Each sequence runs first on the native contract (the harness checks every
//! money invariant after every step, every receipt delivered at once, as the
//! devnet does), recording what it did; the devnet then does the same, and
//! after every step the contract's state on the devnet must equal the
//! native one — every record byte for byte but for block timestamps, the
//! storage NEAR's VM counts, the contract's NEAR and token balances — and
//! every call must succeed or fail as it did natively, with the same message.

use std::collections::{BTreeMap, HashMap};

use agentwire_agent::near::{ChannelClient, NearAccount, NearError};
use agentwire_channel::harness::audit::{audit, Audit};
use agentwire_channel::harness::chain::{CODE_BYTES, CONTRACT, FAKE_TOKEN, OWNER, TOKEN};
use agentwire_channel::harness::scenario::{
    decode, Delivery, Scenario, Snapshot, Step, PEOPLE, TOKENS, UNREGISTERED, WALLET,
};
use agentwire_channel::harness::{named, random_sequences};
use agentwire_devnet::contracts::Contract as Wasm;
use agentwire_devnet::{DevAccount, Devnet, DevnetConfig, ONE_NEAR};
use near_api::{AccountId, Contract, NearGas, Signer};
use serde_json::{json, Value};

const HOUR_NS: u64 = 3_600_000_000_000;
const GAS_TGAS: u64 = 300;

struct Replay {
    devnet: Devnet,
    client: ChannelClient,
    accounts: BTreeMap<String, NearAccount>,
    /// The contract's NEAR balance and storage usage beyond its records, at the start.
    balance0: u128,
    native_balance0: u128,
    usage_beyond_records: u64,
}

fn signer(a: &DevAccount) -> std::sync::Arc<Signer> {
    Signer::from_secret_key(a.secret_key.to_string().parse().expect("key")).expect("signer")
}

async fn deploy(devnet: &Devnet, account: &DevAccount, wasm: Vec<u8>, init: Value) {
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

fn near_account(a: &DevAccount) -> NearAccount {
    NearAccount::new(a.account_id.as_str(), &a.secret_key.to_string()).expect("dev account")
}

/// A devnet with the contract on `channels.test`, the allow-listed token on
/// `usdc.test`, a token off the list on `fake.test`, and the harness's
/// accounts holding what they hold natively (and NEAR for gas).
async fn devnet() -> (Replay, u64) {
    let devnet = Devnet::start(DevnetConfig::default()).expect("devnet starts");
    let mut accounts = BTreeMap::new();
    for who in PEOPLE {
        let a = devnet.create_account(who, WALLET + 100 * ONE_NEAR).unwrap();
        accounts.insert(who.to_owned(), near_account(&a));
    }
    let channels = devnet.create_account(CONTRACT, 100 * ONE_NEAR).unwrap();
    deploy(
        &devnet,
        &channels,
        Wasm::Channel.wasm().expect("channel wasm"),
        json!({ "owner_id": OWNER, "min_challenge_period_ns": HOUR_NS.to_string(), "tokens": [TOKEN] }),
    )
    .await;
    let client = ChannelClient::new(&devnet.rpc_url(), CONTRACT).unwrap();
    for token in [TOKEN, FAKE_TOKEN] {
        let t = devnet.create_account(token, 100 * ONE_NEAR).unwrap();
        deploy(
            &devnet,
            &t,
            Wasm::Token.wasm().expect("token wasm"),
            json!({ "owner_id": token, "total_supply": (100 * TOKENS).to_string(), "symbol": "T", "decimals": 6 }),
        )
        .await;
        let issuer = near_account(&t);
        let token_id: AccountId = token.parse().unwrap();
        for who in PEOPLE.iter().copied().chain([CONTRACT]) {
            if token == TOKEN && who == UNREGISTERED {
                continue;
            }
            client
                .ft_storage_deposit(&issuer, &token_id, &who.parse().unwrap(), ONE_NEAR / 100)
                .await
                .expect("register");
            if who != CONTRACT {
                let args = json!({ "receiver_id": who, "amount": TOKENS.to_string() });
                client.call_on(&token_id, &issuer, "ft_transfer", args, 1, 30).await.expect("fund");
            }
        }
    }
    let config: Value = client.view_on(client.contract(), "config", json!({})).await.unwrap();
    let epoch: u64 = config["epoch"].as_str().unwrap().parse().unwrap();
    let balance0 = devnet.balance(CONTRACT);
    let replay = Replay { devnet, client, accounts, balance0, native_balance0: 0, usage_beyond_records: 0 };
    (replay, epoch)
}

impl Replay {
    fn storage(&self) -> (HashMap<Vec<u8>, Vec<u8>>, u64) {
        let chain = self.devnet.chain();
        let id: near_primitives::types::AccountId = CONTRACT.parse().unwrap();
        let account = &chain.state.accounts[&id];
        (account.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), account.storage_usage)
    }

    async fn call(&self, method: &str, args: &str, who: &str, deposit: u128) -> Result<(), String> {
        let args: Value = serde_json::from_str(args).expect("args are JSON");
        let c = &self.client;
        match c.call_on(c.contract(), &self.accounts[who], method, args, deposit, GAS_TGAS).await {
            Ok(_) => Ok(()),
            Err(NearError::Failed { reason, .. }) => Err(reason),
            Err(e) => panic!("{method} by {who}: {e}"),
        }
    }

    /// `ft_transfer_call`; whether the contract kept the tokens.
    async fn token_transfer(&self, token: &str, sender: &str, amount: u128, msg: &str) -> bool {
        let c = &self.client;
        let args = json!({ "receiver_id": CONTRACT, "amount": amount.to_string(), "msg": msg });
        let token: AccountId = token.parse().unwrap();
        match c.call_on(&token, &self.accounts[sender], "ft_transfer_call", args, 1, GAS_TGAS).await {
            Ok(o) => o.value == json!(amount.to_string()),
            Err(e) => panic!("ft_transfer_call by {sender}: {e}"),
        }
    }

    async fn token_balance(&self) -> u128 {
        let c = &self.client;
        c.ft_balance_of(&TOKEN.parse().unwrap(), &CONTRACT.parse().unwrap()).await.unwrap()
    }

    /// The devnet's contract against the native snapshot.
    async fn compare(&mut self, native: &Snapshot, step: usize, name: &str) {
        let (storage, usage) = self.storage();
        let native_storage: HashMap<Vec<u8>, Vec<u8>> = native.storage.clone().into_iter().collect();
        let here = format!("{name}, step {step}");
        let tokens_bytes = |s: &HashMap<Vec<u8>, Vec<u8>>| s.get(&b"t"[..]).map_or(0, |v| v.len() as u64);
        let (a, n) = (
            audit(&storage, tokens_bytes(&storage), &BTreeMap::new()),
            audit(&native_storage, tokens_bytes(&native_storage), &BTreeMap::new()),
        );
        let (a, n): (Audit, Audit) =
            (a.unwrap_or_else(|e| panic!("{here}: devnet state: {e}")), n.expect("native state"));
        assert_eq!(a.accounts, n.accounts, "{here}: account records");
        assert_eq!(a.endpoints, n.endpoints, "{here}: endpoint keys");
        assert_eq!((a.epoch, a.next_channel_id, &a.tokens), (n.epoch, n.next_channel_id, &n.tokens), "{here}: config");
        assert_eq!(a.owned, n.owned, "{here}: who pays for which bytes");
        let untimed = |x: &Audit| {
            x.channels
                .iter()
                .map(|(id, c)| {
                    let mut c = c.clone();
                    c.closing_since_ns = u64::from(c.closing_since_ns != 0);
                    (*id, c)
                })
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(untimed(&a), untimed(&n), "{here}: channels (block timestamps aside)");
        // NEAR's VM counts the bytes the harness counts.
        if step == 0 {
            self.usage_beyond_records = usage - a.total_bytes;
            self.native_balance0 = native.balance;
        }
        assert_eq!(usage - a.total_bytes, self.usage_beyond_records, "{here}: the VM's storage usage");
        assert_eq!(native.storage_usage - n.total_bytes, CODE_BYTES);
        assert_eq!(
            self.devnet.balance(CONTRACT) as i128 - self.balance0 as i128,
            native.balance as i128 - self.native_balance0 as i128,
            "{here}: the contract's NEAR moved as natively"
        );
        assert_eq!(self.token_balance().await, native.token_balance, "{here}: the contract's tokens");
    }
}

/// Runs one sequence natively, then on the devnet, comparing as it goes.
async fn replay(name: &str, data: &[u8]) {
    let (_, ops) = decode(data);
    let (mut r, epoch) = devnet().await;
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&epoch.to_le_bytes());
    let native = Scenario::run_recorded(seed, &ops, Delivery::Immediate);
    let mut checkpoints = 0;
    for step in native.transcript.as_ref().expect("recorded") {
        match step {
            Step::Call { method, args, who, deposit, outcome } => {
                if outcome.as_ref().err().is_some_and(|e| e == "NotEnoughBalance") {
                    continue; // refused before reaching the contract
                }
                let got = r.call(method, args, who, *deposit).await;
                match (outcome, &got) {
                    (Ok(()), Ok(())) => {}
                    (Err(want), Err(reason)) => {
                        // Block timestamps differ between the chains; the rest of the message does not.
                        let want = want.trim_end_matches(|c: char| c.is_ascii_digit());
                        assert!(reason.contains(want), "{name}: {method} by {who}: {reason:?}, natively {want:?}")
                    }
                    _ => panic!(
                        "{name}: {method} {args} by {who} with {deposit}: {got:?} on the devnet, natively {outcome:?}"
                    ),
                }
            }
            Step::TokenTransfer { token, sender, amount, msg, accepted } => {
                let got = r.token_transfer(token, sender, *amount, msg).await;
                assert_eq!(got, *accepted, "{name}: ft_transfer_call of {amount} {token} by {sender} with {msg}");
            }
            Step::Advance(ns) => {
                r.devnet.fast_forward(ns / 1_000_000_000).unwrap();
            }
            Step::Register { token, who } => {
                let token: AccountId = token.parse().unwrap();
                let a = &r.accounts[who];
                r.client.ft_storage_deposit(a, &token, &a.id, ONE_NEAR / 100).await.expect("register");
            }
            Step::Checkpoint(snapshot) => {
                r.compare(snapshot, checkpoints, name).await;
                checkpoints += 1;
            }
        }
    }
    assert!(checkpoints > 1, "{name}: nothing compared");
    eprintln!("{name}: {checkpoints} checkpoints equal on the devnet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_sequences_run_the_same_on_the_compiled_contract() {
    for (name, data) in named::files() {
        replay(name, &data).await;
    }
    for (i, data) in random_sequences(7, 3, 300).iter().enumerate() {
        replay(&format!("random-{i}"), data).await;
    }
}
