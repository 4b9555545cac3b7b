//! Why an exchange failed, typed by who must act (rustls's
//! `PeerMisbehaved` / `ApiMisuse` / local faults), and the one table that maps
//! each failure to its wire code, to how far it reaches (this stream or the
//! whole connection, spec §13.1 item 6) and to a fixed close reason.

use core::fmt;

use crate::codes::{Action, ErrorCode};
use crate::payment::SignedReceipt;
use crate::session::SessionError;
use crate::wire::{Kind, WireError};

/// How far a failure reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only this stream: it ends (with an Error message where one can still
    /// be written); the connection and its other streams go on.
    Stream,
    /// The session is broken (encryption, framing): send `Error(id = null)`
    /// on the stream if possible, then close the connection with the code.
    Connection,
}

/// What the peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The stream's frames broke the session (decryption, counters,
    /// truncation, size): spec §12.13.
    Session(SessionError),
    /// A message did not decode (spec §9.14).
    Wire(WireError),
    /// A message of a kind that has no place here.
    Unexpected {
        /// What arrived.
        got: Kind,
    },
    /// A message about another request than this stream's (spec §13.2).
    WrongId {
        /// The id this stream carries.
        expected: u64,
        /// The id the message named.
        got: u64,
    },
    /// A chunk out of sequence, or a StreamEnd whose count disagrees (spec §13.3).
    ChunkSequence {
        /// The sequence number expected next.
        expected: u32,
        /// What arrived.
        got: u32,
    },
    /// More chunks than a `u32` counts.
    TooManyChunks,
    /// The stream ended before the exchange was complete.
    EndedEarly,
    /// A streamed answer or a mid-stream payment request although the
    /// requester did not announce `stream/1` (spec §13.3).
    StreamWithoutCapability,
    /// A voucher, PaymentRequired or receipt although `pay/1` was not
    /// negotiated by both sides (spec §13.5).
    PaymentWithoutCapability,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Session(e) => write!(f, "session: {e}"),
            Violation::Wire(e) => write!(f, "bad message: {e}"),
            Violation::Unexpected { got } => write!(f, "unexpected {got:?} message"),
            Violation::WrongId { expected, got } => {
                write!(f, "message for request {got} on the stream of request {expected}")
            }
            Violation::ChunkSequence { expected, got } => write!(f, "chunk {got} where {expected} was due"),
            Violation::TooManyChunks => f.write_str("more chunks than a stream can count"),
            Violation::EndedEarly => f.write_str("stream ended before the exchange was complete"),
            Violation::StreamWithoutCapability => f.write_str("streamed answer without stream/1 on both sides"),
            Violation::PaymentWithoutCapability => f.write_str("payment message without pay/1 on both sides"),
        }
    }
}

/// A wait that ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The request's bytes did not arrive (responder).
    Request,
    /// The answer's next message did not arrive (requester).
    Answer,
    /// A metered stream's next voucher did not arrive (responder).
    Payment,
}

/// Why an exchange failed, by who must act.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The peer broke the protocol.
    PeerMisbehaved(Violation),
    /// The peer answered with an Error message (spec §9.9). `credit` is the
    /// payee's signed statement that the request was not charged (spec §13.10),
    /// when it sent one.
    Remote {
        /// The stable code.
        code: ErrorCode,
        /// The peer's short text.
        message: String,
        /// A receipt with an all-zero `response_hash`: the charged total without this request.
        credit: Option<Box<SignedReceipt>>,
    },
    /// A wait ran out.
    Timeout(Wait),
    /// The caller used the API out of order (a bug in the caller).
    ApiMisuse(&'static str),
    /// A local limit: the stream used up its frame counters, or a message
    /// too large to send.
    Local(SessionError),
}

impl ExchangeError {
    /// The code sent to the peer (or received from it).
    pub fn code(&self) -> ErrorCode {
        match self {
            ExchangeError::PeerMisbehaved(v) => match v {
                Violation::Session(e) => e.code(),
                Violation::Wire(e) => e.code(),
                Violation::WrongId { .. } => ErrorCode::BadCorrelationId,
                Violation::StreamWithoutCapability | Violation::PaymentWithoutCapability => ErrorCode::Malformed,
                Violation::Unexpected { .. }
                | Violation::ChunkSequence { .. }
                | Violation::TooManyChunks
                | Violation::EndedEarly => ErrorCode::Malformed,
            },
            ExchangeError::Remote { code, .. } => *code,
            ExchangeError::Timeout(Wait::Payment) => ErrorCode::PaymentRequired,
            ExchangeError::Timeout(_) => ErrorCode::Unavailable,
            ExchangeError::ApiMisuse(_) => ErrorCode::Internal,
            ExchangeError::Local(e) => e.code(),
        }
    }

    /// How far it reaches: only session (encryption, framing) failures end
    /// the connection; everything else ends one stream.
    pub fn scope(&self) -> Scope {
        match self {
            ExchangeError::PeerMisbehaved(Violation::Session(e)) if e.ends_session() => Scope::Connection,
            _ => Scope::Stream,
        }
    }

    /// What the local caller should do about it.
    pub fn action(&self) -> Action {
        match self {
            ExchangeError::PeerMisbehaved(_) if self.scope() == Scope::Connection => Action::Reconnect,
            ExchangeError::PeerMisbehaved(_) => Action::GiveUp,
            ExchangeError::Remote { code, .. } => code.action(),
            ExchangeError::Timeout(_) => Action::RetryLater,
            ExchangeError::ApiMisuse(_) => Action::GiveUp,
            ExchangeError::Local(e) => e.code().action(),
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::PeerMisbehaved(v) => write!(f, "the peer broke the protocol: {v}"),
            ExchangeError::Remote { code, message, credit } => {
                write!(f, "{code}: {message}")?;
                if credit.is_some() {
                    f.write_str(" (not charged)")?;
                }
                Ok(())
            }
            ExchangeError::Timeout(Wait::Request) => f.write_str("the request did not arrive in time"),
            ExchangeError::Timeout(Wait::Answer) => f.write_str("no answer in time"),
            ExchangeError::Timeout(Wait::Payment) => f.write_str("the next increment was not paid in time"),
            ExchangeError::ApiMisuse(what) => write!(f, "exchange used out of order: {what}"),
            ExchangeError::Local(e) => write!(f, "local limit: {e}"),
        }
    }
}

impl std::error::Error for ExchangeError {}

impl From<Violation> for ExchangeError {
    fn from(v: Violation) -> Self {
        ExchangeError::PeerMisbehaved(v)
    }
}

/// The fixed close reason sent with a connection close of `code` (a peer
/// learns the code and this text, never internal detail).
pub fn close_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::ProtocolViolation => "protocol violation",
        ErrorCode::HandshakeFailed => "handshake failed",
        ErrorCode::UnsupportedVersion => "unsupported version",
        ErrorCode::TooManyStreams => "too many streams",
        ErrorCode::SessionExpired => "session expired",
        ErrorCode::TooLarge => "message too large",
        ErrorCode::Unavailable => "shutting down",
        _ => "error",
    }
}
