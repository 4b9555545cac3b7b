//! The stored layout: short raw keys, one Borsh record per channel and one
//! record per account.
//!
//! Why not near-sdk collections: every storage read costs 56 Ggas and every
//! write 64 Ggas at protocol 88, whatever the size. The old layout (a channel
//! map plus two `IterableSet` indexes, each a vector, a position map and a
//! length) took 9 writes and 7 reads to open a channel; this one takes 4 and 3.
//! An account's record carries both its storage balance and its channel index,
//! so the payer's charge and its index entry are one write.

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

/// `ChannelV1::indexed` bit: the id is in the payer's index.
pub const IN_PAYER_INDEX: u8 = 1;
/// `ChannelV1::indexed` bit: the id is in the payee's index.
pub const IN_PAYEE_INDEX: u8 = 2;

/// A stored channel, layout version 1 (its id is the key).
#[near(serializers = [borsh])]
#[derive(Clone, Debug)]
pub struct ChannelV1 {
    pub epoch: u64,
    pub payer: AccountId,
    pub payee: AccountId,
    pub payer_key: [u8; 32],
    pub currency: Currency,
    pub deposit: u128,
    pub claimed: u128,
    pub challenge_period_ns: u64,
    /// When a unilateral close started, ns; 0 while open. Fixed-size (not an
    /// `Option`) so starting a close writes no new bytes that nobody paid for.
    pub closing_since_ns: u64,
    /// Which account indexes list this channel ([`IN_PAYER_INDEX`], [`IN_PAYEE_INDEX`]).
    pub indexed: u8,
}

/// Stored channels, tagged by layout version so later layouts can migrate lazily.
#[near(serializers = [borsh])]
pub enum VersionedChannel {
    /// Layout 1.
    V1(ChannelV1),
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

fn borsh_read<T: near_sdk::borsh::BorshDeserialize>(key: &[u8]) -> Option<T> {
    let bytes = env::storage_read(key)?;
    Some(near_sdk::borsh::from_slice(&bytes).unwrap_or_else(|_| env::panic_str("corrupt state")))
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

pub fn channel(id: u64) -> Option<ChannelV1> {
    borsh_read::<VersionedChannel>(&channel_key(id)).map(|VersionedChannel::V1(c)| c)
}

pub fn set_channel(id: u64, ch: ChannelV1) {
    borsh_write(&channel_key(id), &VersionedChannel::V1(ch));
}

pub fn remove_channel(id: u64) {
    env::storage_remove(&channel_key(id));
}

pub fn tokens() -> Vec<AccountId> {
    borsh_read(TOKENS_KEY).unwrap_or_default()
}

pub fn set_tokens(t: &Vec<AccountId>) {
    borsh_write(TOKENS_KEY, t);
}

/// An account's record: unused storage balance and indexed channel ids.
/// Stored as `LE128(balance) || LE64(id)*`; absent when both are empty.
#[derive(Default)]
pub struct Account {
    pub balance: u128,
    pub ids: Vec<u64>,
    /// Bytes the record takes in storage now (0 if absent), counted as NEAR does.
    stored: u64,
}

impl Account {
    fn key(account: &str) -> Vec<u8> {
        prefixed(b'a', account.as_bytes())
    }

    pub fn load(account: &str) -> Account {
        let key = Account::key(account);
        let Some(v) = env::storage_read(&key) else { return Account::default() };
        if v.len() < 16 || (v.len() - 16) % 8 != 0 {
            env::panic_str("corrupt state");
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&v[..16]);
        let ids = v[16..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Account { balance: u128::from_le_bytes(b), ids, stored: key.len() as u64 + v.len() as u64 + RECORD_OVERHEAD }
    }

    /// Storage bytes this record will take once saved.
    pub fn size(&self, account: &str) -> u64 {
        if self.balance == 0 && self.ids.is_empty() {
            0
        } else {
            1 + account.len() as u64 + 16 + 8 * self.ids.len() as u64 + RECORD_OVERHEAD
        }
    }

    /// Growth in bytes (negative: shrink) that saving will cause, for a
    /// record that is kept (non-zero balance or ids): its size does not depend
    /// on the balance's value, so it can be measured before the balance is final.
    pub fn growth_if_kept(&self, account: &str) -> i128 {
        i128::from(1 + account.len() as u64 + 16 + 8 * self.ids.len() as u64 + RECORD_OVERHEAD)
            - i128::from(self.stored)
    }

    pub fn save(&self, account: &str) {
        let key = Account::key(account);
        if self.size(account) == 0 {
            if self.stored > 0 {
                env::storage_remove(&key);
            }
            return;
        }
        let mut v = Vec::with_capacity(16 + 8 * self.ids.len());
        v.extend_from_slice(&self.balance.to_le_bytes());
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

fn owed_key(account: &str, currency: &Currency) -> Vec<u8> {
    let mut k = prefixed(b'o', account.as_bytes());
    k.push(b'/');
    if let Currency::Token(t) = currency {
        k.extend_from_slice(t.as_bytes());
    }
    k
}

/// Owed balance of `account` in `currency`.
pub fn owed(account: &str, currency: &Currency) -> u128 {
    env::storage_read(&owed_key(account, currency))
        .and_then(|v| <[u8; 16]>::try_from(v.as_slice()).ok())
        .map_or(0, u128::from_le_bytes)
}

/// Sets an owed balance; 0 deletes the entry.
pub fn set_owed(account: &str, currency: &Currency, amount: u128) {
    let key = owed_key(account, currency);
    if amount == 0 {
        env::storage_remove(&key);
    } else {
        env::storage_write(&key, &amount.to_le_bytes());
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

/// Saves an account's endpoint keys; an empty list deletes the record.
pub fn set_endpoints(account: &str, keys: &[[u8; 32]]) {
    let key = endpoints_key(account);
    if keys.is_empty() {
        env::storage_remove(&key);
    } else {
        env::storage_write(&key, &keys.concat());
    }
}
