//! Agent sessions over QUIC (quinn) with the Noise handshake of spec §11
//! bound to the TLS connection, and every stream encrypted under the session
//! (spec §12–13): request/response with many requests in flight on one
//! connection, streamed answers, one-way messages.
//!
//! Runtime choices the spec leaves to the agent (spec §11.1):
//! - ALPN `agentwire/1`; TLS 1.3 only; ephemeral self-signed certificates
//!   (TLS does not authenticate agents, Noise does); no 0-RTT.
//! - The handshake runs on the first bidirectional stream the client opens
//!   (QUIC stream 0); nothing else is read before it completes.
//! - Bounds: [`TransportLimits`].

mod answer;
mod io;
pub mod meter;
mod respond;
pub mod server;
pub mod tls;
mod user;

use std::time::Duration;

use agentwire_protocol::session::{HandshakeError, SessionError, SessionLimits};
use agentwire_protocol::wire::{ErrorCode, WireError};

pub use answer::{StreamEvent, StreamedAnswer};
pub use meter::{Increment, Meter, Refusal, Ticket};
pub use server::{Answer, AnswerFuture, IncomingRequest, Server, ServerStats, Service};
pub use user::{connect, Connection, FirstAnswer, Target, MAX_RUNNING_CALLS};

/// Bounds with their defaults; every one is enforced per server or per connection.
#[derive(Clone, Copy, Debug)]
pub struct TransportLimits {
    /// Connections a server holds at once (default 1024).
    pub max_connections: usize,
    /// Connections from one IP address (default 64).
    pub max_connections_per_ip: usize,
    /// Streams a peer may have open at once, each direction kind (default 256).
    pub max_streams_per_connection: u32,
    /// Requests per second a peer may start, with a burst of as many (default 2000).
    pub max_requests_per_sec: u32,
    /// Time allowed for the whole Noise handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// A connection idle this long is closed (default 30 s; keep-alives at a third).
    pub idle_timeout: Duration,
    /// Time a responder waits for a request's bytes on a stream (default 30 s).
    pub request_read_timeout: Duration,
    /// Time a requester waits for an answer's first message, and between a stream's messages (default 60 s).
    pub answer_timeout: Duration,
    /// Time a responder waits for a metered stream's next voucher before it stops the answer (default 10 s).
    pub payment_timeout: Duration,
    /// Time a side keeps a stream open, once it has the last message it
    /// expects, for the peer's end of stream (spec §13.1 item 5; default 2 s).
    /// The end is normally in the same packet or the next; a paid requester
    /// sends it a round trip later, once it has the answer.
    pub end_grace: Duration,
    /// Streams of one connection kept open at once only for their peer's end
    /// of stream (default 64); past this, one is dropped unread (STOP_SENDING).
    pub max_ending_streams: usize,
    /// Session limits (streams, age, frame and message sizes).
    pub session: SessionLimits,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_streams_per_connection: 256,
            max_requests_per_sec: 2000,
            handshake_timeout: tls::DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Duration::from_secs(30),
            request_read_timeout: Duration::from_secs(30),
            payment_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(60),
            end_grace: Duration::from_secs(2),
            max_ending_streams: 64,
            session: SessionLimits::default(),
        }
    }
}

/// What went wrong, and what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Local configuration (TLS, socket): fix the setup.
    #[error(transparent)]
    Config(#[from] tls::TlsConfigError),
    /// The socket could not be bound or used.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer could not be reached or the connection dropped: retry later.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The Noise handshake failed (wrong key, tampered, wrong pattern): refetch the record; retry once with XX.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// The session refused a stream or a frame (limits, tampering): the connection is unusable.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// A message did not decode.
    #[error("bad message: {0}")]
    Wire(#[from] WireError),
    /// The peer broke the protocol (wrong message, wrong id).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// No answer (or no next chunk) arrived in time: the peer may be gone; retry, on a new session if it persists.
    #[error("no answer in time")]
    AnswerTimeout,
    /// The payee asks for payment (spec §9.10): pay and retry on a new stream.
    #[error("payment required: {} in {:?}", .0.price, .0.currency)]
    PaymentRequired(Box<agentwire_protocol::wire::PaymentRequired>),
    /// The peer answered with an Error message.
    #[error("peer error {code:?}: {message}")]
    Remote {
        /// Its stable code.
        code: ErrorCode,
        /// Its text.
        message: String,
    },
}

impl TransportError {
    /// The stable code a peer is told before the connection closes.
    pub fn code(&self) -> ErrorCode {
        match self {
            TransportError::Handshake(e) => e.code(),
            TransportError::Session(e) => e.code(),
            TransportError::Wire(e) => e.code(),
            TransportError::Remote { code, .. } => *code,
            _ => ErrorCode::Internal,
        }
    }
}

/// Seconds since the Unix epoch (the driver owns the clock; protocol/ takes it as an argument).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
