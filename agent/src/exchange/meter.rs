//! How a responder charges for requests without knowing about chains: a
//! [`Meter`] admits or refuses each request's voucher (resolving only once
//! the voucher is durable, spec §8.3 "persist before serve"), admits a
//! metered stream's increments, and settles each answer once it is sent or
//! has failed, so that an answer not delivered is not charged (spec §13.10).
//! The transport hashes the request and the answer and signs the receipt.

use agentwire_protocol::ledger::{Admission, ChannelRef};
use agentwire_protocol::money::Currency;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::ErrorCode;
use futures::future::BoxFuture;

use super::service::IncomingRequest;

/// Why a request is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Pay `price` (more) and retry on a new stream; `last_voucher` lets the payer resync (spec §13.6).
    PaymentRequired {
        /// The amount to add to the cumulative total.
        price: u128,
        /// Its currency.
        currency: Currency,
        /// The highest voucher accepted on the payer's channel.
        last_voucher: Option<Box<SignedVoucher>>,
    },
    /// A payment error with its stable code (spec §8.6); the text is for the payer.
    Error(ErrorCode, String),
}

/// A metered stream: after every `chunks` chunks the payer pays `price` more (spec §13.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    /// Chunks each payment buys (the request's own price buys the first ones), at least 1.
    pub chunks: u32,
    /// Price of each further increment.
    pub price: u128,
    /// Its currency.
    pub currency: Currency,
}

/// An admitted, durably paid request, to be settled once its answer is
/// sent or has failed.
#[derive(Debug)]
#[must_use = "a ticket is settled once its answer is sent or has failed"]
pub struct Ticket {
    /// The channel that paid.
    pub channel: ChannelRef,
    /// The charged total including this request (what its receipt states).
    pub cumulative: u128,
    /// Set for a metered streamed answer.
    pub increment: Option<Increment>,
    /// The ledger admissions behind it: the request's, then each increment's.
    pub admissions: Vec<Admission>,
}

impl Ticket {
    /// What the answer was admitted for in total (request and increments).
    pub fn admitted(&self) -> u128 {
        self.admissions.iter().map(|a| a.price).sum()
    }
}

/// How an admitted request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer was sent; `actual` is its charge under ceiling pricing
    /// (`None`: the price admitted).
    Delivered {
        /// The actual charge, at most what was admitted.
        actual: Option<u128>,
    },
    /// The answer failed on the payee's side (handler, upstream, cut): not charged.
    Failed,
}

/// A settled answer: what its receipt (or, for a failure, the statement) states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// The channel's charged total: including this answer at its actual
    /// charge, or (failed) without it.
    pub cumulative: u128,
}

/// Charges for requests on a server.
pub trait Meter: Send + Sync + 'static {
    /// Admits the payment of `request`: `Ok(None)` for a free service,
    /// `Ok(Some(ticket))` once its voucher is durable.
    fn admit<'a>(
        &'a self,
        peer: &'a PeerInfo,
        request: &'a IncomingRequest,
    ) -> BoxFuture<'a, Result<Option<Ticket>, Refusal>>;

    /// Admits a mid-stream voucher paying one more increment of a metered
    /// stream; resolves with the new cumulative once the voucher is durable.
    fn admit_increment<'a>(
        &'a self,
        ticket: &'a mut Ticket,
        voucher: &'a SignedVoucher,
    ) -> BoxFuture<'a, Result<u128, Refusal>>;

    /// The first content of a streamed answer is about to leave, before the
    /// answer is settled: from now on it is charged even if this endpoint
    /// dies before settling it (a fleet's shared store takes back what a dead
    /// endpoint admitted and never began to deliver). Resolves once that is
    /// durable; a refusal stops the answer (not charged).
    fn delivering<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Result<(), Refusal>> {
        let _ = ticket;
        Box::pin(async { Ok(()) })
    }

    /// Settles an answer; resolves once the charge, and whatever it forgave,
    /// is durable (the answer, receipt or statement may leave then).
    fn settle(&self, ticket: Ticket, outcome: Outcome) -> BoxFuture<'_, Result<Settled, Refusal>>;

    /// The highest voucher accepted on `ticket`'s channel (sent when asking for more).
    fn last_voucher<'a>(&'a self, ticket: &'a Ticket) -> BoxFuture<'a, Option<SignedVoucher>>;

    /// Whether `service` is charged for (such requests are served on their own task).
    fn is_priced(&self, service: &str) -> bool {
        let _ = service;
        true
    }
}
