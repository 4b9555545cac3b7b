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
use super::chain::{Chain, Delivered, Kind, Payable, BYTE_COST, CODE_BYTES, CONTRACT, FAKE_TOKEN, METHODS, OWNER, TOKEN};

/// The accounts that act (the last is the owner).
pub const PEOPLE: [&str; 5] = ["alice.test", "bob.test", "carol.test", "mallory.test", OWNER];
/// `carol` is never registered with the token: token payouts to her fail.
pub const UNREGISTERED: &str = "carol.test";
/// An account that does not exist: anyone can name it, it can never act.
pub const GHOST: &str = "ghost.test";
/// Each account's NEAR at the start (1 000 NEAR).
pub const WALLET: u128 = 1_000 * NEAR;
/// Each account's tokens at the start.
pub const TOKENS: u128 = 1_000_000_000_000;
const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
const MIN: u128 = crate::contract::MIN_STORAGE_DEPOSIT;
const HOUR_NS: u64 = 3_600_000_000_000;

const NEAR_AMOUNTS: [u128; 14] = [
    0,
    1,
    2,
    MIN - 1,
    MIN,
    MIN + 1,
    100_000_000_000_000_000_000,
    1_000_000_000_000_000_000_000,
    3 * MIN,
    NEAR / 10,
    NEAR,
    5 * NEAR,
    100 * NEAR,
    1_000_000 * NEAR,
];
const TOKEN_AMOUNTS: [u128; 7] = [0, 1, 2, 1_000, 1_000_000, 1_000_000_000, 10_000_000_000_000];

/// How receipts are delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// When the sequence says, failing when it says (other calls run in between).
    Interleaved,
    /// Right after each call, failing only as they would on a real chain
    /// (token payouts to an unregistered account): what the devnet does.
    Immediate,
}

/// One step of a sequence (decoded from fuzz bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    StorageDeposit { who: u8, target: u8, amount: u8 },
    StorageWithdraw { who: u8, amount: u8, attach: u8 },
    Open { payer: u8, payee: u8, deposit: u8, extra: u8, flags: u8 },
    OpenToken { fake: bool, payer: u8, payee: u8, amount: u8, flags: u8 },
    TopUp { who: u8, channel: u8, amount: u8 },
    TopUpToken { fake: bool, who: u8, channel: u8, amount: u8 },
    Sign { channel: u8, amount: u8 },
    Claim { who: u8, channel: u8, voucher: u8 },
    Close { who: u8, channel: u8, voucher: u8 },
    StartClose { who: u8, channel: u8 },
    Finalize { who: u8, channel: u8 },
    FastForward,
    WithdrawOwed { who: u8, channel: u8 },
    RegisterEndpoint { who: u8, key: u8 },
    RevokeEndpoint { who: u8, key: u8 },
    AddToken { who: u8, token: u8 },
    View { who: u8, method: u8, deposit: u8 },
    Private { who: u8, method: u8, deposit: u8 },
    Deliver { pick: u8, fail: u8 },
    DeliverAll,
}

/// Decodes fuzz bytes into a sequence: the first byte picks the random seed
/// of `new`, then each op takes an opcode byte and its argument bytes
/// (missing bytes read as 0).
pub fn decode(data: &[u8]) -> ([u8; 32], Vec<Op>) {
    let seed = [data.first().copied().unwrap_or(0); 32];
    let mut ops = Vec::new();
    let mut i = 1;
    let next = |i: &mut usize| {
        let b = data.get(*i).copied().unwrap_or(0);
        *i += 1;
        b
    };
    while i < data.len() && ops.len() < 256 {
        let op = match next(&mut i) % 20 {
            0 => Op::StorageDeposit { who: next(&mut i), target: next(&mut i), amount: next(&mut i) },
            1 => Op::StorageWithdraw { who: next(&mut i), amount: next(&mut i), attach: next(&mut i) },
            2 => Op::Open {
                payer: next(&mut i),
                payee: next(&mut i),
                deposit: next(&mut i),
                extra: next(&mut i),
                flags: next(&mut i),
            },
            3 => Op::OpenToken {
                fake: next(&mut i) % 8 == 0,
                payer: next(&mut i),
                payee: next(&mut i),
                amount: next(&mut i),
                flags: next(&mut i),
            },
            4 => Op::TopUp { who: next(&mut i), channel: next(&mut i), amount: next(&mut i) },
            5 => Op::TopUpToken { fake: next(&mut i) % 8 == 0, who: next(&mut i), channel: next(&mut i), amount: next(&mut i) },
            6 => Op::Sign { channel: next(&mut i), amount: next(&mut i) },
            7 => Op::Claim { who: next(&mut i), channel: next(&mut i), voucher: next(&mut i) },
            8 => Op::Close { who: next(&mut i), channel: next(&mut i), voucher: next(&mut i) },
            9 => Op::StartClose { who: next(&mut i), channel: next(&mut i) },
            10 => Op::Finalize { who: next(&mut i), channel: next(&mut i) },
            11 => Op::FastForward,
            12 => Op::WithdrawOwed { who: next(&mut i), channel: next(&mut i) },
            13 => Op::RegisterEndpoint { who: next(&mut i), key: next(&mut i) },
            14 => Op::RevokeEndpoint { who: next(&mut i), key: next(&mut i) },
            15 => Op::AddToken { who: next(&mut i), token: next(&mut i) },
            16 => Op::View { who: next(&mut i), method: next(&mut i), deposit: next(&mut i) },
            17 => Op::Private { who: next(&mut i), method: next(&mut i), deposit: next(&mut i) },
            18 => Op::Deliver { pick: next(&mut i), fail: next(&mut i) },
            _ => Op::DeliverAll,
        };
        ops.push(op);
    }
    (seed, ops)
}

/// The bytes [`decode`] reads back as `ops` with `seed` (how named
/// sequences are written to the corpus).
pub fn encode(seed: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![seed];
    for op in ops {
        let (code, args): (u8, Vec<u8>) = match *op {
            Op::StorageDeposit { who, target, amount } => (0, vec![who, target, amount]),
            Op::StorageWithdraw { who, amount, attach } => (1, vec![who, amount, attach]),
            Op::Open { payer, payee, deposit, extra, flags } => (2, vec![payer, payee, deposit, extra, flags]),
            Op::OpenToken { fake, payer, payee, amount, flags } => {
                (3, vec![u8::from(!fake), payer, payee, amount, flags])
            }
            Op::TopUp { who, channel, amount } => (4, vec![who, channel, amount]),
            Op::TopUpToken { fake, who, channel, amount } => (5, vec![u8::from(!fake), who, channel, amount]),
            Op::Sign { channel, amount } => (6, vec![channel, amount]),
            Op::Claim { who, channel, voucher } => (7, vec![who, channel, voucher]),
            Op::Close { who, channel, voucher } => (8, vec![who, channel, voucher]),
            Op::StartClose { who, channel } => (9, vec![who, channel]),
            Op::Finalize { who, channel } => (10, vec![who, channel]),
            Op::FastForward => (11, vec![]),
            Op::WithdrawOwed { who, channel } => (12, vec![who, channel]),
            Op::RegisterEndpoint { who, key } => (13, vec![who, key]),
            Op::RevokeEndpoint { who, key } => (14, vec![who, key]),
            Op::AddToken { who, token } => (15, vec![who, token]),
            Op::View { who, method, deposit } => (16, vec![who, method, deposit]),
            Op::Private { who, method, deposit } => (17, vec![who, method, deposit]),
            Op::Deliver { pick, fail } => (18, vec![pick, fail]),
            Op::DeliverAll => (19, vec![]),
        };
        out.push(code);
        out.extend(args);
    }
    out
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

fn person(i: u8) -> &'static str {
    PEOPLE[i as usize % PEOPLE.len()]
}

fn key_of(who: &str) -> Keypair {
    let i = PEOPLE.iter().position(|p| *p == who).unwrap_or(7) as u8;
    Keypair::from_seed(&[i + 1; 32])
}

fn hex(b: &[u8]) -> String {
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
        let init = format!(
            r#"{{"owner_id":"{OWNER}","min_challenge_period_ns":"{HOUR_NS}","tokens":["{TOKEN}"]}}"#
        );
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
        let live: Vec<u64> = self.chain.storage.keys().filter(|k| k.len() == 9 && k[0] == b'c').map(|k| {
            u64::from_le_bytes([k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8]])
        }).collect();
        let ids = if sel % 4 == 0 || live.is_empty() { self.ids() } else { live };
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
                    format!(r#"{{"channel_id":"{id}","final_voucher":{{"cumulative":"{cumulative}","signature":"{sig}"}}}}"#)
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
                    _ => ("new", format!(r#"{{"owner_id":"{who}","min_challenge_period_ns":"{HOUR_NS}","tokens":[]}}"#)),
                };
                let deposit = NEAR_AMOUNTS[deposit as usize % 3];
                match self.call(name, &args, who, deposit) {
                    Err(e) if e.contains("is private") => {}
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
            1 => if payer { &m.payee } else { &m.payer },
            _ => if payer { &m.payer } else { &m.payee },
        };
        // An account that does not exist never acts.
        if who == GHOST { person(sel).to_owned() } else { who.to_owned() }
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
        let v: serde_json::Value = serde_json::from_slice(args).unwrap_or_else(|e| violated(format!("{method} args: {e}")));
        let num = |k: &str| v[k].as_str().and_then(|s| s.parse::<u128>().ok()).unwrap_or_else(|| violated(format!("{method}: {k}")));
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
                    let m = self.channels.get_mut(&id).unwrap_or_else(|| violated(format!("payout of unknown channel {id}")));
                    if to_payee {
                        m.paid_payee += num("amount");
                    } else {
                        m.paid_payer += num("amount");
                    }
                }
            }
            "on_settle" => {
                let id = num("channel_id") as u64;
                let m = self.channels.get_mut(&id).unwrap_or_else(|| violated(format!("settle of unknown channel {id}")));
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

    /// Amounts of payouts whose callback has not run: per channel (payee,
    /// payer) and per account for storage withdrawals.
    fn in_flight(&self) -> (BTreeMap<u64, (u128, u128)>, BTreeMap<String, u128>) {
        let mut channels: BTreeMap<u64, (u128, u128)> = BTreeMap::new();
        let mut storage: BTreeMap<String, u128> = BTreeMap::new();
        for p in &self.chain.pending {
            let Kind::Callback { method, args } = &p.kind else { continue };
            let v: serde_json::Value = serde_json::from_slice(args).unwrap_or_default();
            let num = |k: &str| v[k].as_str().and_then(|s| s.parse::<u128>().ok()).unwrap_or(0);
            match method.as_str() {
                "on_storage_withdraw" => {
                    *storage.entry(v["account"].as_str().unwrap_or_default().to_owned()).or_default() += num("amount")
                }
                "on_payout" => {
                    let e = channels.entry(num("channel_id") as u64).or_default();
                    if v["to_payee"].as_bool() == Some(true) {
                        e.0 += num("amount");
                    } else {
                        e.1 += num("amount");
                    }
                }
                "on_settle" => {
                    let e = channels.entry(num("channel_id") as u64).or_default();
                    e.0 += num("payout");
                    e.1 += num("refund");
                }
                _ => {}
            }
        }
        (channels, storage)
    }

    /// Every invariant of the module documentation.
    pub fn check(&self) {
        let a = self.audit();
        let chain = &self.chain;
        if a.total_bytes + CODE_BYTES != chain.storage_usage {
            violated(format!("{} bytes counted, the runtime says {}", a.total_bytes + CODE_BYTES, chain.storage_usage));
        }
        let (flight, storage_flight) = self.in_flight();
        let at_rest = chain.pending.is_empty();
        // Storage money, per account.
        let mut people: Vec<String> = a.owned.keys().chain(a.accounts.keys()).cloned().collect();
        people.extend(self.storage_in.keys().cloned());
        people.sort();
        people.dedup();
        for who in &people {
            let put = self.storage_in.get(who).copied().unwrap_or(0);
            let out = self.storage_out.get(who).copied().unwrap_or(0) + storage_flight.get(who).copied().unwrap_or(0);
            let held = a.balance(who) + u128::from(a.owned(who)) * BYTE_COST;
            if put.checked_sub(out) != Some(held) {
                violated(format!("{who}: put {put} into storage, took {out} out, but holds {held}"));
            }
        }
        // Channels.
        for (id, m) in &self.channels {
            let (f_payee, f_payer) = flight.get(id).copied().unwrap_or((0, 0));
            if m.paid_payee + m.paid_payer + f_payee + f_payer > m.funded {
                violated(format!("channel {id}: paid out more than was paid in"));
            }
            match a.channels.get(id) {
                Some(c) => {
                    if c.deposit != m.funded {
                        violated(format!("channel {id}: deposit {} but {} was paid in", c.deposit, m.funded));
                    }
                    if (&c.payer, &c.payee, &c.token) != (&m.payer, &m.payee, &m.token) {
                        violated(format!("channel {id}: parties or currency changed"));
                    }
                    if c.claimed > m.max_signed() {
                        violated(format!("channel {id}: claimed {} above every signed voucher", c.claimed));
                    }
                    if !c.settled && c.claimed != m.paid_payee + f_payee {
                        violated(format!("channel {id}: claimed {} but paid {} + in flight {f_payee}", c.claimed, m.paid_payee));
                    }
                    if c.settled {
                        let total = m.paid_payee + m.paid_payer + f_payee + f_payer + c.owed_payee + c.owed_payer;
                        if total != m.funded || m.paid_payee + f_payee + c.owed_payee != c.claimed {
                            violated(format!("channel {id}: settled money does not add up"));
                        }
                    }
                    if c.in_flight as usize
                        != chain
                            .pending
                            .iter()
                            .filter(|p| matches!(&p.kind, Kind::Callback { args, .. } if callback_channel(args) == Some(*id)))
                            .map(|p| p.waits_on.len())
                            .sum::<usize>()
                    {
                        violated(format!("channel {id}: in_flight {} disagrees with the pending payouts", c.in_flight));
                    }
                }
                None => {
                    if f_payee > 0 || f_payer > 0 {
                        violated(format!("channel {id}: deleted with payouts in flight"));
                    }
                    if m.paid_payee + m.paid_payer != m.funded {
                        violated(format!("channel {id}: deleted, but paid out {} of {}", m.paid_payee + m.paid_payer, m.funded));
                    }
                    if m.paid_payee > m.max_signed() {
                        violated(format!("channel {id}: payee paid above every signed voucher"));
                    }
                }
            }
        }
        for id in a.channels.keys() {
            if !self.channels.contains_key(id) {
                violated(format!("channel {id} exists but was never opened"));
            }
        }
        // Solvency in NEAR: exact at rest.
        let needed = u128::from(chain.storage_usage) * BYTE_COST + a.near_liabilities();
        let Some(surplus) = chain.balance.checked_sub(needed) else {
            violated(format!("insolvent: holds {} but owes {needed}", chain.balance));
        };
        let expected = self.surplus0 + self.fees_in + self.ft_back - self.ft_out;
        if surplus < expected || (at_rest && surplus != expected) {
            violated(format!("spare NEAR {surplus}, expected {expected} (at rest: {at_rest})"));
        }
        // Solvency in every token.
        let mut tokens: Vec<String> = a.channels.values().filter_map(|c| c.token.clone()).collect();
        tokens.push(TOKEN.to_owned());
        tokens.sort();
        tokens.dedup();
        for t in tokens {
            let held = chain.token_balance(&t, CONTRACT);
            let owed = a.token_liabilities(&t);
            if held < owed || (at_rest && held != owed) {
                violated(format!("{t}: holds {held}, channels hold {owed} (at rest: {at_rest})"));
            }
        }
        // No account gained more than valid vouchers paid it (and storage
        // balances others gave it).
        for who in PEOPLE {
            let given = self.given.get(who).copied().unwrap_or(0);
            let earned: u128 = given + self
                .channels
                .values()
                .filter(|m| m.payee == who && m.token.is_none())
                .map(ChannelModel::max_signed)
                .sum::<u128>();
            if chain.wallets.get(who).copied().unwrap_or(0) > WALLET + earned {
                violated(format!("{who} gained more NEAR than vouchers paid it"));
            }
            for t in [TOKEN, FAKE_TOKEN] {
                let earned: u128 = self
                    .channels
                    .values()
                    .filter(|m| m.payee == who && m.token.as_deref() == Some(t))
                    .map(ChannelModel::max_signed)
                    .sum();
                if chain.token_balance(t, who) > TOKENS + earned {
                    violated(format!("{who} gained more {t} than vouchers paid it"));
                }
            }
        }
    }

    /// Ends everything: registers everyone with the token, delivers every
    /// receipt, closes every channel (the payee with its best voucher, or
    /// the payer unilaterally), withdraws what is owed, revokes every key and
    /// withdraws every storage balance. Then only the contract's own state
    /// is left and everyone has exactly what the vouchers say.
    pub fn drain(&mut self) {
        if let Some(r) = self.chain.registered.get_mut(TOKEN) {
            r.push(UNREGISTERED.to_owned());
        }
        self.note(Step::Register { token: TOKEN.to_owned(), who: UNREGISTERED.to_owned() });
        self.deliver_all();
        for _round in 0..4 {
            let a = self.audit();
            if a.channels.is_empty() {
                break;
            }
            for (id, c) in &a.channels {
                let id = *id;
                if c.settled {
                    for (who, owed) in [(&c.payee, c.owed_payee), (&c.payer, c.owed_payer)] {
                        if owed > 0 && who != GHOST {
                            let _ = self.call("withdraw_owed", &format!(r#"{{"channel_id":"{id}"}}"#), who, 0);
                        }
                    }
                } else if c.payee != GHOST {
                    let best = self.channels[&id].signed.iter().copied().filter(|s| *s <= c.deposit).max().unwrap_or(0);
                    let args = if best > c.claimed {
                        let (_, sig, _) = self.voucher_for(id, best);
                        format!(r#"{{"channel_id":"{id}","final_voucher":{{"cumulative":"{best}","signature":"{sig}"}}}}"#)
                    } else {
                        format!(r#"{{"channel_id":"{id}"}}"#)
                    };
                    if let Err(e) = self.call("close", &args, &c.payee.clone(), 0) {
                        violated(format!("the payee cannot close channel {id}: {e}"));
                    }
                } else {
                    if c.closing_since_ns == 0 {
                        let _ = self.call("start_close", &format!(r#"{{"channel_id":"{id}"}}"#), &c.payer.clone(), 0);
                    }
                    self.advance(31 * 24 * HOUR_NS);
                    if let Err(e) = self.call("finalize", &format!(r#"{{"channel_id":"{id}"}}"#), &c.payer.clone(), 0) {
                        violated(format!("the payer cannot finalize channel {id}: {e}"));
                    }
                }
                self.deliver_all();
            }
        }
        let a = self.audit();
        if !a.channels.is_empty() {
            violated(format!("channels left after the drain: {:?}", a.channels));
        }
        for (who, keys) in &a.endpoints {
            for k in keys {
                if let Err(e) = self.call("revoke_endpoint", &format!(r#"{{"key":"{}"}}"#, hex(k)), who, 0) {
                    violated(format!("{who} cannot revoke its key: {e}"));
                }
            }
        }
        let a = self.audit();
        for who in a.accounts.keys() {
            if who != GHOST {
                if let Err(e) = self.call("storage_withdraw", "{}", who, 1) {
                    violated(format!("{who} cannot withdraw its storage: {e}"));
                }
                self.fees_in += 1;
            }
        }
        self.deliver_all();
        // Only the contract's own state, the owner's allow-list additions and
        // what was deposited for the account that does not exist are left.
        let a = self.audit();
        for who in a.accounts.keys() {
            if who != GHOST {
                violated(format!("{who}'s record is left after it withdrew everything"));
            }
        }
        for who in PEOPLE {
            let put = self.storage_in.get(who).copied().unwrap_or(0);
            let out = self.storage_out.get(who).copied().unwrap_or(0);
            if put - out != u128::from(a.owned(who)) * BYTE_COST {
                violated(format!("{who} got back {out} of the {put} it put into storage"));
            }
        }
        for (id, m) in &self.channels {
            if m.paid_payee + m.paid_payer != m.funded || m.paid_payee > m.max_signed() {
                violated(format!("channel {id}: in the end paid {} + {} of {}", m.paid_payee, m.paid_payer, m.funded));
            }
        }
        self.check();
        self.checkpoint();
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
            Err(e) => format!("{method}: {}", e.chars().take(48).collect::<String>()),
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

fn endpoint_key(sel: u8) -> String {
    if sel % 8 == 7 {
        return "00".repeat(32);
    }
    hex(&Keypair::from_seed(&[100 + sel % 4; 32]).public().to_bytes())
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
