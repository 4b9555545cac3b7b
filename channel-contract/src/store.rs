//! The stored layout: short raw keys, one Borsh record per channel and one
//! record per account.
//!
//! Why not near-sdk collections: every storage read costs 56 Ggas and every
//! write 64 Ggas at protocol 88, whatever the size. The old layout (a channel
//! map plus two `IterableSet` indexes, each a vector, a position map and a
//! length) took 9 writes and 7 reads to open a channel; this one takes 4 and 3.
//! An account's record carries both its storage balance and its channel index,
//! so the payer's charge and its index entry are one write. Every record has
//! exactly one payer per byte (see [`Account`] and spec/contract.md §6.5).

use near_sdk::{env, near, AccountId};

/// Key of the contract's configuration (near-sdk's usual state key).
pub const STATE_KEY: &[u8] = b"STATE";
const TOKENS_KEY: &[u8] = b"t";
/// NEAR counts this many bytes per storage record on top of key and value.
pub const RECORD_OVERHEAD: u64 = 40;
/// Most channels listed in one account's index; past it a channel is still
/// fully usable but `channels_of` does not list it. Bounds what an account's
/// record costs to rewrite (8 bytes per id) however many channels others open to it.
pub const MAX_INDEXED: usize = 512;

/// What a channel is funded in.
#[near(serializers = [borsh])]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Currency {
    /// yoctoNEAR.
    Near,
    /// A NEP-141 token (its contract account).
    Token(AccountId),
}

/// The contract's configuration, under `STATE`.
#[near(serializers = [borsh])]
pub struct Config {
    pub state_version: u16,
    pub owner: AccountId,
    pub epoch: u64,
    pub next_channel_id: u64,
    pub min_challenge_period_ns: u64,
}

/// `StoredChannel::indexed` bit: the id is in the payer's index.
pub const IN_PAYER_INDEX: u8 = 1;
/// `StoredChannel::indexed` bit: the id is in the payee's index.
pub const IN_PAYEE_INDEX: u8 = 2;

/// A stored channel, layout version 2 (its id is the key). Every field has
/// a fixed size for the channel's life, so no change of state writes bytes
/// that nobody paid for: the payer pays for the whole record at open.
#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct StoredChannel {
    pub epoch: u64,
    pub payer: AccountId,
    pub payee: AccountId,
    pub payer_key: [u8; 32],
    pub currency: Currency,
    pub deposit: u128,
    pub claimed: u128,
    pub challenge_period_ns: u64,
    /// When a unilateral close started, ns; 0 while open (fixed-size, not an `Option`).
    pub closing_since_ns: u64,
    /// Which account indexes list this channel ([`IN_PAYER_INDEX`], [`IN_PAYEE_INDEX`]).
    pub indexed: u8,
    /// `close` or `finalize` ran: no more vouchers, only payouts left.
    pub settled: bool,
    /// Payouts sent whose callback has not run yet: the record stays until it has.
    pub in_flight: u32,
    /// Failed payouts kept for the payee (settled channels only), until `withdraw_owed`.
    pub owed_payee: u128,
    /// Failed refunds kept for the payer (settled channels only), until `withdraw_owed`.
    pub owed_payer: u128,
}

/// Stored channels, tagged by layout version.
#[near(serializers = [borsh])]
pub enum VersionedChannel {
    /// Layout 1 (before owed balances moved into the channel): no longer read.
    Retired,
    /// Layout 2.
    V2(StoredChannel),
}

fn channel_key(id: u64) -> [u8; 9] {
    let mut k = [b'c'; 9];
    k[1..].copy_from_slice(&id.to_le_bytes());
    k
}

fn prefixed(p: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(p);
    k.extend_from_slice(rest);
    k
}

fn corrupt() -> ! {
    env::panic_str("corrupt state")
}

fn borsh_read<T: near_sdk::borsh::BorshDeserialize>(key: &[u8]) -> Option<T> {
    let bytes = env::storage_read(key)?;
    Some(near_sdk::borsh::from_slice(&bytes).unwrap_or_else(|_| corrupt()))
}

fn borsh_write<T: near_sdk::borsh::BorshSerialize>(key: &[u8], v: &T) {
    env::storage_write(key, &near_sdk::borsh::to_vec(v).unwrap_or_else(|_| env::abort()));
}

pub fn config() -> Option<Config> {
    borsh_read(STATE_KEY)
}

pub fn set_config(c: &Config) {
    borsh_write(STATE_KEY, c);
}

pub fn channel(id: u64) -> Option<StoredChannel> {
    match borsh_read::<VersionedChannel>(&channel_key(id))? {
        VersionedChannel::V2(c) => Some(c),
        VersionedChannel::Retired => corrupt(),
    }
}

pub fn set_channel(id: u64, ch: StoredChannel) {
    borsh_write(&channel_key(id), &VersionedChannel::V2(ch));
}

pub fn remove_channel(id: u64) {
    env::storage_remove(&channel_key(id));
}

/// Storage bytes a channel's record takes, as NEAR counts them (key, value
/// and the per-record overhead). Fixed for the channel's life.
pub fn channel_bytes(ch: &StoredChannel) -> u64 {
    // Tag, then the Borsh fields: two account ids and the currency vary.
    let currency = match &ch.currency {
        Currency::Near => 1,
        Currency::Token(t) => 1 + 4 + t.len() as u64,
    };
    let value = 1
        + 8
        + (4 + ch.payer.len() as u64)
        + (4 + ch.payee.len() as u64)
        + 32
        + currency
        + 16
        + 16
        + 8
        + 8
        + 1
        + 1
        + 4
        + 16
        + 16;
    9 + value + RECORD_OVERHEAD
}

pub fn tokens() -> Vec<AccountId> {
    borsh_read(TOKENS_KEY).unwrap_or_default()
}

pub fn set_tokens(t: &Vec<AccountId>) {
    borsh_write(TOKENS_KEY, t);
}

/// An account's record: its unused storage balance, what it pays for
/// elsewhere, who paid for the record itself, and its channel index.
/// Stored as `LE128(balance) || LE32(pins) || u8(len) || sponsor || LE64(id)*`.
///
/// Who pays for which bytes (spec/contract.md §6.5):
/// - the record's base ([`Account::base_bytes`]): the account itself, or the
///   `sponsor` whose `open` created it for a payee that had no record;
/// - each 8-byte index entry: the payer of that channel.
#[derive(Default)]
pub struct Account {
    pub balance: u128,
    /// Things this account paid for that are stored elsewhere and credit it
    /// when deleted: channels it opened, records it sponsors, its endpoint
    /// keys. The record is never deleted while this is above 0, so a credit
    /// always has somewhere to go.
    pub pins: u32,
    /// Who paid for this record's base (`None`: the account itself).
    pub sponsor: Option<AccountId>,
    pub ids: Vec<u64>,
    /// Whether the record is in storage once saved (it was loaded, or has
    /// been created in this call; cleared to delete it).
    pub present: bool,
    /// Whether it was in storage when loaded.
    stored: bool,
}

impl Account {
    fn key(account: &str) -> Vec<u8> {
        prefixed(b'a', account.as_bytes())
    }

    pub fn load(account: &str) -> Account {
        let Some(v) = env::storage_read(&Account::key(account)) else { return Account::default() };
        Account::decode(&v).unwrap_or_else(|| corrupt())
    }

    /// Decodes a stored value (host builds also use it to audit raw state).
    pub fn decode(v: &[u8]) -> Option<Account> {
        let balance = u128::from_le_bytes(v.get(..16)?.try_into().ok()?);
        let pins = u32::from_le_bytes(v.get(16..20)?.try_into().ok()?);
        let len = *v.get(20)? as usize;
        let sponsor = match len {
            0 => None,
            _ => Some(core::str::from_utf8(v.get(21..21 + len)?).ok()?.parse().ok()?),
        };
        let rest = v.get(21 + len..)?;
        if rest.len() % 8 != 0 {
            return None;
        }
        let ids = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Some(Account { balance, pins, sponsor, ids, present: true, stored: true })
    }

    /// Storage bytes of the record without its index entries: key, the fixed
    /// fields, the sponsor's id and NEAR's per-record overhead.
    pub fn base_bytes(account: &str, sponsor: Option<&AccountId>) -> u64 {
        1 + account.len() as u64 + 16 + 4 + 1 + sponsor.map_or(0, |s| s.len() as u64) + RECORD_OVERHEAD
    }

    /// Nothing is kept in or pinned by the record.
    pub fn is_empty(&self) -> bool {
        self.balance == 0 && self.pins == 0 && self.ids.is_empty()
    }

    pub fn save(&self, account: &str) {
        let key = Account::key(account);
        if !self.present {
            if self.stored {
                env::storage_remove(&key);
            }
            return;
        }
        let sponsor = self.sponsor.as_ref().map_or("", |s| s.as_str());
        let mut v = Vec::with_capacity(21 + sponsor.len() + 8 * self.ids.len());
        v.extend_from_slice(&self.balance.to_le_bytes());
        v.extend_from_slice(&self.pins.to_le_bytes());
        v.push(sponsor.len() as u8);
        v.extend_from_slice(sponsor.as_bytes());
        for id in &self.ids {
            v.extend_from_slice(&id.to_le_bytes());
        }
        env::storage_write(&key, &v);
    }

    /// Adds `id` to the index if there is room; returns whether it did.
    pub fn index(&mut self, id: u64) -> bool {
        let room = self.ids.len() < MAX_INDEXED;
        if room {
            self.ids.push(id);
        }
        room
    }

    /// Removes `id` from the index, keeping the order of the others.
    pub fn unindex(&mut self, id: u64) {
        if let Some(pos) = self.ids.iter().position(|x| *x == id) {
            self.ids.remove(pos);
        }
    }
}

fn endpoints_key(account: &str) -> Vec<u8> {
    prefixed(b'e', account.as_bytes())
}

/// An account's endpoint keys, in registration order.
pub fn endpoints(account: &str) -> Vec<[u8; 32]> {
    env::storage_read(&endpoints_key(account))
        .map(|v| v.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).collect())
        .unwrap_or_default()
}

/// Storage bytes of an endpoint record holding `n` keys (0 if none).
pub fn endpoint_bytes(account: &str, n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        1 + account.len() as u64 + 32 * n as u64 + RECORD_OVERHEAD
    }
}

/// Saves an account's endpoint keys; an empty list deletes the record.
pub fn set_endpoints(account: &str, keys: &[[u8; 32]]) {
    let key = endpoints_key(account);
    if keys.is_empty() {
        env::storage_remove(&key);
    } else {
        env::storage_write(&key, &keys.concat());
    }
}
