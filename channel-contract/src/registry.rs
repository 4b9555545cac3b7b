//! The endpoint registry, the views and the owner's one method: what the
//! contract answers about itself, and the keys accounts declare to speak for
//! them (spec/contract.md §3.7, §4.16–§4.19).

use near_sdk::json_types::U64;
use near_sdk::{env, AccountId};

use crate::accounting::{self, Records};
use crate::contract::{
    config, hex, parse_hex, view, ChannelContract, ChannelView, ConfigView, MAX_ENDPOINT_KEYS, MAX_PAGE,
};
use crate::events;
use crate::store::{self, Account};
use crate::weak_keys::is_small_order;

impl ChannelContract {
    /// Registers an agent identity key (hex ed25519) that speaks for the
    /// caller's account; its storage comes from the caller's storage balance.
    pub fn register_endpoint(&mut self, key: String) {
        let account = env::predecessor_account_id();
        let bytes = parse_hex::<32>(&key, "key");
        if is_small_order(&bytes) {
            env::panic_str("key is a small-order point");
        }
        let mut keys = store::endpoints(account.as_str());
        if keys.len() >= MAX_ENDPOINT_KEYS as usize {
            env::panic_str("too many endpoint keys");
        }
        if keys.contains(&bytes) {
            env::panic_str("key already registered");
        }
        keys.push(bytes);
        let grown = store::endpoint_bytes(account.as_str(), keys.len())
            - store::endpoint_bytes(account.as_str(), keys.len() - 1);
        store::set_endpoints(account.as_str(), &keys);
        let mut rec = Account::load(account.as_str());
        if keys.len() == 1 {
            // The record stays while the key record exists, to take its credit.
            accounting::pin(&mut rec);
        }
        accounting::charge(&mut rec, grown);
        rec.save(account.as_str());
        events::endpoint("endpoint_registered", account.as_str(), &hex(&bytes));
    }

    /// Revokes one of the caller's endpoint keys; its storage is credited back.
    pub fn revoke_endpoint(&mut self, key: String) {
        let account = env::predecessor_account_id();
        let bytes = parse_hex::<32>(&key, "key");
        let mut keys = store::endpoints(account.as_str());
        let Some(pos) = keys.iter().position(|k| *k == bytes) else { env::panic_str("no such endpoint key") };
        keys.remove(pos);
        let freed = store::endpoint_bytes(account.as_str(), keys.len() + 1)
            - store::endpoint_bytes(account.as_str(), keys.len());
        store::set_endpoints(account.as_str(), &keys);
        let mut recs = Records::default();
        if keys.is_empty() {
            recs.release(&account, freed);
        } else {
            let rec = recs.get(&account);
            if !rec.present {
                env::panic_str("corrupt state");
            }
            accounting::add(rec, accounting::cost(freed));
        }
        recs.save();
        events::endpoint("endpoint_revoked", account.as_str(), &hex(&bytes));
    }

    /// Whether `key` (hex) is registered for `account_id`.
    pub fn is_endpoint(&self, account_id: AccountId, key: String) -> bool {
        let key = key.to_ascii_lowercase();
        store::endpoints(account_id.as_str()).iter().any(|k| hex(k) == key)
    }

    /// The keys registered for `account_id`.
    pub fn endpoint_keys(&self, account_id: AccountId) -> Vec<String> {
        store::endpoints(account_id.as_str()).iter().map(|k| hex(k)).collect()
    }

    /// One channel (settled ones too, until every payout of them is done).
    pub fn get_channel(&self, channel_id: U64) -> Option<ChannelView> {
        store::channel(channel_id.0).map(|c| view(channel_id.0, &c))
    }

    /// Channels where `account_id` is payer or payee, paged.
    pub fn channels_of(&self, account_id: AccountId, from_index: Option<u32>, limit: Option<u32>) -> Vec<ChannelView> {
        Account::load(account_id.as_str())
            .ids
            .iter()
            .skip(from_index.unwrap_or(0) as usize)
            .take(limit.unwrap_or(MAX_PAGE).min(MAX_PAGE) as usize)
            .filter_map(|id| self.get_channel(U64(*id)))
            .collect()
    }

    /// The contract's configuration.
    pub fn config(&self) -> ConfigView {
        let c = config();
        ConfigView {
            owner: c.owner,
            state_version: c.state_version,
            epoch: U64(c.epoch),
            min_challenge_period_ns: U64(c.min_challenge_period_ns),
            tokens: store::tokens(),
        }
    }

    /// Accepts another NEP-141 token (owner only); its storage comes from the
    /// owner's storage balance and stays (tokens are never removed).
    pub fn add_token(&mut self, token: AccountId) {
        let owner = env::predecessor_account_id();
        if owner != config().owner {
            env::panic_str("owner only");
        }
        let mut t = store::tokens();
        if !t.contains(&token) {
            let grown = 4 + token.len() as u64;
            t.push(token);
            store::set_tokens(&t);
            let mut rec = Account::load(owner.as_str());
            accounting::charge(&mut rec, grown);
            rec.save(owner.as_str());
        }
    }
}
