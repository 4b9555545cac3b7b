//! # agentwire-protocol
//!
//! The AgentWire protocol core: identities, agent records, the CBOR wire
//! format, Noise session state machines, payment vouchers, receipts and
//! channel ledgers. It is sans-IO and deterministic: no sockets, no async
//! runtime, no clock reads and no hidden randomness (time is an argument,
//! randomness an injected RNG). The `agent` crate drives it over the network.
//!
//! With `default-features = false` only [`account`] and [`voucher`] are built
//! (Borsh, no crypto), which is what the NEAR channel contract compiles to wasm.
//!
//! The normative description of every byte is in `spec/` at the repository root.

#![forbid(unsafe_code)]

pub mod account;
pub mod money;
pub mod voucher;

#[cfg(feature = "full")]
pub mod cbor;
#[cfg(feature = "full")]
pub mod chat;
#[cfg(feature = "full")]
pub mod codes;
#[cfg(feature = "full")]
pub mod dht;
#[cfg(feature = "full")]
pub mod exchange;
#[cfg(feature = "full")]
pub mod identity;
#[cfg(feature = "full")]
pub mod ledger;
#[cfg(feature = "full")]
pub mod payment;
#[cfg(feature = "full")]
pub mod pricing;
#[cfg(feature = "full")]
pub mod receipts;
#[cfg(feature = "full")]
pub mod record;
#[cfg(feature = "full")]
pub mod session;
#[cfg(feature = "full")]
pub mod wire;

#[cfg(feature = "full")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "full")]
#[doc(hidden)]
pub mod testing;
