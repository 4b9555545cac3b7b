//! Stable error codes a peer sends, and what the receiver should do about each.
//!
//! Codes are part of the protocol; their numbers never change. Messages sent
//! with them are short and human-readable, never internal detail.

use core::fmt;

/// What the receiver of an error should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fix the request (it will fail the same way again).
    FixRequest,
    /// Pay (sign a new voucher, top up or open a channel) and retry.
    Pay,
    /// Retry after a pause.
    RetryLater,
    /// Open a new connection or session (this one is finished).
    Reconnect,
    /// Do not retry with this peer.
    GiveUp,
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, $action:ident; )*) => {
        /// A stable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $name, )*
            /// A code this implementation does not know (kept for forwarding).
            Unknown(u16),
        }

        impl ErrorCode {
            /// The number on the wire.
            pub fn as_u16(self) -> u16 {
                match self {
                    $( ErrorCode::$name => $num, )*
                    ErrorCode::Unknown(n) => n,
                }
            }

            /// Maps a number from the wire (unknown numbers are preserved).
            pub fn from_u16(n: u16) -> Self {
                match n {
                    $( $num => ErrorCode::$name, )*
                    other => ErrorCode::Unknown(other),
                }
            }

            /// The code's name (`UnknownService`), `Unknown` for a number this implementation does not know.
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => stringify!($name), )*
                    ErrorCode::Unknown(_) => "Unknown",
                }
            }

            /// What the receiver should do.
            pub fn action(self) -> Action {
                match self {
                    $( ErrorCode::$name => Action::$action, )*
                    ErrorCode::Unknown(_) => Action::GiveUp,
                }
            }

            /// Every known code (for the spec table and tests).
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$name, )* ];
        }
    };
}

codes! {
    /// The message could not be decoded or breaks the protocol.
    Malformed = 1, FixRequest;
    /// The protocol version is not supported.
    UnsupportedVersion = 2, GiveUp;
    /// No such service at this agent.
    UnknownService = 3, FixRequest;
    /// The request or message is larger than the peer accepts.
    TooLarge = 4, FixRequest;
    /// The correlation id is unknown or already in use.
    BadCorrelationId = 5, FixRequest;
    /// Payment needed: a `PaymentRequired` message says how much.
    PaymentRequired = 20, Pay;
    /// The voucher does not cover the price.
    InsufficientPayment = 21, Pay;
    /// The voucher's signature, contract, channel or epoch is wrong.
    InvalidVoucher = 22, FixRequest;
    /// The voucher exceeds the channel's deposit: top up.
    ExceedsDeposit = 23, Pay;
    /// The channel is closing or closed: open a new one.
    ChannelClosing = 24, Pay;
    /// The channel does not exist on chain (or is not for this payee).
    UnknownChannel = 25, Pay;
    /// Too many requests: slow down.
    RateLimited = 40, RetryLater;
    /// Too many concurrent streams on this connection.
    TooManyStreams = 41, RetryLater;
    /// The agent is shutting down or overloaded.
    Unavailable = 42, RetryLater;
    /// The session expired (age or stream limit): handshake again.
    SessionExpired = 43, Reconnect;
    /// The brand's upstream service failed.
    UpstreamFailed = 50, RetryLater;
    /// The upstream service took too long.
    UpstreamTimeout = 51, RetryLater;
    /// An internal error at the peer (no detail is given).
    Internal = 60, RetryLater;
    /// The peer broke the session protocol (bad frame, replay): connection closed.
    ProtocolViolation = 70, Reconnect;
    /// The handshake failed (wrong key, bad identity proof, timeout): refetch
    /// the record and retry once with XX; give up if that fails too.
    HandshakeFailed = 71, Reconnect;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_u16()));
            assert_eq!(ErrorCode::from_u16(c.as_u16()), *c);
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Unknown(999));
        assert_eq!(ErrorCode::Unknown(999).action(), Action::GiveUp);
    }
}
