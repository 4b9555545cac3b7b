//! The contract's methods as plain Rust: storage, deposits in NEAR or an
//! allow-listed NEP-141 token, payouts with rollback callbacks, NEP-297
//! events, views and the endpoint registry. Every rule about a channel itself
//! is in [`crate::channel`]; [`crate::entry`] turns JSON into these calls.
//!
//! Storage: every stored byte has exactly one payer, who is credited when it
//! is freed (spec/contract.md §6.5). An account pays from its storage balance
//! (`storage_deposit`, or NEAR attached to `open` beyond the deposit) for its
//! own record, the channels it opens (with their index entries) and its
//! endpoint keys; a payer pays for the record of a payee that had none, and
//! that record remembers it. A payout whose transfer fails is rolled back
//! (claims) or kept in the channel as owed to its receiver (`withdraw_owed`):
//! a channel stays stored until every payout of it is done, so money never
//! disappears and every owed amount sits in storage its payer paid for.

use near_sdk::json_types::{U128, U64};
use near_sdk::{env, AccountId, Gas, GasWeight, NearToken, PromiseError, PromiseIndex};

use crate::accounting::{self, Records};
use crate::channel::{Channel, ChannelError, Settlement, MAX_CHALLENGE_PERIOD_NS};
use crate::events;
use crate::json::{push_dec, push_str};
pub use crate::store::Currency;
use crate::store::{self, Account, Config, StoredChannel, IN_PAYEE_INDEX, IN_PAYER_INDEX};

/// Version of the stored layout (`VersionedChannel` variants follow it).
pub const STATE_VERSION: u16 = 2;
/// Gas for an `ft_transfer` payout.
const GAS_FT_TRANSFER: Gas = Gas::from_tgas(10);
/// Gas for a payout callback.
const GAS_CALLBACK: Gas = Gas::from_tgas(10);
/// Most endpoint keys one account may register.
pub const MAX_ENDPOINT_KEYS: u32 = 16;
/// Most channels returned by one `channels_of` call.
pub const MAX_PAGE: u32 = 100;
/// No deployment may set a minimum challenge period below one hour (Filecoin's
/// one-epoch period is the cautionary tale).
pub const MIN_CHALLENGE_PERIOD_FLOOR_NS: u64 = 3_600 * 1_000_000_000;
/// Smallest `storage_deposit`: 1 000 bytes, far more than the largest account
/// record it may create (126 bytes), which is paid from it.
pub const MIN_STORAGE_DEPOSIT: u128 = 10_000_000_000_000_000_000_000; // 0.01 NEAR
/// Storage price, yoctoNEAR per byte (protocol constant; `env::storage_byte_cost`).
pub const BYTE_COST: u128 = 10_000_000_000_000_000_000;

/// A channel as views return it (amounts as strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelView {
    pub id: U64,
    pub epoch: U64,
    pub payer: AccountId,
    pub payee: AccountId,
    /// Hex of the payer's voucher key.
    pub payer_key: String,
    pub currency: Currency,
    pub deposit: U128,
    pub claimed: U128,
    pub challenge_period_ns: U64,
    /// `None` while open; when the close started (for a settled channel that
    /// was never closing: when it was closed).
    pub closing_since_ns: Option<U64>,
    /// Closed or finalized: only owed payouts are left.
    pub settled: bool,
    /// Failed payouts kept for the payee / the payer (`withdraw_owed`).
    pub owed_to_payee: U128,
    pub owed_to_payer: U128,
}

/// The contract's configuration as `config` returns it.
pub struct ConfigView {
    pub owner: AccountId,
    pub state_version: u16,
    pub epoch: U64,
    pub min_challenge_period_ns: U64,
    pub tokens: Vec<AccountId>,
}

/// A final voucher passed to `close`.
pub struct FinalVoucher {
    pub cumulative: U128,
    /// Hex of the 64-byte ed25519 signature.
    pub signature: String,
}

/// `msg` of `ft_transfer_call` to this contract.
pub enum TokenMessage {
    /// Open a channel funded with the transferred tokens.
    Open { payee: AccountId, payer_key: String, challenge_period_ns: U64 },
    /// Add the transferred tokens to a channel.
    TopUp { channel_id: U64 },
}

/// AgentWire payment channels. Stateless handle: all state is in storage
/// (see [`crate::store`]), read and written per call.
#[derive(Default)]
pub struct ChannelContract;

pub(crate) fn fail(e: ChannelError) -> ! {
    env::panic_str(&e.message())
}

fn ok<T>(r: Result<T, ChannelError>) -> T {
    r.unwrap_or_else(|e| fail(e))
}

fn proto_account(a: &str) -> agentwire_protocol::account::AccountId {
    agentwire_protocol::account::AccountId::new(a)
        .unwrap_or_else(|_| env::panic_str("account id outside the AgentWire account rules"))
}

pub(crate) fn parse_hex<const N: usize>(s: &str, what: &str) -> [u8; N] {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        env::panic_str(&[what, ": expected ", if N == 32 { "32" } else { "64" }, " bytes of hex"].concat());
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks(2).enumerate() {
        match ((pair[0] as char).to_digit(16), (pair[1] as char).to_digit(16)) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => env::panic_str(&[what, ": invalid hex"].concat()),
        }
    }
    out
}

pub(crate) fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    b.iter().flat_map(|x| [D[(x >> 4) as usize] as char, D[(x & 15) as usize] as char]).collect()
}

fn verify(msg: &[u8], sig: &[u8; 64], key: &[u8; 32]) -> bool {
    env::ed25519_verify(sig, msg, key)
}

pub(crate) fn config() -> Config {
    store::config().unwrap_or_else(|| env::panic_str("The contract is not initialized"))
}

fn load_channel(id: u64) -> StoredChannel {
    store::channel(id).unwrap_or_else(|| env::panic_str("no such channel"))
}

fn core(id: u64, ch: &StoredChannel) -> Channel {
    Channel {
        id,
        epoch: ch.epoch,
        payer: proto_account(ch.payer.as_str()),
        payee: proto_account(ch.payee.as_str()),
        payer_key: ch.payer_key,
        deposit: ch.deposit,
        claimed: ch.claimed,
        challenge_period_ns: ch.challenge_period_ns,
        closing_since_ns: (ch.closing_since_ns != 0).then_some(ch.closing_since_ns),
        settled: ch.settled,
    }
}

pub(crate) fn view(id: u64, ch: &StoredChannel) -> ChannelView {
    ChannelView {
        id: U64(id),
        epoch: U64(ch.epoch),
        payer: ch.payer.clone(),
        payee: ch.payee.clone(),
        payer_key: hex(&ch.payer_key),
        currency: ch.currency.clone(),
        deposit: U128(ch.deposit),
        claimed: U128(ch.claimed),
        challenge_period_ns: U64(ch.challenge_period_ns),
        closing_since_ns: (ch.closing_since_ns != 0).then_some(U64(ch.closing_since_ns)),
        settled: ch.settled,
        owed_to_payee: U128(ch.owed_payee),
        owed_to_payer: U128(ch.owed_payer),
    }
}

fn add_u32(a: u32, b: u32) -> u32 {
    a.checked_add(b).unwrap_or_else(|| fail(ChannelError::Overflow))
}

/// The epoch of a new deployment: the first 8 bytes of the block's random
/// seed, so a voucher for a channel of another deployment on the same account
/// (or another chain with the same account names) names another epoch.
fn fresh_epoch() -> u64 {
    let seed = env::random_seed();
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(seed.iter()) {
        *d = *s;
    }
    u64::from_le_bytes(b)
}

impl ChannelContract {
    /// Deploys the contract. `tokens` are the NEP-141 contracts accepted as channel currency.
    pub fn new(owner_id: AccountId, min_challenge_period_ns: U64, tokens: Vec<AccountId>) -> Self {
        if store::config().is_some() {
            env::panic_str("The contract has already been initialized");
        }
        if min_challenge_period_ns.0 < MIN_CHALLENGE_PERIOD_FLOOR_NS {
            env::panic_str("minimum challenge period must be at least one hour");
        }
        if min_challenge_period_ns.0 > MAX_CHALLENGE_PERIOD_NS {
            env::panic_str("minimum challenge period above the maximum");
        }
        let mut list: Vec<AccountId> = Vec::new();
        for t in tokens {
            if !list.contains(&t) {
                list.push(t);
            }
        }
        store::set_tokens(&list);
        store::set_config(&Config {
            state_version: STATE_VERSION,
            owner: owner_id,
            epoch: fresh_epoch(),
            next_channel_id: 0,
            min_challenge_period_ns: min_challenge_period_ns.0,
        });
        ChannelContract
    }

    // ---- storage ----

    /// Adds the attached NEAR to the caller's (or `account_id`'s) storage
    /// balance, less the account record's storage if this creates it (or
    /// takes it over from the payer that created it).
    pub fn storage_deposit(&mut self, account_id: Option<AccountId>) -> U128 {
        let account = account_id.unwrap_or_else(env::predecessor_account_id);
        let amount = env::attached_deposit().as_yoctonear();
        if amount < MIN_STORAGE_DEPOSIT {
            env::panic_str("attach at least 0.01 NEAR to deposit for storage");
        }
        let mut recs = Records::default();
        let own = recs.own(&account);
        let rec = recs.get(&account);
        accounting::add(rec, amount);
        accounting::charge(rec, own);
        let balance = rec.balance;
        recs.save();
        U128(balance)
    }

    /// Unused storage balance of `account_id`.
    pub fn storage_balance_of(&self, account_id: AccountId) -> U128 {
        U128(Account::load(account_id.as_str()).balance)
    }

    /// Withdraws `amount` (default: all) of the caller's unused storage
    /// balance. A record left with nothing in it and paid for by the caller is
    /// deleted, and its storage is paid out too. A record that stays is
    /// pinned until the transfer's callback, so a failed transfer always has
    /// a record to come back to.
    pub fn storage_withdraw(&mut self, amount: Option<U128>) -> PromiseIndex {
        if env::attached_deposit() != NearToken::from_yoctonear(1) {
            env::panic_str("attach exactly 1 yoctoNEAR");
        }
        let account = env::predecessor_account_id();
        let mut rec = Account::load(account.as_str());
        let take = amount.map_or(rec.balance, |x| x.0);
        if take > rec.balance {
            env::panic_str("not that much unused storage balance");
        }
        rec.balance -= take;
        let mut payout = take;
        let kept = !(rec.present && rec.sponsor.is_none() && rec.is_empty());
        if kept {
            accounting::pin(&mut rec);
        } else {
            rec.present = false;
            payout += accounting::cost(Account::base_bytes(account.as_str(), None));
        }
        if payout == 0 {
            env::panic_str("not that much unused storage balance");
        }
        rec.save(account.as_str());
        let p = env::promise_batch_create(&account);
        env::promise_batch_action_transfer(p, NearToken::from_yoctonear(payout));
        let mut args = String::from("{\"account\":");
        push_str(&mut args, account.as_str());
        args.push_str(",\"amount\":");
        push_dec(&mut args, payout);
        args.push_str(if kept { ",\"kept\":true}" } else { ",\"kept\":false}" });
        callback(p, "on_storage_withdraw", args)
    }

    /// Callback of `storage_withdraw`: unpins a record that stayed, and puts a
    /// failed transfer's amount back into the storage balance (a deleted
    /// record comes back, paid from that amount, which included its storage).
    pub fn on_storage_withdraw(
        &mut self,
        account: AccountId,
        amount: U128,
        kept: bool,
        result: Result<(), PromiseError>,
    ) {
        let mut recs = Records::default();
        if kept {
            let rec = recs.get(&account);
            if !rec.present {
                env::panic_str("corrupt state");
            }
            accounting::unpin(rec);
            if result.is_err() {
                accounting::add(rec, amount.0);
            }
        } else if result.is_err() {
            let own = recs.own(&account);
            let rec = recs.get(&account);
            accounting::add(rec, amount.0);
            accounting::charge(rec, own);
        }
        recs.save();
    }

    // ---- opening and funding ----

    /// Opens a NEAR channel to `payee`, funded with `deposit`; NEAR attached
    /// beyond `deposit` pays for storage (the unused rest stays in the storage balance).
    pub fn open(&mut self, payee: AccountId, payer_key: String, challenge_period_ns: U64, deposit: U128) -> U64 {
        let payer = env::predecessor_account_id();
        let attached = env::attached_deposit().as_yoctonear();
        if attached < deposit.0 {
            env::panic_str("attach at least the deposit");
        }
        U64(open_channel(
            payer,
            payee,
            &payer_key,
            challenge_period_ns.0,
            Currency::Near,
            deposit.0,
            attached - deposit.0,
        ))
    }

    /// NEP-141 deposits: `msg` is a JSON [`TokenMessage`]. Only allow-listed
    /// tokens; on any refusal the call fails and the token refunds the sender.
    pub fn ft_on_transfer(&mut self, sender_id: AccountId, amount: U128, msg: String) -> U128 {
        let token = env::predecessor_account_id();
        if !store::tokens().contains(&token) {
            env::panic_str("token not accepted by this contract");
        }
        let parsed = crate::entry::token_message(&msg)
            .unwrap_or_else(|| env::panic_str("msg must be {\"Open\":{..}} or {\"TopUp\":{..}}"));
        match parsed {
            TokenMessage::Open { payee, payer_key, challenge_period_ns } => {
                open_channel(sender_id, payee, &payer_key, challenge_period_ns.0, Currency::Token(token), amount.0, 0);
            }
            TokenMessage::TopUp { channel_id } => {
                top_up_channel(channel_id.0, &sender_id, &Currency::Token(token), amount.0);
            }
        }
        U128(0)
    }

    /// Adds the attached NEAR to a NEAR channel's deposit (payer only, not while closing).
    pub fn top_up(&mut self, channel_id: U64) {
        let amount = env::attached_deposit().as_yoctonear();
        top_up_channel(channel_id.0, &env::predecessor_account_id(), &Currency::Near, amount);
    }

    // ---- paying out ----

    /// The payee claims up to `cumulative` with the payer's voucher signature (hex).
    pub fn claim(&mut self, channel_id: U64, cumulative: U128, signature: String) -> PromiseIndex {
        let sig = parse_hex::<64>(&signature, "signature");
        let contract = proto_account(env::current_account_id().as_str());
        let caller = proto_account(env::predecessor_account_id().as_str());
        let id = channel_id.0;
        let mut ch = load_channel(id);
        let mut c = core(id, &ch);
        let payout = ok(c.claim(&contract, &caller, cumulative.0, &sig, &verify));
        ch.claimed = c.claimed;
        ch.in_flight = add_u32(ch.in_flight, 1);
        events::claimed(id, ch.claimed, payout);
        let (payee, currency) = (ch.payee.clone(), ch.currency.clone());
        store::set_channel(id, ch);
        pay(&payee, &currency, payout, id, true)
    }

    /// The payee closes at once: claims `final_voucher` (if above the claimed
    /// total) and refunds the rest to the payer.
    pub fn close(&mut self, channel_id: U64, final_voucher: Option<FinalVoucher>) {
        let contract = proto_account(env::current_account_id().as_str());
        let caller = proto_account(env::predecessor_account_id().as_str());
        let id = channel_id.0;
        let ch = load_channel(id);
        let mut c = core(id, &ch);
        let fv = final_voucher.map(|v| (v.cumulative.0, parse_hex::<64>(&v.signature, "signature")));
        let settlement = ok(c.close(&contract, &caller, fv, &verify));
        settle(id, ch, c.claimed, settlement, "closed");
    }

    /// The payer starts a unilateral close; the payee may still claim until `finalize`.
    pub fn start_close(&mut self, channel_id: U64) -> U64 {
        let caller = proto_account(env::predecessor_account_id().as_str());
        let id = channel_id.0;
        let mut ch = load_channel(id);
        let mut c = core(id, &ch);
        let ends = ok(c.start_close(&caller, env::block_timestamp()));
        ch.closing_since_ns = c.closing_since_ns.map_or(0, |t| t.max(1));
        events::close_started(id, ends);
        store::set_channel(id, ch);
        U64(ends)
    }

    /// After the challenge period, refunds the unclaimed deposit to the payer.
    pub fn finalize(&mut self, channel_id: U64) {
        let caller = proto_account(env::predecessor_account_id().as_str());
        let id = channel_id.0;
        let ch = load_channel(id);
        let mut c = core(id, &ch);
        let settlement = ok(c.finalize(&caller, env::block_timestamp()));
        settle(id, ch, c.claimed, settlement, "finalized");
    }

    /// Pays the caller (the payee or the payer of a settled channel) what is
    /// owed to it there after failed payouts.
    pub fn withdraw_owed(&mut self, channel_id: U64) -> PromiseIndex {
        let caller = env::predecessor_account_id();
        let id = channel_id.0;
        let mut ch = load_channel(id);
        let to_payee = if caller == ch.payee {
            true
        } else if caller == ch.payer {
            false
        } else {
            fail(ChannelError::NotParty)
        };
        let owed = if to_payee { &mut ch.owed_payee } else { &mut ch.owed_payer };
        let amount = core::mem::take(owed);
        if amount == 0 {
            env::panic_str("nothing owed");
        }
        ch.in_flight = add_u32(ch.in_flight, 1);
        let currency = ch.currency.clone();
        store::set_channel(id, ch);
        pay(&caller, &currency, amount, id, to_payee)
    }

    /// Callback of a payout of channel `channel_id` (to its payee or payer):
    /// on failure, undoes the claim if the channel is still open, or keeps the
    /// amount owed to its receiver; deletes a settled channel with nothing left.
    pub fn on_payout(
        &mut self,
        channel_id: U64,
        to_payee: bool,
        amount: U128,
        result: Result<(), PromiseError>,
    ) -> bool {
        let id = channel_id.0;
        let mut ch = load_channel(id);
        ch.in_flight = ch.in_flight.saturating_sub(1);
        let paid = result.is_ok();
        if !paid {
            match ch.claimed.checked_sub(amount.0) {
                Some(claimed) if to_payee && !ch.settled => {
                    ch.claimed = claimed;
                    events::claim_rolled_back(id, amount.0);
                }
                _ => owe(id, &mut ch, to_payee, amount.0),
            }
        }
        finish(id, ch);
        paid
    }

    /// Callback of a settlement that paid both parties: each failed transfer
    /// stays owed to its receiver in the channel.
    pub fn on_settle(&mut self, channel_id: U64, payout: U128, refund: U128, results: [Result<(), PromiseError>; 2]) {
        let id = channel_id.0;
        let mut ch = load_channel(id);
        ch.in_flight = ch.in_flight.saturating_sub(2);
        if results[0].is_err() {
            owe(id, &mut ch, true, payout.0);
        }
        if results[1].is_err() {
            owe(id, &mut ch, false, refund.0);
        }
        finish(id, ch);
    }
}

/// Keeps a failed payout in the channel for its receiver.
fn owe(id: u64, ch: &mut StoredChannel, to_payee: bool, amount: u128) {
    let (owed, receiver) = if to_payee { (&mut ch.owed_payee, &ch.payee) } else { (&mut ch.owed_payer, &ch.payer) };
    *owed = owed.checked_add(amount).unwrap_or_else(|| fail(ChannelError::Overflow));
    events::payout_owed(id, receiver.as_str(), &ch.currency, amount);
}

/// Saves a channel, or deletes it once it is settled and nothing of it is in
/// flight or owed (its storage then goes back to its payer).
fn finish(id: u64, ch: StoredChannel) {
    if ch.settled && ch.in_flight == 0 && ch.owed_payee == 0 && ch.owed_payer == 0 {
        accounting::release_channel(id, &ch);
    } else {
        store::set_channel(id, ch);
    }
}

/// Creates the `on_*` callback of promise `p` and makes it the call's result.
fn callback(p: PromiseIndex, method: &str, args: String) -> PromiseIndex {
    let me = env::current_account_id();
    let cb = env::promise_batch_then(p, &me);
    env::promise_batch_action_function_call_weight(
        cb,
        method,
        args.as_bytes(),
        NearToken::from_yoctonear(0),
        GAS_CALLBACK,
        GasWeight(1),
    );
    cb
}

/// The transfer of `amount` to `to` in `currency`, without a callback.
fn transfer(to: &AccountId, currency: &Currency, amount: u128) -> PromiseIndex {
    match currency {
        Currency::Near => {
            let p = env::promise_batch_create(to);
            env::promise_batch_action_transfer(p, NearToken::from_yoctonear(amount));
            p
        }
        Currency::Token(token) => {
            let p = env::promise_batch_create(token);
            let mut a = String::from("{\"receiver_id\":");
            push_str(&mut a, to.as_str());
            a.push_str(",\"amount\":");
            push_dec(&mut a, amount);
            a.push_str(",\"memo\":\"agentwire channel payout\"}");
            env::promise_batch_action_function_call_weight(
                p,
                "ft_transfer",
                a.as_bytes(),
                NearToken::from_yoctonear(1),
                GAS_FT_TRANSFER,
                GasWeight(1),
            );
            p
        }
    }
}

/// Sends `amount` of channel `id` to `to` in `currency`, then `on_payout`;
/// returns the callback's promise.
fn pay(to: &AccountId, currency: &Currency, amount: u128, id: u64, to_payee: bool) -> PromiseIndex {
    let p = transfer(to, currency, amount);
    let mut args = String::from("{\"channel_id\":");
    push_dec(&mut args, u128::from(id));
    args.push_str(if to_payee { ",\"to_payee\":true" } else { ",\"to_payee\":false" });
    args.push_str(",\"amount\":");
    push_dec(&mut args, amount);
    args.push('}');
    callback(p, "on_payout", args)
}

fn open_channel(
    payer: AccountId,
    payee: AccountId,
    payer_key: &str,
    period_ns: u64,
    currency: Currency,
    deposit: u128,
    storage_credit: u128,
) -> u64 {
    let key = parse_hex::<32>(payer_key, "payer_key");
    let mut cfg = config();
    let id = cfg.next_channel_id;
    ok(Channel::open(
        id,
        cfg.epoch,
        proto_account(payer.as_str()),
        proto_account(payee.as_str()),
        key,
        deposit,
        period_ns,
        cfg.min_challenge_period_ns,
    ));
    cfg.next_channel_id = id.checked_add(1).unwrap_or_else(|| fail(ChannelError::Overflow));
    store::set_config(&cfg);
    // The payer pays for everything this stores: its own record if new, the
    // payee's if new (remembered as the payee's sponsor), both index entries
    // and the channel.
    let mut recs = Records::default();
    let mut bytes = recs.own(&payer);
    if !recs.get(&payee).present {
        bytes += recs.sponsor(&payee, &payer);
    }
    let mut indexed = 0;
    if recs.get(&payer).index(id) {
        indexed |= IN_PAYER_INDEX;
        bytes += 8;
    }
    if recs.get(&payee).index(id) {
        indexed |= IN_PAYEE_INDEX;
        bytes += 8;
    }
    let ch = StoredChannel {
        epoch: cfg.epoch,
        payer: payer.clone(),
        payee: payee.clone(),
        payer_key: key,
        currency,
        deposit,
        claimed: 0,
        challenge_period_ns: period_ns,
        closing_since_ns: 0,
        indexed,
        settled: false,
        in_flight: 0,
        owed_payee: 0,
        owed_payer: 0,
    };
    bytes += store::channel_bytes(&ch);
    let p = recs.get(&payer);
    accounting::pin(p);
    accounting::add(p, storage_credit);
    accounting::charge(p, bytes);
    store::set_channel(id, ch);
    recs.save();
    events::channel_opened(id, cfg.epoch, payer.as_str(), payee.as_str(), deposit);
    id
}

fn top_up_channel(id: u64, caller: &AccountId, currency: &Currency, amount: u128) {
    let mut ch = load_channel(id);
    if &ch.currency != currency {
        env::panic_str("currency differs from the channel's");
    }
    let mut c = core(id, &ch);
    ok(c.top_up(&proto_account(caller.as_str()), amount));
    ch.deposit = c.deposit;
    events::topped_up(id, ch.deposit);
    store::set_channel(id, ch);
}

/// Settles a channel that `close` or `finalize` ended: no voucher verifies
/// against it any more; the money is sent, and the record (key and all) is
/// deleted once every payout of it is done.
fn settle(id: u64, mut ch: StoredChannel, claimed: u128, s: Settlement, name: &str) {
    ch.claimed = claimed;
    ch.settled = true;
    if ch.closing_since_ns == 0 {
        ch.closing_since_ns = env::block_timestamp().max(1);
    }
    events::settled(name, id, s.payout, s.refund);
    let sent = u32::from(s.payout > 0) + u32::from(s.refund > 0);
    ch.in_flight = add_u32(ch.in_flight, sent);
    match (s.payout > 0, s.refund > 0) {
        // Both: one callback for the two transfers (`on_settle`), which saves a
        // receipt and a function call (about 0.38 Tgas) over two `on_payout`s.
        (true, true) => {
            let both = env::promise_and(&[
                transfer(&ch.payee, &ch.currency, s.payout),
                transfer(&ch.payer, &ch.currency, s.refund),
            ]);
            let mut args = String::from("{\"channel_id\":");
            push_dec(&mut args, u128::from(id));
            args.push_str(",\"payout\":");
            push_dec(&mut args, s.payout);
            args.push_str(",\"refund\":");
            push_dec(&mut args, s.refund);
            args.push('}');
            callback(both, "on_settle", args);
        }
        (true, false) => {
            pay(&ch.payee, &ch.currency, s.payout, id, true);
        }
        (false, true) => {
            pay(&ch.payer, &ch.currency, s.refund, id, false);
        }
        (false, false) => {}
    }
    finish(id, ch);
}
