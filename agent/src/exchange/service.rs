//! What a brand puts behind its agent: a [`Service`] answers each request
//! with an [`Answer`]: one response, a stream of chunks, or an error. The
//! transport (QUIC today) and the payment ([`super::Meter`]) are not its concern.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use agentwire_protocol::payment::SignedVoucher;
use agentwire_protocol::session::PeerInfo;
use agentwire_protocol::wire::ErrorCode;
use tokio::sync::mpsc;

/// A request as a service sees it.
#[derive(Clone, Debug)]
pub struct IncomingRequest {
    /// The authenticated peer (shared by its connection's requests).
    pub peer: Arc<PeerInfo>,
    /// The request id.
    pub id: u64,
    /// The service asked for (as sent: possibly not a valid name).
    pub service: String,
    /// The query.
    pub body: Vec<u8>,
    /// The voucher paying for it, if any.
    pub payment: Option<SignedVoucher>,
}

/// One item of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamItem {
    /// The next chunk.
    Chunk(Vec<u8>),
    /// What the answer actually costs (ceiling pricing, spec §13.10): at most
    /// the price admitted; the rest is the payer's credit. Sent before the
    /// stream ends; the last one counts.
    Charge(u128),
    /// The answer failed (the payer is told, and is not charged).
    Error(ErrorCode, String),
}

/// What a service answers.
pub enum Answer {
    /// One whole response, charged the price admitted.
    Response(Vec<u8>),
    /// One whole response that actually costs the given amount (ceiling pricing).
    Charged(Vec<u8>, u128),
    /// A streamed answer: it ends when the sender is dropped, or with a
    /// [`StreamItem::Error`] (the peer then knows the answer is incomplete).
    Stream(mpsc::Receiver<StreamItem>),
    /// An error with a stable code.
    Error(ErrorCode, String),
}

impl Answer {
    /// A streamed answer and the sender that feeds it (`capacity` items buffered).
    pub fn stream(capacity: usize) -> (mpsc::Sender<StreamItem>, Answer) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, Answer::Stream(rx))
    }
}

/// A future answering one request.
pub type AnswerFuture = Pin<Box<dyn Future<Output = Answer> + Send + 'static>>;

/// What a brand puts behind its agent.
pub trait Service: Send + Sync + 'static {
    /// Answers one request. An unknown service name is answered with
    /// [`ErrorCode::UnknownService`] (on its stream; the connection goes on).
    fn handle(&self, request: IncomingRequest) -> AnswerFuture;
    /// Receives a one-way message (default: dropped).
    fn one_way(&self, _peer: &PeerInfo, _topic: &str, _body: Vec<u8>) {}
}
