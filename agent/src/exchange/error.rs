//! What can go wrong talking to a peer, by who must act, with one table to
//! the wire code and to the caller's action.

use std::net::SocketAddr;

use agentwire_protocol::exchange::ExchangeError;
use agentwire_protocol::session::{HandshakeError, SessionError};
use agentwire_protocol::wire::{Action, ErrorCode};

/// Why a session or a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Local TLS configuration: fix the setup.
    #[error(transparent)]
    Config(#[from] crate::quic::tls::TlsConfigError),
    /// A socket could not be bound: the address names which.
    #[error("cannot bind UDP {addr}: {source} (choose another port or stop what uses it)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The local endpoint failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The peer could not be reached or the connection dropped.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The Noise handshake failed (wrong key, tampered, wrong pattern): refetch the record; retry once with XX.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer did not answer the connection at all (QUIC and TLS) in time:
    /// it is down or unreachable at this address.
    #[error("no answer from {addr} within {} ms", .timeout.as_millis())]
    ConnectTimeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The connect timeout.
        timeout: std::time::Duration,
    },
    /// The handshake did not complete in time.
    #[error("the peer did not complete the handshake within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// The session refused a new stream (its age or stream limit): handshake again.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// The exchange failed: the peer broke the protocol, answered with an
    /// Error, or a wait ran out.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

impl TransportError {
    /// The stable code: what a peer is told, or what it told us.
    pub fn code(&self) -> ErrorCode {
        match self {
            TransportError::Handshake(e) => e.code(),
            TransportError::HandshakeTimeout(_) => ErrorCode::HandshakeFailed,
            TransportError::Session(e) => e.code(),
            TransportError::Exchange(e) => e.code(),
            TransportError::Connection(_) | TransportError::ConnectTimeout { .. } => ErrorCode::Unavailable,
            TransportError::Config(_) | TransportError::Bind { .. } | TransportError::Io(_) => ErrorCode::Internal,
        }
    }

    /// What the caller should do about it.
    pub fn action(&self) -> Action {
        match self {
            TransportError::Exchange(e) => e.action(),
            TransportError::Connection(_) | TransportError::ConnectTimeout { .. } => Action::RetryLater,
            TransportError::Config(_) | TransportError::Bind { .. } | TransportError::Io(_) => Action::GiveUp,
            other => other.code().action(),
        }
    }

    /// The peer's Error message, if this is one: its code, text and credit statement.
    pub fn remote(&self) -> Option<(ErrorCode, &str)> {
        match self {
            TransportError::Exchange(ExchangeError::Remote { code, message, .. }) => Some((*code, message)),
            _ => None,
        }
    }
}

/// A connection-level error's text for quinn's close frame.
pub(crate) fn close_text(code: ErrorCode) -> &'static [u8] {
    agentwire_protocol::exchange::close_reason(code).as_bytes()
}
