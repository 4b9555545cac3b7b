//! The payee's money state as store operations: admission, settlement,
//! claims. [`PayeeMoney`] is what a brand's endpoint asks of it, so that the
//! same payee runs on the embedded store of one endpoint
//! ([`super::LedgerMoney`]) or on a database shared by a fleet of endpoints
//! (`crate::pay::pg::PgMoney`, feature `postgres`).
//!
//! Every implementation keeps the rules of the protocol's
//! [`agentwire_protocol::ledger::PayeeLedger`] (spec §8.3, §13.10): checks in
//! the spec's order, nothing changed by a refused voucher, an admission
//! resolved only once what its answer needs is durable, a refund durable
//! before the statement saying so leaves, claims of what was charged and
//! never more than the durable voucher.

use agentwire_protocol::identity::PublicKey;
use agentwire_protocol::ledger::{Admission, ChannelRef};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::{PaymentError, SignedVoucher};
use futures::future::BoxFuture;

use crate::pay::store::StoreError;

/// A channel as the chain describes it, checked by the payee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainChannel {
    /// The channel instance.
    pub channel: ChannelRef,
    /// The payer's voucher key (valid, not weak).
    pub payer_key: PublicKey,
    /// What it is funded in.
    pub currency: Currency,
    /// Deposited.
    pub deposit: u128,
    /// Claimed on chain.
    pub claimed: u128,
    /// A close has started.
    pub closing: bool,
}

/// Why the money store refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The ledger refused the payment (the payer must act).
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The embedded store failed: nothing more is admitted on the channel until a restart.
    #[error("payment state store: {0}")]
    Store(#[from] StoreError),
    /// The shared database cannot be reached or refused the operation; nothing
    /// was charged for the request (retry later).
    #[error("payment database: {0}")]
    Unavailable(String),
    /// The stored state of a channel cannot be right (refused, not trusted).
    #[error("stored state of channel {channel}: {reason}")]
    Corrupt {
        /// The channel id.
        channel: u64,
        /// What is wrong.
        reason: String,
    },
    /// The admission was taken back (this endpoint was taken for dead and
    /// its unsettled admissions forgiven): its answer must not leave.
    #[error("the admission was forgiven while this endpoint was unreachable")]
    Lost,
    /// The channel is not loaded (check it on chain first).
    #[error("channel {0} is not loaded")]
    NotLoaded(u64),
    /// Too many channels in memory.
    #[error("too many channels")]
    Full,
}

/// A channel's money state, for display and claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMoney {
    /// The channel instance.
    pub channel: ChannelRef,
    /// Highest durable voucher total.
    pub durable: u128,
    /// Charged for answers settled.
    pub charged: u128,
    /// Credit owed to the payer.
    pub forgiven: u128,
    /// What a claim now would add.
    pub unclaimed: u128,
    /// A close has started.
    pub closing: bool,
}

/// What a claim takes: the durable voucher and the total to bring the claim to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimDue {
    /// The channel instance.
    pub channel: ChannelRef,
    /// The durable voucher that authorises it.
    pub voucher: SignedVoucher,
    /// The claimed total to reach (what was charged).
    pub target: u128,
}

/// The payee's money state.
///
/// An [`Admission`] returned by [`PayeeMoney::admit`] is the store's handle
/// on that admission: pass it back unchanged to [`PayeeMoney::delivering`]
/// and [`PayeeMoney::settle`] (its `version` is the ledger version for the
/// embedded store, the admission's number for a shared one).
pub trait PayeeMoney: Send + Sync + 'static {
    /// Makes a channel checked on chain known (restoring its persisted state),
    /// or refreshes its deposit, claimed total and closing flag.
    fn load(&self, channel: ChainChannel) -> BoxFuture<'_, Result<(), MoneyError>>;
    /// Whether a channel is known, and its currency.
    fn currency(&self, channel_id: u64) -> Option<Currency>;
    /// Admits `voucher` for `price`; resolves once what the answer needs is
    /// durable. `delivering`: the answer's content leaves as soon as this
    /// resolves (a metered stream's increment), see [`PayeeMoney::delivering`].
    fn admit<'a>(
        &'a self,
        channel_id: u64,
        voucher: &'a SignedVoucher,
        price: u128,
        delivering: bool,
    ) -> BoxFuture<'a, Result<Admission, MoneyError>>;
    /// The first content of a streamed answer is about to leave before its
    /// settlement: from now on the admission counts as charged even if this
    /// endpoint dies before settling it. Resolves once that is durable.
    fn delivering<'a>(&'a self, channel_id: u64, admission: &'a Admission) -> BoxFuture<'a, Result<(), MoneyError>> {
        let _ = (channel_id, admission);
        Box::pin(async { Ok(()) })
    }
    /// Settles an answer at `actual` (0: failed); resolves once the charge
    /// (and a refund) is durable: the answer, receipt or statement may leave then.
    fn settle(&self, channel_id: u64, admission: Admission, actual: u128) -> BoxFuture<'_, Result<(), MoneyError>>;
    /// The highest voucher accepted on a channel.
    fn highest(&self, channel_id: u64) -> BoxFuture<'_, Result<Option<SignedVoucher>, MoneyError>>;
    /// The deposit grew on chain (a lower value changes nothing).
    fn top_up(&self, channel_id: u64, deposit: u128) -> BoxFuture<'_, Result<(), MoneyError>>;
    /// A close started on chain: admit nothing more.
    fn start_close(&self, channel_id: u64) -> BoxFuture<'_, Result<(), MoneyError>>;
    /// Channels with something to claim.
    fn claims_due(&self) -> BoxFuture<'_, Result<Vec<ClaimDue>, MoneyError>>;
    /// The chain paid out up to `claimed`.
    fn record_claim(&self, channel_id: u64, claimed: u128) -> BoxFuture<'_, Result<(), MoneyError>>;
    /// Every known channel's state.
    fn channels(&self) -> BoxFuture<'_, Result<Vec<ChannelMoney>, MoneyError>>;
    /// Whether this endpoint is the one that claims and watches the chain
    /// now. A shared store takes or renews a lease (and, holding it, takes
    /// back what dead endpoints admitted and never settled); an embedded one
    /// is the only endpoint and always is.
    fn claimer(&self) -> BoxFuture<'_, Result<bool, MoneyError>> {
        Box::pin(async { Ok(true) })
    }
    /// This endpoint stops: gives up the claimer's lease and leaves the fleet.
    fn leave(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
