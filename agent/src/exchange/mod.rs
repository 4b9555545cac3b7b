//! The transport-neutral API of the request exchange (spec §13): what a
//! brand implements ([`Service`]), how requests are charged ([`Meter`]), and
//! what can fail ([`TransportError`]). The rules of the exchange live in
//! `agentwire_protocol::exchange`; [`crate::quic`] drives them over QUIC.

mod error;
mod meter;
mod service;

pub(crate) use error::close_text;
pub use error::TransportError;
pub use meter::{Increment, Meter, Outcome, Refusal, Settled, Ticket};
pub use service::{Answer, AnswerFuture, IncomingRequest, Service, StreamItem};
