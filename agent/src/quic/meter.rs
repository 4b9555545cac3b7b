//! How the session server charges for requests without knowing about
//! chains: a [`Meter`] admits or refuses each request's voucher (and only
//! resolves once the voucher is durable, spec §8.3 "persist before serve"),
//! and says what the receipt must state. The server hashes the request and
//! the answer and signs the receipt with its identity key (spec §8.2).

use agentwire_protocol::ledger::ChannelRef;
use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::record::Currency;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::{ErrorCode, Request};
use futures::future::BoxFuture;

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

/// An admitted, durably paid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The channel that paid.
    pub channel: ChannelRef,
    /// The cumulative total the admission required (what the receipt states).
    pub cumulative: u128,
    /// Set for a metered streamed answer.
    pub increment: Option<Increment>,
}

/// Charges for requests on a server.
pub trait Meter: Send + Sync + 'static {
    /// Admits the payment of `request`: `Ok(None)` for a free service,
    /// `Ok(Some(ticket))` once its voucher is durable.
    fn admit<'a>(&'a self, peer: &'a PeerInfo, request: &'a Request) -> BoxFuture<'a, Result<Option<Ticket>, Refusal>>;

    /// Admits a mid-stream voucher paying one more increment of a metered
    /// stream; resolves with the new cumulative once the voucher is durable.
    fn admit_increment<'a>(
        &'a self,
        ticket: &'a Ticket,
        voucher: &'a SignedVoucher,
    ) -> BoxFuture<'a, Result<u128, Refusal>>;

    /// The highest voucher accepted on `ticket`'s channel (sent when asking for more).
    fn last_voucher(&self, ticket: &Ticket) -> Option<SignedVoucher>;

    /// Whether `service` is charged for (such requests are served on their own task).
    fn is_priced(&self, service: &str) -> bool {
        let _ = service;
        true
    }
}
