//! The NEAR entry points: storage, deposits in NEAR or an allow-listed
//! NEP-141 token, payouts with rollback callbacks, NEP-297 events, views and
//! the endpoint registry. Every rule about a channel itself is in
//! [`crate::channel`]; this layer only moves state and money.
//!
//! Storage is paid by whoever creates it, from a per-account storage balance
//! (`storage_deposit`, or NEAR attached to `open` beyond the deposit), and is
//! credited back when the entry is deleted. A payout whose transfer fails is
//! rolled back (claims) or kept as an owed balance the account can withdraw
//! (`withdraw_owed`): money never disappears.

use near_sdk::json_types::{U128, U64};
use near_sdk::store::{IterableSet, LookupMap};
use near_sdk::{
    env, ext_contract, near, require, AccountId, BorshStorageKey, Gas, NearToken, PanicOnDefault, Promise,
    PromiseError, PromiseOrValue,
};

use crate::channel::{Channel, ChannelError, Settlement, MAX_CHALLENGE_PERIOD_NS};
use crate::weak_keys::is_small_order;

/// Version of the stored layout (`VersionedChannel` variants follow it).
pub const STATE_VERSION: u16 = 1;
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
/// Smallest `storage_deposit`: enough for the balance entry it creates.
pub const MIN_STORAGE_DEPOSIT: u128 = 10_000_000_000_000_000_000_000; // 0.01 NEAR

#[ext_contract(ext_ft)]
#[allow(dead_code)]
trait FungibleToken {
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>);
}

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
enum StorageKey {
    Tokens,
    Channels,
    AccountChannels,
    AccountChannelSet { account_hash: Vec<u8> },
    Endpoints,
    EndpointSet { account_hash: Vec<u8> },
    StorageBalances,
    Owed,
}

/// What a channel is funded in.
#[near(serializers = [borsh, json])]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Currency {
    /// yoctoNEAR.
    Near,
    /// A NEP-141 token (its contract account).
    Token(AccountId),
}

/// A stored channel, layout version 1.
#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct ChannelV1 {
    id: u64,
    epoch: u64,
    payer: AccountId,
    payee: AccountId,
    payer_key: [u8; 32],
    currency: Currency,
    deposit: u128,
    claimed: u128,
    challenge_period_ns: u64,
    closing_since_ns: Option<u64>,
}

/// Stored channels, tagged by layout version so later layouts can migrate lazily.
#[near(serializers = [borsh])]
pub enum VersionedChannel {
    /// Layout 1.
    V1(ChannelV1),
}

/// A channel as views return it (amounts as strings).
#[near(serializers = [json])]
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
    pub closing_since_ns: Option<U64>,
}

/// The contract's configuration as `config` returns it.
#[near(serializers = [json])]
pub struct ConfigView {
    pub owner: AccountId,
    pub state_version: u16,
    pub epoch: U64,
    pub min_challenge_period_ns: U64,
    pub tokens: Vec<AccountId>,
}

/// A final voucher passed to `close`.
#[near(serializers = [json])]
pub struct FinalVoucher {
    pub cumulative: U128,
    /// Hex of the 64-byte ed25519 signature.
    pub signature: String,
}

/// `msg` of `ft_transfer_call` to this contract.
#[near(serializers = [json])]
pub enum TokenMessage {
    /// Open a channel funded with the transferred tokens.
    Open { payee: AccountId, payer_key: String, challenge_period_ns: U64 },
    /// Add the transferred tokens to a channel.
    TopUp { channel_id: U64 },
}

/// AgentWire payment channels.
#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct ChannelContract {
    state_version: u16,
    owner: AccountId,
    epoch: u64,
    next_channel_id: u64,
    min_challenge_period_ns: u64,
    tokens: IterableSet<AccountId>,
    channels: LookupMap<u64, VersionedChannel>,
    account_channels: LookupMap<AccountId, IterableSet<u64>>,
    endpoints: LookupMap<AccountId, IterableSet<String>>,
    storage_balances: LookupMap<AccountId, u128>,
    owed: LookupMap<(AccountId, Currency), u128>,
}

fn fail(e: ChannelError) -> ! {
    env::panic_str(&e.to_string())
}

fn ok<T>(r: Result<T, ChannelError>) -> T {
    r.unwrap_or_else(|e| fail(e))
}

fn proto_account(a: &AccountId) -> agentwire_protocol::account::AccountId {
    agentwire_protocol::account::AccountId::new(a.as_str())
        .unwrap_or_else(|_| env::panic_str("account id outside the AgentWire account rules"))
}

fn parse_hex<const N: usize>(s: &str, what: &str) -> [u8; N] {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        env::panic_str(&format!("{what}: expected {N} bytes of hex"));
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        match (hi, lo) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => env::panic_str(&format!("{what}: invalid hex")),
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn verify(msg: &[u8], sig: &[u8; 64], key: &[u8; 32]) -> bool {
    env::ed25519_verify(sig, msg, key)
}

fn event(name: &str, data: String) {
    env::log_str(&format!(
        r#"EVENT_JSON:{{"standard":"agentwire-channels","version":"1.0.0","event":"{name}","data":[{data}]}}"#
    ));
}

impl ChannelV1 {
    fn core(&self) -> Channel {
        Channel {
            id: self.id,
            epoch: self.epoch,
            payer: proto_account(&self.payer),
            payee: proto_account(&self.payee),
            payer_key: self.payer_key,
            deposit: self.deposit,
            claimed: self.claimed,
            challenge_period_ns: self.challenge_period_ns,
            closing_since_ns: self.closing_since_ns,
        }
    }

    fn absorb(&mut self, c: &Channel) {
        self.deposit = c.deposit;
        self.claimed = c.claimed;
        self.closing_since_ns = c.closing_since_ns;
    }

    fn view(&self) -> ChannelView {
        ChannelView {
            id: U64(self.id),
            epoch: U64(self.epoch),
            payer: self.payer.clone(),
            payee: self.payee.clone(),
            payer_key: hex(&self.payer_key),
            currency: self.currency.clone(),
            deposit: U128(self.deposit),
            claimed: U128(self.claimed),
            challenge_period_ns: U64(self.challenge_period_ns),
            closing_since_ns: self.closing_since_ns.map(U64),
        }
    }
}

#[near]
impl ChannelContract {
    /// Deploys the contract. `tokens` are the NEP-141 contracts accepted as channel currency.
    /// Only the contract account itself may initialise (deploy and init in one batch).
    #[init]
    #[private]
    pub fn new(owner_id: AccountId, min_challenge_period_ns: U64, tokens: Vec<AccountId>) -> Self {
        require!(
            min_challenge_period_ns.0 >= MIN_CHALLENGE_PERIOD_FLOOR_NS,
            "minimum challenge period must be at least one hour"
        );
        require!(min_challenge_period_ns.0 <= MAX_CHALLENGE_PERIOD_NS, "minimum challenge period above the maximum");
        let mut set = IterableSet::new(StorageKey::Tokens);
        for t in tokens {
            set.insert(t);
        }
        ChannelContract {
            state_version: STATE_VERSION,
            owner: owner_id,
            // Block height at deployment: a redeployed contract restarts ids
            // at 0, and this epoch keeps old vouchers from matching new channels.
            epoch: env::block_height(),
            next_channel_id: 0,
            min_challenge_period_ns: min_challenge_period_ns.0,
            tokens: set,
            channels: LookupMap::new(StorageKey::Channels),
            account_channels: LookupMap::new(StorageKey::AccountChannels),
            endpoints: LookupMap::new(StorageKey::Endpoints),
            storage_balances: LookupMap::new(StorageKey::StorageBalances),
            owed: LookupMap::new(StorageKey::Owed),
        }
    }

    // ---- storage ----

    /// Adds the attached NEAR to the caller's (or `account_id`'s) storage balance.
    #[payable]
    pub fn storage_deposit(&mut self, account_id: Option<AccountId>) -> U128 {
        let account = account_id.unwrap_or_else(env::predecessor_account_id);
        let amount = env::attached_deposit().as_yoctonear();
        require!(amount >= MIN_STORAGE_DEPOSIT, "attach at least 0.01 NEAR to deposit for storage");
        U128(self.credit_storage(&account, amount))
    }

    /// Unused storage balance of `account_id`.
    pub fn storage_balance_of(&self, account_id: AccountId) -> U128 {
        U128(self.storage_balances.get(&account_id).copied().unwrap_or(0))
    }

    /// Withdraws `amount` (default: all) of the caller's unused storage balance.
    #[payable]
    pub fn storage_withdraw(&mut self, amount: Option<U128>) -> Promise {
        require!(env::attached_deposit() == NearToken::from_yoctonear(1), "attach exactly 1 yoctoNEAR");
        let account = env::predecessor_account_id();
        let have = self.storage_balances.get(&account).copied().unwrap_or(0);
        let take = amount.map_or(have, |a| a.0);
        require!(take > 0 && take <= have, "not that much unused storage balance");
        self.storage_balances.insert(account.clone(), have - take);
        Promise::new(account.clone()).transfer(NearToken::from_yoctonear(take)).then(
            Self::ext(env::current_account_id()).with_static_gas(GAS_CALLBACK).on_storage_withdraw(account, U128(take)),
        )
    }

    /// Restores a storage withdrawal whose transfer failed.
    #[private]
    pub fn on_storage_withdraw(
        &mut self,
        account: AccountId,
        amount: U128,
        #[callback_result] result: Result<(), PromiseError>,
    ) {
        if result.is_err() {
            self.credit_storage(&account, amount.0);
        }
    }

    // ---- opening and funding ----

    /// Opens a NEAR channel to `payee`, funded with `deposit`; NEAR attached
    /// beyond `deposit` pays for storage (the unused rest stays in the storage balance).
    #[payable]
    pub fn open(&mut self, payee: AccountId, payer_key: String, challenge_period_ns: U64, deposit: U128) -> U64 {
        let payer = env::predecessor_account_id();
        let attached = env::attached_deposit().as_yoctonear();
        require!(attached >= deposit.0, "attach at least the deposit");
        self.credit_storage(&payer, attached - deposit.0);
        U64(self.open_channel(payer, payee, &payer_key, challenge_period_ns.0, Currency::Near, deposit.0))
    }

    /// NEP-141 deposits: `msg` is a JSON [`TokenMessage`]. Only allow-listed
    /// tokens; on any refusal the call fails and the token refunds the sender.
    pub fn ft_on_transfer(&mut self, sender_id: AccountId, amount: U128, msg: String) -> PromiseOrValue<U128> {
        let token = env::predecessor_account_id();
        require!(self.tokens.contains(&token), "token not accepted by this contract");
        let parsed: TokenMessage = near_sdk::serde_json::from_str(&msg)
            .unwrap_or_else(|_| env::panic_str("msg must be {\"Open\":{..}} or {\"TopUp\":{..}}"));
        match parsed {
            TokenMessage::Open { payee, payer_key, challenge_period_ns } => {
                self.open_channel(
                    sender_id,
                    payee,
                    &payer_key,
                    challenge_period_ns.0,
                    Currency::Token(token),
                    amount.0,
                );
            }
            TokenMessage::TopUp { channel_id } => {
                self.top_up_channel(channel_id.0, &sender_id, &Currency::Token(token), amount.0);
            }
        }
        PromiseOrValue::Value(U128(0))
    }

    /// Adds the attached NEAR to a NEAR channel's deposit (payer only, not while closing).
    #[payable]
    pub fn top_up(&mut self, channel_id: U64) {
        let amount = env::attached_deposit().as_yoctonear();
        self.top_up_channel(channel_id.0, &env::predecessor_account_id(), &Currency::Near, amount);
    }

    // ---- paying out ----

    /// The payee claims up to `cumulative` with the payer's voucher signature (hex).
    pub fn claim(&mut self, channel_id: U64, cumulative: U128, signature: String) -> Promise {
        let sig = parse_hex::<64>(&signature, "signature");
        let contract = proto_account(&env::current_account_id());
        let caller = proto_account(&env::predecessor_account_id());
        let mut ch = self.channel(channel_id.0);
        let mut core = ch.core();
        let payout = ok(core.claim(&contract, &caller, cumulative.0, &sig, &verify));
        ch.absorb(&core);
        event(
            "claimed",
            format!(r#"{{"channel_id":"{}","cumulative":"{}","payout":"{}"}}"#, ch.id, ch.claimed, payout),
        );
        let (payee, currency) = (ch.payee.clone(), ch.currency.clone());
        self.channels.insert(channel_id.0, VersionedChannel::V1(ch));
        self.pay(payee, currency, payout, Some(channel_id.0))
    }

    /// The payee closes at once: claims `final_voucher` (if above the claimed
    /// total) and refunds the rest to the payer.
    pub fn close(&mut self, channel_id: U64, final_voucher: Option<FinalVoucher>) {
        let contract = proto_account(&env::current_account_id());
        let caller = proto_account(&env::predecessor_account_id());
        let ch = self.channel(channel_id.0);
        let mut core = ch.core();
        let fv = final_voucher.map(|v| (v.cumulative.0, parse_hex::<64>(&v.signature, "signature")));
        let settlement = ok(core.close(&contract, &caller, fv, &verify));
        self.settle(ch, settlement, "closed");
    }

    /// The payer starts a unilateral close; the payee may still claim until `finalize`.
    pub fn start_close(&mut self, channel_id: U64) -> U64 {
        let caller = proto_account(&env::predecessor_account_id());
        let mut ch = self.channel(channel_id.0);
        let mut core = ch.core();
        let ends = ok(core.start_close(&caller, env::block_timestamp()));
        ch.absorb(&core);
        event("close_started", format!(r#"{{"channel_id":"{}","challenge_ends_ns":"{ends}"}}"#, ch.id));
        self.channels.insert(channel_id.0, VersionedChannel::V1(ch));
        U64(ends)
    }

    /// After the challenge period, refunds the unclaimed deposit to the payer.
    pub fn finalize(&mut self, channel_id: U64) {
        let caller = proto_account(&env::predecessor_account_id());
        let ch = self.channel(channel_id.0);
        let mut core = ch.core();
        let settlement = ok(core.finalize(&caller, env::block_timestamp()));
        self.settle(ch, settlement, "finalized");
    }

    /// Pays out a balance owed after a failed transfer.
    pub fn withdraw_owed(&mut self, currency: Currency) -> Promise {
        let account = env::predecessor_account_id();
        let key = (account.clone(), currency.clone());
        let amount = self.owed.remove(&key).unwrap_or(0);
        require!(amount > 0, "nothing owed");
        self.pay(account, currency, amount, None)
    }

    /// Callback of every payout: on failure, restores the claim (if the
    /// channel still exists) or records the amount as owed.
    #[private]
    pub fn on_payout(
        &mut self,
        receiver: AccountId,
        currency: Currency,
        amount: U128,
        channel_id: Option<U64>,
        #[callback_result] result: Result<(), PromiseError>,
    ) -> bool {
        if result.is_ok() {
            return true;
        }
        if let Some(id) = channel_id {
            if let Some(VersionedChannel::V1(mut ch)) = self.channels.remove(&id.0) {
                let mut core = ch.core();
                if core.rollback_claim(amount.0).is_ok() {
                    ch.absorb(&core);
                    event("claim_rolled_back", format!(r#"{{"channel_id":"{}","amount":"{}"}}"#, id.0, amount.0));
                    self.channels.insert(id.0, VersionedChannel::V1(ch));
                    return false;
                }
                self.channels.insert(id.0, VersionedChannel::V1(ch));
            }
        }
        let currency_json = near_sdk::serde_json::to_string(&currency).unwrap_or_default();
        let key = (receiver.clone(), currency);
        let owed = self.owed.get(&key).copied().unwrap_or(0);
        self.owed.insert(key, owed.saturating_add(amount.0));
        event(
            "payout_owed",
            format!(r#"{{"account":"{receiver}","currency":{currency_json},"amount":"{}"}}"#, amount.0),
        );
        false
    }

    // ---- endpoint registry ----

    /// Registers an agent identity key (hex ed25519) that speaks for the caller's account.
    pub fn register_endpoint(&mut self, key: String) {
        let account = env::predecessor_account_id();
        let bytes = parse_hex::<32>(&key, "key");
        require!(!is_small_order(&bytes), "key is a small-order point");
        let before = env::storage_usage();
        let set = self.endpoint_set(&account);
        require!(set.len() < MAX_ENDPOINT_KEYS, "too many endpoint keys");
        require!(set.insert(hex(&bytes)), "key already registered");
        set.flush();
        self.endpoints.flush();
        self.charge_storage(&account, before);
        event("endpoint_registered", format!(r#"{{"account":"{account}","key":"{}"}}"#, hex(&bytes)));
    }

    /// Revokes one of the caller's endpoint keys; its storage is credited back.
    pub fn revoke_endpoint(&mut self, key: String) {
        let account = env::predecessor_account_id();
        let key = hex(&parse_hex::<32>(&key, "key"));
        let before = env::storage_usage();
        let removed = self.endpoints.get_mut(&account).is_some_and(|s| {
            let r = s.remove(&key);
            s.flush();
            r
        });
        require!(removed, "no such endpoint key");
        self.endpoints.flush();
        self.release_storage(&account, before);
        event("endpoint_revoked", format!(r#"{{"account":"{account}","key":"{key}"}}"#));
    }

    /// Whether `key` (hex) is registered for `account_id`.
    pub fn is_endpoint(&self, account_id: AccountId, key: String) -> bool {
        self.endpoints.get(&account_id).is_some_and(|s| s.contains(&key.to_ascii_lowercase()))
    }

    /// The keys registered for `account_id`.
    pub fn endpoint_keys(&self, account_id: AccountId) -> Vec<String> {
        self.endpoints.get(&account_id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    // ---- views ----

    /// One channel.
    pub fn get_channel(&self, channel_id: U64) -> Option<ChannelView> {
        self.channels.get(&channel_id.0).map(|VersionedChannel::V1(c)| c.view())
    }

    /// Channels where `account_id` is payer or payee, paged.
    pub fn channels_of(&self, account_id: AccountId, from_index: Option<u32>, limit: Option<u32>) -> Vec<ChannelView> {
        let Some(set) = self.account_channels.get(&account_id) else { return Vec::new() };
        set.iter()
            .skip(from_index.unwrap_or(0) as usize)
            .take(limit.unwrap_or(MAX_PAGE).min(MAX_PAGE) as usize)
            .filter_map(|id| self.get_channel(U64(*id)))
            .collect()
    }

    /// The contract's configuration.
    pub fn config(&self) -> ConfigView {
        ConfigView {
            owner: self.owner.clone(),
            state_version: self.state_version,
            epoch: U64(self.epoch),
            min_challenge_period_ns: U64(self.min_challenge_period_ns),
            tokens: self.tokens.iter().cloned().collect(),
        }
    }

    /// Owed balance of `account_id` in `currency` after failed payouts.
    pub fn owed_of(&self, account_id: AccountId, currency: Currency) -> U128 {
        U128(self.owed.get(&(account_id, currency)).copied().unwrap_or(0))
    }

    // ---- owner ----

    /// Accepts another NEP-141 token (owner only).
    pub fn add_token(&mut self, token: AccountId) {
        require!(env::predecessor_account_id() == self.owner, "owner only");
        self.tokens.insert(token);
    }
}

impl ChannelContract {
    fn channel(&self, id: u64) -> ChannelV1 {
        match self.channels.get(&id) {
            Some(VersionedChannel::V1(c)) => c.clone(),
            None => env::panic_str("no such channel"),
        }
    }

    fn credit_storage(&mut self, account: &AccountId, amount: u128) -> u128 {
        let have = self.storage_balances.get(account).copied().unwrap_or(0);
        let now = have.checked_add(amount).unwrap_or_else(|| fail(ChannelError::Overflow));
        if now > 0 {
            self.storage_balances.insert(account.clone(), now);
        }
        now
    }

    /// Charges `account` for storage grown since `before`.
    fn charge_storage(&mut self, account: &AccountId, before: u64) {
        let bytes = env::storage_usage().saturating_sub(before);
        let cost = env::storage_byte_cost().as_yoctonear() * u128::from(bytes);
        let have = self.storage_balances.get(account).copied().unwrap_or(0);
        if have < cost {
            env::panic_str(&format!("storage costs {cost} yoctoNEAR: storage_deposit or attach more"));
        }
        self.storage_balances.insert(account.clone(), have - cost);
    }

    /// Credits `account` for storage freed since `before`.
    fn release_storage(&mut self, account: &AccountId, before: u64) {
        let bytes = before.saturating_sub(env::storage_usage());
        self.credit_storage(account, env::storage_byte_cost().as_yoctonear() * u128::from(bytes));
    }

    fn endpoint_set(&mut self, account: &AccountId) -> &mut IterableSet<String> {
        if !self.endpoints.contains_key(account) {
            let hash = env::sha256(account.as_bytes());
            self.endpoints.insert(account.clone(), IterableSet::new(StorageKey::EndpointSet { account_hash: hash }));
        }
        self.endpoints.get_mut(account).unwrap_or_else(|| env::abort())
    }

    fn index(&mut self, account: &AccountId, id: u64, add: bool) {
        if add && !self.account_channels.contains_key(account) {
            let hash = env::sha256(account.as_bytes());
            self.account_channels
                .insert(account.clone(), IterableSet::new(StorageKey::AccountChannelSet { account_hash: hash }));
        }
        if let Some(set) = self.account_channels.get_mut(account) {
            if add {
                set.insert(id);
            } else {
                set.remove(&id);
            }
            set.flush();
        }
    }

    fn open_channel(
        &mut self,
        payer: AccountId,
        payee: AccountId,
        payer_key: &str,
        period_ns: u64,
        currency: Currency,
        deposit: u128,
    ) -> u64 {
        let key = parse_hex::<32>(payer_key, "payer_key");
        let id = self.next_channel_id;
        let core = ok(Channel::open(
            id,
            self.epoch,
            proto_account(&payer),
            proto_account(&payee),
            key,
            deposit,
            period_ns,
            self.min_challenge_period_ns,
        ));
        self.next_channel_id = id.checked_add(1).unwrap_or_else(|| fail(ChannelError::Overflow));
        let before = env::storage_usage();
        let ch = ChannelV1 {
            id,
            epoch: core.epoch,
            payer: payer.clone(),
            payee: payee.clone(),
            payer_key: key,
            currency,
            deposit,
            claimed: 0,
            challenge_period_ns: period_ns,
            closing_since_ns: None,
        };
        self.channels.insert(id, VersionedChannel::V1(ch.clone()));
        self.index(&payer, id, true);
        self.index(&payee, id, true);
        self.channels.flush();
        self.account_channels.flush();
        self.charge_storage(&payer, before);
        event(
            "channel_opened",
            format!(
                r#"{{"channel_id":"{id}","epoch":"{}","payer":"{payer}","payee":"{payee}","deposit":"{deposit}"}}"#,
                ch.epoch
            ),
        );
        id
    }

    fn top_up_channel(&mut self, id: u64, caller: &AccountId, currency: &Currency, amount: u128) {
        let mut ch = self.channel(id);
        require!(&ch.currency == currency, "currency differs from the channel's");
        let mut core = ch.core();
        ok(core.top_up(&proto_account(caller), amount));
        ch.absorb(&core);
        event("topped_up", format!(r#"{{"channel_id":"{id}","deposit":"{}"}}"#, ch.deposit));
        self.channels.insert(id, VersionedChannel::V1(ch));
    }

    /// Removes a finished channel: key and all, so nothing can verify against it again.
    fn settle(&mut self, ch: ChannelV1, s: Settlement, name: &str) {
        let before = env::storage_usage();
        self.channels.remove(&ch.id);
        self.index(&ch.payer, ch.id, false);
        self.index(&ch.payee, ch.id, false);
        self.channels.flush();
        self.account_channels.flush();
        self.release_storage(&ch.payer, before);
        event(name, format!(r#"{{"channel_id":"{}","payout":"{}","refund":"{}"}}"#, ch.id, s.payout, s.refund));
        if s.payout > 0 {
            let _ = self.pay(ch.payee.clone(), ch.currency.clone(), s.payout, None);
        }
        if s.refund > 0 {
            let _ = self.pay(ch.payer.clone(), ch.currency.clone(), s.refund, None);
        }
    }

    fn pay(&mut self, to: AccountId, currency: Currency, amount: u128, channel_id: Option<u64>) -> Promise {
        let transfer = match &currency {
            Currency::Near => Promise::new(to.clone()).transfer(NearToken::from_yoctonear(amount)),
            Currency::Token(token) => ext_ft::ext(token.clone())
                .with_attached_deposit(NearToken::from_yoctonear(1))
                .with_static_gas(GAS_FT_TRANSFER)
                .ft_transfer(to.clone(), U128(amount), Some("agentwire channel payout".into())),
        };
        transfer.then(Self::ext(env::current_account_id()).with_static_gas(GAS_CALLBACK).on_payout(
            to,
            currency,
            U128(amount),
            channel_id.map(U64),
        ))
    }
}
