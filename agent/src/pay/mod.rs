//! Pay-per-query: both sides of a payment channel, over the chain and the
//! store as traits.
//!
//! - [`payee`]: the brand's side: channels checked on chain, admission made
//!   durable before the answer leaves, answers settled (not charged when they
//!   fail), claims of what was charged, a watcher for closes.
//! - [`payer`]: the user's side: channels opened and topped up, payments from
//!   the ledger (new totals reserved durably, credit re-used), resync after a
//!   restart, receipt and statement checks.
//! - [`client`]: one paid query end to end.
//! - [`chain`], [`stores`]: what each side needs from the chain and the store;
//!   [`store`]: the embedded crash-safe log; `pg` (feature `postgres`): the
//!   money store a fleet of endpoints shares; [`testing`]: in-memory doubles
//!   that fail on purpose.

pub mod chain;
pub mod client;
mod codec;
pub mod limits;
pub mod payee;
pub mod payer;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod store;
pub mod stores;
#[doc(hidden)]
pub mod testing;

pub use chain::{NearChain, PayeeChain, PayerChain};
pub use client::{query, query_deferred, QueryError, QueryOutcome, ReceiptDue, Settlement};
pub use limits::{DepositOffer, LimitError, Limits, Spending};
pub use payee::{LedgerMoney, Payee, PayeeConfig, PayeeMoney, Price};
pub use payer::{ChannelStatus, PayError, Payer, PayerConfig};
pub use stores::{PayeeStore, PayerStore};

/// Serialises a u128 amount as a decimal string (JSON numbers cannot hold it).
pub(crate) mod amount {
    pub fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
}
