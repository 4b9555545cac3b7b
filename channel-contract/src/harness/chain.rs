//! A small chain around the native contract: the contract's wasm entry
//! points (`entry::methods`) run on near-sdk's mocked blockchain, with the
//! contract's NEAR balance, storage usage and NEP-141 balances modelled here,
//! and the receipts the contract creates kept in a queue that the caller
//! delivers when it likes (so other calls run between a call and its
//! callback), each succeeding or failing as told.
//!
//! What is modelled as NEAR does it: a call's attached NEAR is the
//! contract's once the call succeeds and goes back to the caller if it fails
//! (state is rolled back); a transfer leaves the contract's balance when the
//! contract creates it and comes back (refund) if it fails; `ft_transfer`
//! carries 1 yoctoNEAR, kept by the token on success; a callback sees the
//! results of the receipts it waits on.

use std::collections::{BTreeMap, HashMap};

use near_sdk::mock::MockAction;
use near_sdk::test_utils::VMContextBuilder;
use near_sdk::{AccountId, NearToken, PromiseResult};

use crate::entry::methods;

/// The contract's account.
pub const CONTRACT: &str = "channels.test";
/// The owner given to `new`.
pub const OWNER: &str = "owner.test";
/// The allow-listed token.
pub const TOKEN: &str = "usdc.test";
/// A token that is not on the allow-list.
pub const FAKE_TOKEN: &str = "fake.test";
/// Storage byte cost.
pub const BYTE_COST: u128 = crate::contract::BYTE_COST;
/// Bytes of the contract account itself and its code, as the storage usage starts.
pub const CODE_BYTES: u64 = 100_000;
/// The contract's NEAR before `new`: its code's storage plus a spare surplus.
pub const INITIAL_BALANCE: u128 = CODE_BYTES as u128 * BYTE_COST + 10_000_000_000_000_000_000_000_000;

type Entry = fn();

/// Every exported method: name, entry point, whether it takes NEAR.
pub const METHODS: &[(&str, Entry, Payable)] = &[
    ("new", methods::new, Payable::No),
    ("storage_deposit", methods::storage_deposit, Payable::Yes),
    ("storage_balance_of", methods::storage_balance_of, Payable::No),
    ("storage_withdraw", methods::storage_withdraw, Payable::OneYocto),
    ("on_storage_withdraw", methods::on_storage_withdraw, Payable::No),
    ("open", methods::open, Payable::Yes),
    ("ft_on_transfer", methods::ft_on_transfer, Payable::No),
    ("top_up", methods::top_up, Payable::Yes),
    ("claim", methods::claim, Payable::No),
    ("close", methods::close, Payable::No),
    ("start_close", methods::start_close, Payable::No),
    ("finalize", methods::finalize, Payable::No),
    ("withdraw_owed", methods::withdraw_owed, Payable::No),
    ("on_payout", methods::on_payout, Payable::No),
    ("on_settle", methods::on_settle, Payable::No),
    ("register_endpoint", methods::register_endpoint, Payable::No),
    ("revoke_endpoint", methods::revoke_endpoint, Payable::No),
    ("is_endpoint", methods::is_endpoint, Payable::No),
    ("endpoint_keys", methods::endpoint_keys, Payable::No),
    ("get_channel", methods::get_channel, Payable::No),
    ("channels_of", methods::channels_of, Payable::No),
    ("config", methods::config, Payable::No),
    ("add_token", methods::add_token, Payable::No),
];

/// Whether a method takes attached NEAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payable {
    /// Any amount (or none).
    Yes,
    /// Exactly 1 yoctoNEAR (`storage_withdraw`).
    OneYocto,
    /// None: any attached NEAR must be refused.
    No,
}

/// A receipt the contract created and that has not run yet.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Unique id (creation order).
    pub id: u64,
    /// Who it runs on.
    pub receiver: String,
    /// What it does.
    pub kind: Kind,
    /// Receipts whose results it waits on (callbacks), in promise order.
    pub waits_on: Vec<u64>,
}

/// What a pending receipt does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A NEAR transfer of this many yoctoNEAR.
    Transfer(u128),
    /// `ft_transfer` of `amount` to `to` on the receiver token (1 yoctoNEAR attached).
    FtTransfer { to: String, amount: u128 },
    /// A callback on the contract.
    Callback { method: String, args: Vec<u8> },
}

/// The result of one call.
#[derive(Clone, Debug)]
pub struct CallResult {
    /// `Err(panic message)` if the call failed (nothing changed).
    pub outcome: Result<(), String>,
    /// Logs (on success).
    pub logs: Vec<String>,
    /// Receipts created (ids), on success.
    pub created: Vec<u64>,
}

/// The chain: the contract's state and balances, token ledgers, NEAR wallets.
pub struct Chain {
    /// The contract's raw storage.
    pub storage: HashMap<Vec<u8>, Vec<u8>>,
    /// The contract's storage usage, bytes (code included).
    pub storage_usage: u64,
    /// The contract's NEAR balance.
    pub balance: u128,
    /// NEAR wallets of the other accounts (the contract's is `balance`).
    pub wallets: BTreeMap<String, u128>,
    /// NEP-141 balances: token → account → amount (the contract included).
    pub tokens: BTreeMap<String, BTreeMap<String, u128>>,
    /// Accounts registered with each token (a transfer to anyone else fails).
    pub registered: BTreeMap<String, Vec<String>>,
    /// Receipts waiting to run.
    pub pending: Vec<Pending>,
    /// Results of receipts that ran, kept until every callback waiting on them has run.
    results: HashMap<u64, bool>,
    next_receipt: u64,
    /// Block height and timestamp (ns) of the next call.
    pub height: u64,
    /// Block timestamp, ns.
    pub now_ns: u64,
    /// Random seed of the next call.
    pub seed: [u8; 32],
    config: near_parameters::vm::Config,
    fees: near_parameters::RuntimeFeesConfig,
}

fn acc(s: &str) -> AccountId {
    s.parse().unwrap_or_else(|_| panic!("harness account {s:?}"))
}

/// The panic message of a failed contract call, without the mock's wrapping.
fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    let raw = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    match raw.split_once("panic_msg: \"") {
        Some((_, rest)) => rest.rsplit_once('"').map_or(rest, |(m, _)| m).replace("\\\"", "\""),
        None => raw,
    }
}

thread_local! {
    /// The mocked VM's configuration, built once per thread: near-sdk builds it
    /// from NEAR's parameter files, which takes far longer than a call.
    static CONFIG: (near_parameters::vm::Config, near_parameters::RuntimeFeesConfig) =
        (near_sdk::test_vm_config(), near_parameters::RuntimeFeesConfig::test());
    /// Set while a contract call runs: its panics are the contract refusing
    /// the call, not harness failures, and are not printed.
    static IN_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for contract refusals and
/// defers to the previous hook (libFuzzer's abort, the test harness) otherwise.
pub fn quiet_contract_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CALL.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
}

impl Chain {
    /// A chain with the contract deployed (not initialized) and these
    /// accounts holding `wallet` yoctoNEAR and `tokens` of the token each.
    pub fn new(accounts: &[&str], wallet: u128, tokens: u128, seed: [u8; 32]) -> Chain {
        quiet_contract_panics();
        let mut token = BTreeMap::new();
        let mut fake = BTreeMap::new();
        let mut wallets = BTreeMap::new();
        for a in accounts {
            wallets.insert((*a).to_owned(), wallet);
            token.insert((*a).to_owned(), tokens);
            fake.insert((*a).to_owned(), tokens);
        }
        let mut ledgers = BTreeMap::new();
        ledgers.insert(TOKEN.to_owned(), token);
        ledgers.insert(FAKE_TOKEN.to_owned(), fake);
        let mut holders: Vec<String> = accounts.iter().map(|a| (*a).to_owned()).collect();
        holders.push(CONTRACT.to_owned());
        let mut registered = BTreeMap::new();
        registered.insert(TOKEN.to_owned(), holders);
        Chain {
            storage: HashMap::new(),
            storage_usage: CODE_BYTES,
            balance: INITIAL_BALANCE,
            wallets,
            tokens: ledgers,
            registered,
            pending: Vec::new(),
            results: HashMap::new(),
            next_receipt: 0,
            height: 1_000,
            now_ns: 1_700_000_000_000_000_000,
            seed,
            config: CONFIG.with(|c| c.0.clone()),
            fees: CONFIG.with(|c| c.1.clone()),
        }
    }

    /// A token balance (0 if none).
    pub fn token_balance(&self, token: &str, who: &str) -> u128 {
        self.tokens.get(token).and_then(|t| t.get(who)).copied().unwrap_or(0)
    }

    /// Runs `method` with JSON `args` as `predecessor`, attaching `deposit`.
    /// A caller other than the contract pays the deposit from its wallet; a
    /// call whose deposit the caller cannot pay is refused before it runs.
    pub fn call(&mut self, method: &str, args: &str, predecessor: &str, deposit: u128) -> CallResult {
        self.run(method, args.as_bytes(), predecessor, deposit, Vec::new())
    }

    fn run(
        &mut self,
        method: &str,
        args: &[u8],
        predecessor: &str,
        deposit: u128,
        results: Vec<PromiseResult>,
    ) -> CallResult {
        let refused = |m: &str| CallResult { outcome: Err(m.to_owned()), logs: Vec::new(), created: Vec::new() };
        let Some((_, entry, _)) = METHODS.iter().find(|(m, _, _)| *m == method) else {
            return refused("MethodNotFound");
        };
        if predecessor != CONTRACT && deposit > 0 {
            match self.wallets.get_mut(predecessor) {
                Some(w) if *w >= deposit => *w -= deposit,
                _ => return refused("NotEnoughBalance"),
            }
        }
        let mut b = VMContextBuilder::new();
        b.current_account_id(acc(CONTRACT))
            .signer_account_id(acc(predecessor))
            .predecessor_account_id(acc(predecessor))
            .attached_deposit(NearToken::from_yoctonear(deposit))
            .account_balance(NearToken::from_yoctonear(self.balance)) // the VM adds the deposit
            .storage_usage(self.storage_usage)
            .block_height(self.height)
            .block_timestamp(self.now_ns)
            .random_seed(self.seed);
        let mut context = b.build();
        context.input = std::rc::Rc::from(args);
        near_sdk::env::set_blockchain_interface(near_sdk::MockedBlockchain::new(
            context,
            self.config.clone(),
            self.fees.clone(),
            results,
            self.storage.clone(),
            HashMap::new(),
            None,
        ));
        IN_CALL.with(|c| c.set(true));
        let ran = std::panic::catch_unwind(entry);
        IN_CALL.with(|c| c.set(false));
        self.height += 1;
        self.now_ns += 1_000_000_000;
        if let Err(e) = ran {
            if predecessor != CONTRACT && deposit > 0 {
                *self.wallets.entry(predecessor.to_owned()).or_default() += deposit;
            }
            return refused(&panic_text(e.as_ref()));
        }
        let (storage, receipts, logs) =
            near_sdk::mock::with_mocked_blockchain(|m| (m.take_storage(), m.created_receipts(), m.logs()));
        self.storage = storage;
        self.storage_usage = near_sdk::env::storage_usage();
        self.balance = near_sdk::env::account_balance().as_yoctonear();
        let created = self.schedule(receipts);
        CallResult { outcome: Ok(()), logs, created }
    }

    /// Queues the receipts a successful call created. The mock numbers a
    /// receipt by its position in the call's action log (its creation, then
    /// each action added to it), and dependencies use those numbers; the
    /// contract adds a receipt's actions right after creating it.
    fn schedule(&mut self, receipts: Vec<near_sdk::mock::Receipt>) -> Vec<u64> {
        let mut position = 0u64;
        let mut by_position: HashMap<u64, u64> = HashMap::new();
        let mut ids = Vec::new();
        for r in receipts {
            let id = self.next_receipt;
            self.next_receipt += 1;
            by_position.insert(position, id);
            position += 1 + r.actions.len() as u64;
            let kind = match r.actions.as_slice() {
                [MockAction::Transfer { deposit, .. }] => Kind::Transfer(deposit.as_yoctonear()),
                [MockAction::FunctionCallWeight { method_name, args, attached_deposit, .. }] => {
                    let method = String::from_utf8_lossy(method_name).into_owned();
                    if r.receiver_id.as_str() == CONTRACT {
                        assert_eq!(attached_deposit.as_yoctonear(), 0, "callbacks carry no NEAR");
                        Kind::Callback { method, args: args.clone() }
                    } else {
                        assert_eq!(method, "ft_transfer", "the contract calls only ft_transfer elsewhere");
                        assert_eq!(attached_deposit.as_yoctonear(), 1, "ft_transfer carries 1 yoctoNEAR");
                        let v: serde_json::Value = serde_json::from_slice(args).expect("ft_transfer args");
                        let to = v["receiver_id"].as_str().expect("receiver_id").to_owned();
                        let amount = v["amount"].as_str().and_then(|a| a.parse().ok()).expect("amount");
                        Kind::FtTransfer { to, amount }
                    }
                }
                other => panic!("the contract created an unexpected receipt: {other:?}"),
            };
            let waits_on = r
                .receipt_indices
                .iter()
                .map(|i| *by_position.get(i).unwrap_or_else(|| panic!("dependency on unknown receipt {i}")))
                .collect();
            self.pending.push(Pending { id, receiver: r.receiver_id.to_string(), kind, waits_on });
            ids.push(id);
        }
        ids
    }

    /// Receipts that can run now (every result they wait on is known).
    pub fn ready(&self) -> Vec<u64> {
        self.pending.iter().filter(|p| p.waits_on.iter().all(|w| self.results.contains_key(w))).map(|p| p.id).collect()
    }

    /// Runs pending receipt `id`. A transfer fails if `fail` is set or it
    /// cannot succeed (no such wallet, an unregistered token receiver); a
    /// callback runs with the results it waited on. Returns what ran.
    pub fn deliver(&mut self, id: u64, fail: bool) -> Delivered {
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else { return Delivered::NotReady };
        if !self.pending[pos].waits_on.iter().all(|w| self.results.contains_key(w)) {
            return Delivered::NotReady;
        }
        let p = self.pending.remove(pos);
        let delivered = match &p.kind {
            Kind::Transfer(amount) => {
                let ok = !fail && self.wallets.contains_key(&p.receiver);
                if ok {
                    *self.wallets.get_mut(&p.receiver).expect("wallet") += amount;
                } else {
                    self.balance += amount; // the refund
                }
                self.results.insert(p.id, ok);
                Delivered::Transfer { to: p.receiver.clone(), amount: *amount, ok }
            }
            Kind::FtTransfer { to, amount } => {
                let registered = self.registered.get(&p.receiver).is_some_and(|r| r.contains(to));
                let have = self.token_balance(&p.receiver, CONTRACT);
                let ok = !fail && registered && have >= *amount;
                if ok {
                    let ledger = self.tokens.entry(p.receiver.clone()).or_default();
                    *ledger.entry(CONTRACT.to_owned()).or_default() -= amount;
                    *ledger.entry(to.clone()).or_default() += amount;
                    *self.wallets.entry(p.receiver.clone()).or_default() += 1;
                } else {
                    self.balance += 1; // the attached yoctoNEAR comes back
                }
                self.results.insert(p.id, ok);
                Delivered::FtTransfer { token: p.receiver.clone(), to: to.clone(), amount: *amount, ok }
            }
            Kind::Callback { method, args } => {
                let results: Vec<PromiseResult> = p
                    .waits_on
                    .iter()
                    .map(
                        |w| if self.results[w] { PromiseResult::Successful(Vec::new()) } else { PromiseResult::Failed },
                    )
                    .collect();
                let oks: Vec<bool> = p.waits_on.iter().map(|w| self.results[w]).collect();
                let r = self.run(method, args, CONTRACT, 0, results);
                self.results.insert(p.id, r.outcome.is_ok());
                Delivered::Callback { method: method.clone(), args: args.clone(), results: oks, call: r }
            }
        };
        // Forget results nobody waits on any more.
        let waited: Vec<u64> = self.pending.iter().flat_map(|q| q.waits_on.iter().copied()).collect();
        self.results.retain(|k, _| waited.contains(k));
        delivered
    }
}

/// What [`Chain::deliver`] ran.
#[derive(Clone, Debug)]
pub enum Delivered {
    /// The receipt is unknown or waits on another.
    NotReady,
    /// A NEAR transfer.
    Transfer { to: String, amount: u128, ok: bool },
    /// An `ft_transfer`.
    FtTransfer { token: String, to: String, amount: u128, ok: bool },
    /// A callback (with the results it saw).
    Callback { method: String, args: Vec<u8>, results: Vec<bool>, call: CallResult },
}
