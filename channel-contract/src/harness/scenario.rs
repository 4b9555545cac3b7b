//! Random sequences of every contract method, by honest accounts and an
//! attacker, with payouts that fail and callbacks that run late, and the
//! whole-contract money invariants checked after every step (the spirit of
//! LDK's `chanmon_consistency`).
//!
//! After every step:
//! - the stored bytes add up: each has exactly one payer under the rules of
//!   spec/contract.md §6.5 ([`super::audit`]);
//! - each account's storage money is exact: what it put in, less what it
//!   took out and what is on its way out, equals its storage balance plus the
//!   bytes it pays for;
//! - the contract is solvent: its NEAR balance covers its storage, every
//!   storage balance and everything NEAR channels hold, and its balance in
//!   each token covers what that token's channels hold; at rest (no receipt
//!   pending) both are exact, the contract's spare NEAR moving only by the
//!   1-yoctoNEAR fees it keeps and pays;
//! - per channel: the deposit is what its payer paid in; what the payee was
//!   paid, is being paid and is owed is the claimed total, never above the
//!   highest voucher its payer signed; nothing is paid twice;
//! - calls that must be refused (deposits on methods that take none, calls
//!   of callbacks from outside, bad vouchers) are.
//!
//! At the end everything is settled, withdrawn and delivered, and every
//! account must have got back exactly its own money plus what valid vouchers
//! paid it.

use std::collections::BTreeMap;

use agentwire_protocol::identity::Keypair;
use agentwire_protocol::voucher::Voucher;

use super::audit::{audit, Audit};
use super::chain::{
    Chain, Delivered, Kind, Payable, BYTE_COST, CODE_BYTES, CONTRACT, FAKE_TOKEN, METHODS, OWNER, TOKEN,
};
pub use super::ops::{decode, encode, Op, GHOST, PEOPLE, TOKENS, UNREGISTERED, WALLET};
use super::ops::{endpoint_key, person, HOUR_NS, NEAR, NEAR_AMOUNTS, TOKEN_AMOUNTS};

mod invariants;

/// How receipts are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// When the sequence says, failing when it says (other calls run in between).
    Interleaved,
    /// Right after each call, failing only as they would on a real chain
    /// (token payouts to an unregistered account): what the devnet does.
    Immediate,
}

/// One thing a sequence did to the chain, as another chain can replay it
/// (the devnet replays samples through the compiled wasm).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A call by an account, with its outcome (`Err` holds the panic message;
    /// the caller not having the NEAR is `NotEnoughBalance`).
    Call { method: String, args: String, who: String, deposit: u128, outcome: Result<(), String> },
    /// `ft_transfer_call` of `amount` of `token` from `sender` to the
    /// contract; `accepted` if the contract kept the tokens.
    TokenTransfer { token: String, sender: String, amount: u128, msg: String, accepted: bool },
    /// Time passes (ns).
    Advance(u64),
    /// `who` registers with `token`.
    Register { token: String, who: String },
    /// The end of an op: the contract's state then (another chain should
    /// hold the same, but for block timestamps).
    Checkpoint(Box<Snapshot>),
}

/// The contract's state and balances at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Raw storage.
    pub storage: BTreeMap<Vec<u8>, Vec<u8>>,
    /// NEAR balance.
    pub balance: u128,
    /// Storage usage, bytes (code included).
    pub storage_usage: u64,
    /// Balance in the allow-listed token.
    pub token_balance: u128,
}

/// What the harness knows of a channel, independently of the contract.
#[derive(Clone, Debug, Default)]
struct ChannelModel {
    payer: String,
    payee: String,
    token: Option<String>,
    /// Everything the payer paid into it.
    funded: u128,
    /// Totals its payer signed, in signing order.
    signed: Vec<u128>,
    paid_payee: u128,
    paid_payer: u128,
}

impl ChannelModel {
    fn max_signed(&self) -> u128 {
        self.signed.iter().copied().max().unwrap_or(0)
    }
}

/// A sequence being run, with what the harness expects.
pub struct Scenario {
    pub chain: Chain,
    delivery: Delivery,
    /// Steps run (calls and deliveries).
    pub steps: u64,
    initial_tokens_bytes: u64,
    /// The contract's spare NEAR after `new`.
    surplus0: u128,
    /// 1-yoctoNEAR fees kept (`storage_withdraw`), `ft_transfer` yoctoNEAR sent and refunded.
    fees_in: u128,
    ft_out: u128,
    ft_back: u128,
    storage_in: BTreeMap<String, u128>,
    storage_out: BTreeMap<String, u128>,
    /// Storage balances others deposited for an account (theirs to withdraw).
    given: BTreeMap<String, u128>,
    channels: BTreeMap<u64, ChannelModel>,
    epoch: u64,
    /// What was done, if asked for ([`Scenario::record`]).
    pub transcript: Option<Vec<Step>>,
}

fn key_of(who: &str) -> Keypair {
    let i = PEOPLE.iter().position(|p| *p == who).unwrap_or(7) as u8;
    Keypair::from_seed(&[i + 1; 32])
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A violated invariant: the harness panics (a crash for cargo-fuzz, a
/// failure for the test run) with what broke.
#[track_caller]
fn violated(what: String) -> ! {
    panic!("contract invariant violated: {what}")
}

impl Scenario {
    /// A fresh chain with the contract deployed and initialized.
    pub fn new(seed: [u8; 32], delivery: Delivery) -> Scenario {
        let mut chain = Chain::new(&PEOPLE, WALLET, TOKENS, seed);
        // An account not registered with a NEP-141 token cannot hold it.
        if let Some(r) = chain.registered.get_mut(TOKEN) {
            r.retain(|a| a != UNREGISTERED);
        }
        if let Some(l) = chain.tokens.get_mut(TOKEN) {
            l.remove(UNREGISTERED);
        }
        let init = format!(r#"{{"owner_id":"{OWNER}","min_challenge_period_ns":"{HOUR_NS}","tokens":["{TOKEN}"]}}"#);
        let r = chain.call("new", &init, CONTRACT, 0);
        if r.outcome.is_err() {
            violated(format!("new failed: {:?}", r.outcome));
        }
        let initial_tokens_bytes = chain.storage.get(&b"t"[..]).map_or(0, |v| v.len() as u64);
        let surplus0 = chain.balance - u128::from(chain.storage_usage) * BYTE_COST;
        let epoch = audit(&chain.storage, initial_tokens_bytes, &BTreeMap::new()).unwrap_or_else(|e| violated(e)).epoch;
        let expected_epoch = u64::from_le_bytes(seed[..8].try_into().unwrap_or([0; 8]));
        if epoch != expected_epoch {
            violated(format!("epoch {epoch} is not drawn from the random seed"));
        }
        Scenario {
            chain,
            delivery,
            steps: 1,
            initial_tokens_bytes,
            surplus0,
            fees_in: 0,
            ft_out: 0,
            ft_back: 0,
            storage_in: BTreeMap::new(),
            storage_out: BTreeMap::new(),
            given: BTreeMap::new(),
            channels: BTreeMap::new(),
            epoch,
            transcript: None,
        }
    }

    /// Starts recording a transcript of the steps (see [`Step`]).
    pub fn record(&mut self) {
        self.transcript = Some(Vec::new());
    }

    fn note(&mut self, step: Step) {
        if let Some(t) = self.transcript.as_mut() {
            t.push(step);
        }
    }

    /// The contract's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Runs fuzz bytes: the sequence, then the drain and the final checks.
    pub fn run_bytes(data: &[u8], delivery: Delivery) -> u64 {
        let (seed, ops) = decode(data);
        let mut s = Scenario::new(seed, delivery);
        for op in &ops {
            s.apply(op);
        }
        s.drain();
        s.steps
    }

    /// Runs `ops` from a given random seed, recording the transcript.
    pub fn run_recorded(seed: [u8; 32], ops: &[Op], delivery: Delivery) -> Scenario {
        let mut s = Scenario::new(seed, delivery);
        s.record();
        s.checkpoint();
        for op in ops {
            s.apply(op);
        }
        s.drain();
        s
    }

    fn ids(&self) -> Vec<u64> {
        self.channels.keys().copied().collect()
    }

    /// Mostly a channel that is stored now; sometimes any channel ever
    /// opened, or one that never existed.
    fn pick_channel(&self, sel: u8) -> u64 {
        let live: Vec<u64> = self
            .chain
            .storage
            .keys()
            .filter(|k| k.len() == 9 && k[0] == b'c')
            .map(|k| u64::from_le_bytes([k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]]))
            .collect();
        let ids = if sel.is_multiple_of(4) || live.is_empty() { self.ids() } else { live };
        if ids.is_empty() || sel == 255 {
            return 1_000_000 + u64::from(sel);
        }
        let mut ids = ids;
        ids.sort_unstable();
        ids[sel as usize / 4 % ids.len()]
    }

    fn audit(&self) -> Audit {
        let mut withdrawing: BTreeMap<String, u32> = BTreeMap::new();
        for p in &self.chain.pending {
            if let Kind::Callback { method, args } = &p.kind {
                let v: serde_json::Value = serde_json::from_slice(args).unwrap_or_default();
                if method == "on_storage_withdraw" && v["kept"] == serde_json::Value::Bool(true) {
                    *withdrawing.entry(v["account"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
                }
            }
        }
        audit(&self.chain.storage, self.initial_tokens_bytes, &withdrawing).unwrap_or_else(|e| violated(e))
    }

    /// Runs one call; refuses what must be refused (the step is checked by the caller).
    fn call(&mut self, method: &str, args: &str, who: &str, deposit: u128) -> Result<Vec<String>, String> {
        let r = self.chain.call(method, args, who, deposit);
        self.steps += 1;
        count(method, &r.outcome);
        self.note(Step::Call {
            method: method.to_owned(),
            args: args.to_owned(),
            who: who.to_owned(),
            deposit,
            outcome: r.outcome.clone(),
        });
        let payable = METHODS.iter().find(|(m, _, _)| *m == method).map(|(_, _, p)| *p);
        if r.outcome.is_ok() {
            match payable {
                Some(Payable::No) if deposit > 0 => {
                    violated(format!("{method} kept {deposit} yoctoNEAR attached to it"))
                }
                Some(Payable::OneYocto) if deposit != 1 => violated(format!("{method} accepted {deposit} attached")),
                _ => {}
            }
            self.track_created(&r.created);
        }
        r.outcome.map(|()| r.logs)
    }

    fn track_created(&mut self, created: &[u64]) {
        for id in created {
            if let Some(p) = self.chain.pending.iter().find(|p| p.id == *id) {
                if matches!(p.kind, Kind::FtTransfer { .. }) {
                    self.ft_out += 1;
                }
            }
        }
    }

    /// Applies one op of a sequence, then checks every invariant.
    pub fn apply(&mut self, op: &Op) {
        if std::env::var_os("AGENTWIRE_HARNESS_TRACE").is_some() {
            eprintln!("{op:?}  (pending {:?})", self.chain.pending.iter().map(|p| p.id).collect::<Vec<_>>());
        }
        self.step(op);
        if self.delivery == Delivery::Immediate {
            self.deliver_all();
        }
        self.check();
        self.checkpoint();
    }

    fn checkpoint(&mut self) {
        if self.transcript.is_some() {
            let snapshot = Snapshot {
                storage: self.chain.storage.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                balance: self.chain.balance,
                storage_usage: self.chain.storage_usage,
                token_balance: self.chain.token_balance(TOKEN, CONTRACT),
            };
            self.note(Step::Checkpoint(Box::new(snapshot)));
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::StorageDeposit { who, target, amount } => {
                let who = person(who);
                let target = match target % 4 {
                    0 => None,
                    1 => Some(GHOST),
                    _ => Some(person(target / 4)),
                };
                let amount = NEAR_AMOUNTS[amount as usize % NEAR_AMOUNTS.len()];
                let args = match target {
                    None => "{}".to_owned(),
                    Some(t) => format!(r#"{{"account_id":"{t}"}}"#),
                };
                if self.call("storage_deposit", &args, who, amount).is_ok() {
                    let target = target.unwrap_or(who);
                    *self.storage_in.entry(target.to_owned()).or_default() += amount;
                    if target != who {
                        *self.given.entry(target.to_owned()).or_default() += amount;
                    }
                }
            }
            Op::StorageWithdraw { who, amount, attach } => {
                let who = person(who);
                let args = match amount % 4 {
                    0 => "{}".to_owned(),
                    1 => format!(r#"{{"amount":"{}"}}"#, self.audit().balance(who)),
                    _ => format!(r#"{{"amount":"{}"}}"#, NEAR_AMOUNTS[amount as usize / 4 % NEAR_AMOUNTS.len()]),
                };
                let attach = match attach % 8 {
                    0 => 0,
                    1 => 2,
                    _ => 1,
                };
                if self.call("storage_withdraw", &args, who, attach).is_ok() {
                    self.fees_in += 1;
                }
            }
            Op::Open { payer, payee, deposit, extra, flags } => {
                let payer = person(payer);
                let payee = if payee % 7 == 6 { GHOST } else { person(payee) };
                let deposit = NEAR_AMOUNTS[deposit as usize % NEAR_AMOUNTS.len()];
                let extra = NEAR_AMOUNTS[extra as usize % 8];
                let key = if flags % 16 == 0 { "00".repeat(32) } else { hex(&key_of(payer).public().to_bytes()) };
                let period = match flags / 16 % 8 {
                    0 => HOUR_NS - 1,
                    1 => 30 * 24 * HOUR_NS + 1,
                    _ => HOUR_NS,
                };
                let shortfall = if flags & 0x80 != 0 { deposit / 2 } else { 0 };
                let args = format!(
                    r#"{{"payee":"{payee}","payer_key":"{key}","challenge_period_ns":"{period}","deposit":"{deposit}"}}"#
                );
                let attached = (deposit + extra).saturating_sub(shortfall);
                if let Ok(logs) = self.call("open", &args, payer, attached) {
                    let id = opened_id(&logs).unwrap_or_else(|| violated("open logged no channel_opened".into()));
                    *self.storage_in.entry(payer.to_owned()).or_default() += attached - deposit;
                    self.opened(id, payer, payee, None, deposit);
                }
            }
            Op::OpenToken { fake, payer, payee, amount, flags } => {
                let token = if fake { FAKE_TOKEN } else { TOKEN };
                let payer = person(payer);
                let payee = if payee % 7 == 6 { GHOST } else { person(payee) };
                let amount = TOKEN_AMOUNTS[amount as usize % TOKEN_AMOUNTS.len()];
                let key = if flags % 16 == 0 { "00".repeat(32) } else { hex(&key_of(payer).public().to_bytes()) };
                let msg = format!(
                    r#"{{\"Open\":{{\"payee\":\"{payee}\",\"payer_key\":\"{key}\",\"challenge_period_ns\":\"{HOUR_NS}\"}}}}"#
                );
                if let Some(logs) = self.ft_transfer_call(token, payer, amount, &msg) {
                    let id = opened_id(&logs).unwrap_or_else(|| violated("Open logged no channel_opened".into()));
                    self.opened(id, payer, payee, Some(token.to_owned()), amount);
                }
            }
            Op::TopUp { who, channel, amount } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, true);
                let amount = NEAR_AMOUNTS[amount as usize % NEAR_AMOUNTS.len()];
                if self.call("top_up", &format!(r#"{{"channel_id":"{id}"}}"#), &who, amount).is_ok() {
                    self.funded(id, amount);
                }
            }
            Op::TopUpToken { fake, who, channel, amount } => {
                let token = if fake { FAKE_TOKEN } else { TOKEN };
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, true);
                let amount = TOKEN_AMOUNTS[amount as usize % TOKEN_AMOUNTS.len()];
                let msg = format!(r#"{{\"TopUp\":{{\"channel_id\":\"{id}\"}}}}"#);
                if self.ft_transfer_call(token, &who, amount, &msg).is_some() {
                    self.funded(id, amount);
                }
            }
            Op::Sign { channel, amount } => {
                let id = self.pick_channel(channel);
                if let Some(m) = self.channels.get_mut(&id) {
                    let deposit = m.funded;
                    let top = m.max_signed();
                    let total = match amount % 8 {
                        0 => deposit,
                        1 => deposit.saturating_add(1),
                        2 => top.saturating_add(1),
                        _ => top.saturating_add(deposit / 16 * u128::from(amount % 8)).min(deposit),
                    };
                    m.signed.push(total);
                }
            }
            Op::Claim { who, channel, voucher } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, false);
                let (cumulative, sig, valid) = self.sign_voucher(id, voucher);
                let args = format!(r#"{{"channel_id":"{id}","cumulative":"{cumulative}","signature":"{sig}"}}"#);
                if self.call("claim", &args, &who, 0).is_ok() && !valid {
                    violated(format!("claim of a bad voucher on channel {id} succeeded"));
                }
            }
            Op::Close { who, channel, voucher } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, false);
                let args = if voucher % 4 == 0 {
                    format!(r#"{{"channel_id":"{id}"}}"#)
                } else {
                    let (cumulative, sig, _) = self.sign_voucher(id, voucher);
                    format!(
                        r#"{{"channel_id":"{id}","final_voucher":{{"cumulative":"{cumulative}","signature":"{sig}"}}}}"#
                    )
                };
                let _ = self.call("close", &args, &who, 0);
            }
            Op::StartClose { who, channel } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, true);
                let _ = self.call("start_close", &format!(r#"{{"channel_id":"{id}"}}"#), &who, 0);
            }
            Op::Finalize { who, channel } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, who % 2 == 0);
                let _ = self.call("finalize", &format!(r#"{{"channel_id":"{id}"}}"#), &who, 0);
            }
            Op::FastForward => self.advance(HOUR_NS + 1_000_000_000),
            Op::WithdrawOwed { who, channel } => {
                let id = self.pick_channel(channel);
                let who = self.actor(id, who, who % 2 == 0);
                let _ = self.call("withdraw_owed", &format!(r#"{{"channel_id":"{id}"}}"#), &who, 0);
            }
            Op::RegisterEndpoint { who, key } => {
                let who = person(who);
                let _ = self.call("register_endpoint", &format!(r#"{{"key":"{}"}}"#, endpoint_key(key)), who, 0);
            }
            Op::RevokeEndpoint { who, key } => {
                let who = person(who);
                let _ = self.call("revoke_endpoint", &format!(r#"{{"key":"{}"}}"#, endpoint_key(key)), who, 0);
            }
            Op::AddToken { who, token } => {
                let who = if who % 2 == 0 { OWNER } else { person(who) };
                let token = ["dai.test", "usdt.test", TOKEN][token as usize % 3];
                let _ = self.call("add_token", &format!(r#"{{"token":"{token}"}}"#), who, 0);
            }
            Op::View { who, method, deposit } => {
                let who = person(who);
                let id = self.pick_channel(method / 8);
                let target = person(method / 16);
                let (name, args) = match method % 6 {
                    0 => ("get_channel", format!(r#"{{"channel_id":"{id}"}}"#)),
                    1 => ("channels_of", format!(r#"{{"account_id":"{target}","from_index":0,"limit":5}}"#)),
                    2 => ("config", "{}".to_owned()),
                    3 => ("storage_balance_of", format!(r#"{{"account_id":"{target}"}}"#)),
                    4 => ("is_endpoint", format!(r#"{{"account_id":"{target}","key":"{}"}}"#, endpoint_key(method))),
                    _ => ("endpoint_keys", format!(r#"{{"account_id":"{target}"}}"#)),
                };
                let deposit = NEAR_AMOUNTS[deposit as usize % 4];
                let r = self.call(name, &args, who, deposit);
                if deposit == 0 && r.is_err() {
                    violated(format!("view {name} {args} failed: {r:?}"));
                }
            }
            Op::Private { who, method, deposit } => {
                let who = person(who);
                let id = self.pick_channel(method / 4);
                let (name, args) = match method % 4 {
                    0 => ("on_payout", format!(r#"{{"channel_id":"{id}","to_payee":true,"amount":"1"}}"#)),
                    1 => ("on_settle", format!(r#"{{"channel_id":"{id}","payout":"1","refund":"1"}}"#)),
                    2 => ("on_storage_withdraw", format!(r#"{{"account":"{who}","amount":"{NEAR}","kept":true}}"#)),
                    _ => {
                        ("new", format!(r#"{{"owner_id":"{who}","min_challenge_period_ns":"{HOUR_NS}","tokens":[]}}"#))
                    }
                };
                let deposit = NEAR_AMOUNTS[deposit as usize % 3];
                match self.call(name, &args, who, deposit) {
                    // Refused as private, or (the caller cannot pay the
                    // deposit) before it reached the contract.
                    Err(e) if e.contains("is private") || e == "NotEnoughBalance" => {}
                    other => violated(format!("{who} called {name}: {other:?}")),
                }
            }
            Op::Deliver { pick, fail } => {
                let ready = self.chain.ready();
                if !ready.is_empty() {
                    let id = ready[pick as usize % ready.len()];
                    self.deliver(id, fail % 4 == 0);
                }
            }
            Op::DeliverAll => self.deliver_all(),
        }
    }

    /// The caller of a channel method: usually the right party, sometimes the other or anyone.
    fn actor(&self, id: u64, sel: u8, payer: bool) -> String {
        let Some(m) = self.channels.get(&id) else { return person(sel).to_owned() };
        let who = match sel % 8 {
            0 => person(sel / 8),
            1 => {
                if payer {
                    &m.payee
                } else {
                    &m.payer
                }
            }
            _ => {
                if payer {
                    &m.payer
                } else {
                    &m.payee
                }
            }
        };
        // An account that does not exist never acts.
        if who == GHOST {
            person(sel).to_owned()
        } else {
            who.to_owned()
        }
    }

    /// A voucher for channel `id`: (cumulative, signature hex, whether the
    /// contract may accept it as far as its signature goes).
    fn voucher(&self, id: u64, sel: u8) -> (u128, String, bool) {
        let Some(m) = self.channels.get(&id) else {
            return (1, hex(&[7; 64]), false);
        };
        let signed = |payer: &str, channel: u64, epoch: u64, cumulative: u128| {
            let contract = agentwire_protocol::account::AccountId::new(CONTRACT).expect("contract id");
            let v = Voucher { contract, channel_id: channel, epoch, cumulative };
            hex(&key_of(payer).sign_raw(&v.signing_bytes()))
        };
        let top = m.max_signed();
        match sel % 8 {
            0..=2 => (top, signed(&m.payer, id, self.epoch, top), true),
            3 => {
                let older = m.signed.get(sel as usize / 8 % m.signed.len().max(1)).copied().unwrap_or(0);
                (older, signed(&m.payer, id, self.epoch, older), true)
            }
            4 => (top.max(1), hex(&[sel; 64]), false),
            5 => (top.max(1), signed(&m.payer, id ^ 1, self.epoch, top.max(1)), false),
            6 => (top.max(1), signed(&m.payer, id, self.epoch ^ 1, top.max(1)), false),
            _ => {
                let signer = person(sel / 8);
                (top.max(1), signed(signer, id, self.epoch, top.max(1)), signer == m.payer)
            }
        }
    }

    /// [`Self::voucher`], noting a voucher the payer itself signed.
    fn sign_voucher(&mut self, id: u64, sel: u8) -> (u128, String, bool) {
        let v = self.voucher(id, sel);
        if v.2 {
            if let Some(m) = self.channels.get_mut(&id) {
                m.signed.push(v.0);
            }
        }
        v
    }

    fn opened(&mut self, id: u64, payer: &str, payee: &str, token: Option<String>, deposit: u128) {
        if self.channels.contains_key(&id) {
            violated(format!("channel id {id} reused"));
        }
        self.channels.insert(
            id,
            ChannelModel {
                payer: payer.to_owned(),
                payee: payee.to_owned(),
                token,
                funded: deposit,
                ..ChannelModel::default()
            },
        );
    }

    fn funded(&mut self, id: u64, amount: u128) {
        match self.channels.get_mut(&id) {
            Some(m) => m.funded += amount,
            None => violated(format!("top-up of unknown channel {id} succeeded")),
        }
    }

    /// `ft_transfer_call` of `amount` from `sender`: the token moves the
    /// tokens, calls `ft_on_transfer`, and moves them back if it fails.
    /// Returns its logs if the contract accepted them.
    fn ft_transfer_call(&mut self, token: &str, sender: &str, amount: u128, msg: &str) -> Option<Vec<String>> {
        if self.chain.token_balance(token, sender) < amount || amount == 0 {
            return None; // the token refuses before calling the contract
        }
        let mv = |chain: &mut Chain, from: &str, to: &str| {
            let ledger = chain.tokens.entry(token.to_owned()).or_default();
            *ledger.entry(from.to_owned()).or_default() -= amount;
            *ledger.entry(to.to_owned()).or_default() += amount;
        };
        mv(&mut self.chain, sender, CONTRACT);
        let args = format!(r#"{{"sender_id":"{sender}","amount":"{amount}","msg":"{msg}"}}"#);
        let r = self.chain.call("ft_on_transfer", &args, token, 0);
        self.steps += 1;
        count("ft_on_transfer", &r.outcome);
        if token == FAKE_TOKEN && r.outcome.is_ok() {
            violated("a token off the allow-list was accepted".into());
        }
        if r.outcome.is_err() {
            mv(&mut self.chain, CONTRACT, sender);
        }
        self.note(Step::TokenTransfer {
            token: token.to_owned(),
            sender: sender.to_owned(),
            amount,
            msg: msg.replace("\\\"", "\""),
            accepted: r.outcome.is_ok(),
        });
        r.outcome.ok().map(|()| r.logs)
    }

    fn deliver(&mut self, id: u64, fail: bool) {
        let d = self.chain.deliver(id, fail);
        self.steps += 1;
        match d {
            Delivered::NotReady => {}
            Delivered::Transfer { .. } => {}
            Delivered::FtTransfer { ok, .. } => {
                if !ok {
                    self.ft_back += 1;
                }
            }
            Delivered::Callback { method, args, results, call } => {
                count(&format!("{method} {results:?}"), &call.outcome);
                if let Err(e) = call.outcome {
                    violated(format!("callback {method} panicked ({e}): the money it handles is lost"));
                }
                self.track_created(&call.created);
                self.settle_callback(&method, &args, &results);
            }
        }
        self.check();
    }

    /// Books what a callback's transfers did.
    fn settle_callback(&mut self, method: &str, args: &[u8], results: &[bool]) {
        let v: serde_json::Value =
            serde_json::from_slice(args).unwrap_or_else(|e| violated(format!("{method} args: {e}")));
        let num = |k: &str| {
            v[k].as_str().and_then(|s| s.parse::<u128>().ok()).unwrap_or_else(|| violated(format!("{method}: {k}")))
        };
        match method {
            "on_storage_withdraw" => {
                if results.first() == Some(&true) {
                    let who = v["account"].as_str().unwrap_or_default().to_owned();
                    *self.storage_out.entry(who).or_default() += num("amount");
                }
            }
            "on_payout" => {
                let id = num("channel_id") as u64;
                let to_payee = v["to_payee"].as_bool().unwrap_or_else(|| violated("to_payee".into()));
                if results.first() == Some(&true) {
                    let m = self
                        .channels
                        .get_mut(&id)
                        .unwrap_or_else(|| violated(format!("payout of unknown channel {id}")));
                    if to_payee {
                        m.paid_payee += num("amount");
                    } else {
                        m.paid_payer += num("amount");
                    }
                }
            }
            "on_settle" => {
                let id = num("channel_id") as u64;
                let m =
                    self.channels.get_mut(&id).unwrap_or_else(|| violated(format!("settle of unknown channel {id}")));
                if results.first() == Some(&true) {
                    m.paid_payee += num("payout");
                }
                if results.get(1) == Some(&true) {
                    m.paid_payer += num("refund");
                }
            }
            other => violated(format!("unexpected callback {other}")),
        }
    }

    /// Delivers every pending receipt, callbacks included, until none is left.
    pub fn deliver_all(&mut self) {
        for _ in 0..10_000 {
            let ready = self.chain.ready();
            let Some(id) = ready.first().copied() else { break };
            self.deliver(id, false);
        }
        if !self.chain.pending.is_empty() {
            violated("receipts that can never run".into());
        }
    }

    fn advance(&mut self, ns: u64) {
        self.chain.now_ns += ns;
        self.chain.height += ns / 1_000_000_000;
        self.note(Step::Advance(ns));
    }

    fn voucher_for(&self, id: u64, cumulative: u128) -> (u128, String, bool) {
        let m = &self.channels[&id];
        let contract = agentwire_protocol::account::AccountId::new(CONTRACT).expect("contract id");
        let v = Voucher { contract, channel_id: id, epoch: self.epoch, cumulative };
        (cumulative, hex(&key_of(&m.payer).sign_raw(&v.signing_bytes())), true)
    }
}

thread_local! {
    static STATS: std::cell::RefCell<BTreeMap<String, (u64, u64)>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

/// Counts calls by method and outcome (read with [`stats`]): how a corpus
/// can be seen to reach every path.
fn count(method: &str, outcome: &Result<(), String>) {
    STATS.with(|s| {
        let mut s = s.borrow_mut();
        let key = match outcome {
            Ok(()) => method.to_owned(),
            // The text up to its first number: a bounded set of keys.
            Err(e) => format!("{method}: {}", e.split(|c: char| c.is_ascii_digit()).next().unwrap_or_default()),
        };
        let e = s.entry(key).or_default();
        e.0 += 1;
        e.1 += u64::from(outcome.is_ok());
    });
}

/// Calls made on this thread so far, by method (successes) and by method
/// and refusal message.
pub fn stats() -> BTreeMap<String, (u64, u64)> {
    STATS.with(|s| s.borrow().clone())
}

fn callback_channel(args: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(args).ok()?;
    v["channel_id"].as_str()?.parse().ok()
}

/// The id in a `channel_opened` event.
fn opened_id(logs: &[String]) -> Option<u64> {
    logs.iter().find(|l| l.contains("\"event\":\"channel_opened\"")).and_then(|l| {
        let rest = l.split("\"channel_id\":\"").nth(1)?;
        rest.split('"').next()?.parse().ok()
    })
}
