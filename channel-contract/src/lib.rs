//! AgentWire NEAR payment-channel contract.
//!
//! This crate compiles `agentwire-protocol` without default features, so the
//! contract verifies vouchers over exactly the bytes that payers sign (spec
//! §8.1) — the same code, not a copy.
//!
//! Layout: [`channel`] holds every rule of a channel as plain, natively tested
//! Rust (who may do what, how much moves); [`weak_keys`] refuses small-order
//! keys without curve arithmetic; [`contract`] is the NEAR layer (NEAR and
//! NEP-141 deposits, payouts with rollback callbacks), [`registry`] the
//! endpoint registry and the views, [`accounting`] who pays for every stored
//! byte; [`store`] is the stored layout, [`events`] the NEP-297 events,
//! and [`entry`] the wasm entry points with their hand-written JSON ([`json`]).
//! near-sdk is used for its host-function wrappers only: its `#[near]` macro
//! would bring serde_json, which was most of the wasm's size and load gas.
//!
//! Build for the chain (NEAR protocol version 88 or later, near-sdk 5.30):
//! `RUSTFLAGS="-C link-arg=-s --cfg near" cargo build -p agentwire-channel --target wasm32-unknown-unknown --profile contract`
//! (the `contract` profile keeps overflow checks and aborts on panic).

pub mod accounting;
pub mod channel;
pub mod contract;
pub mod entry;
pub mod events;
#[cfg(not(target_arch = "wasm32"))]
pub mod fuzzing;
#[cfg(all(not(target_arch = "wasm32"), any(test, feature = "fuzzing")))]
pub mod harness;
pub mod json;
pub mod registry;
pub mod store;
pub mod weak_keys;

#[cfg(test)]
mod contract_tests;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::voucher::{ChannelId, Voucher};

/// The bytes an on-chain `ed25519_verify` must check a claim's signature
/// against: the voucher as this contract (`current_account`) understands it.
/// The contract never takes these bytes from the caller.
pub fn voucher_message(current_account: &str, channel_id: ChannelId, epoch: u64, cumulative: u128) -> Option<Vec<u8>> {
    let contract = AccountId::new(current_account).ok()?;
    Some(Voucher { contract, channel_id, epoch, cumulative }.signing_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_binds_the_contract_account() {
        let a = voucher_message("channels.near", 1, 1, 5).unwrap();
        let b = voucher_message("other.near", 1, 1, 5).unwrap();
        assert_ne!(a, b);
        assert!(voucher_message("Not An Account", 1, 1, 5).is_none());
    }
}
