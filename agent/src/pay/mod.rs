//! Pay-per-query: the durable store both sides keep their money state in,
//! the payee's side (admit, persist before serve, receipts, claims) and the
//! payer's side (channels, vouchers, resync, receipt checks).

mod codec;
pub mod payee;
pub mod store;

pub use payee::{Payee, PayeeConfig, Price};
pub mod payer;

pub use payer::{ChannelStatus, PayError, Payer, PayerConfig};

/// Serialises a u128 amount as a decimal string (JSON numbers cannot hold it).
pub(crate) mod amount {
    pub fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
}
pub mod client;
pub use client::{query, QueryError, QueryOutcome};

/// Whether a channel funded in `chain` (as the contract reports it) is in
/// the currency a record prices in.
pub(crate) fn same_currency(chain: &crate::near::Currency, priced: &agentwire_protocol::record::Currency) -> bool {
    use agentwire_protocol::record::Currency;
    match (chain, priced) {
        (crate::near::Currency::Near, Currency::Near) => true,
        (crate::near::Currency::Token(a), Currency::Token(b)) => a.as_str() == b.as_str(),
        _ => false,
    }
}
