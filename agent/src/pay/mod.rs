//! Pay-per-query: the durable store both sides keep their money state in,
//! the payee's side (admit, persist before serve, receipts, claims) and the
//! payer's side (channels, vouchers, resync, receipt checks).

pub mod store;
mod codec;
pub mod payee;

pub use payee::{Payee, PayeeConfig, Price};
