//! What can go wrong with the DHT, each with its cause and one action
//! ([`DhtError::action`]), so a command line or an HTTP API can say both.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::time::Duration;

use libp2p::swarm::DialError;
use libp2p::{Multiaddr, PeerId, TransportError};

/// What went wrong. `Display` says the cause; [`DhtError::action`] says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The node could not be built (key, transport): a bug or a bad key file.
    #[error("cannot build the DHT node: {0}")]
    Setup(String),
    /// A listen address cannot be used (a port in use, an address not on this machine).
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        /// The address asked for.
        addr: Multiaddr,
        /// The operating system's or the transport's words.
        cause: String,
    },
    /// A bootstrap address is malformed; refused before anything is dialed.
    #[error("bootstrap address {addr} {problem}")]
    BootstrapAddress {
        /// The address as given.
        addr: Multiaddr,
        /// What is wrong with it.
        problem: AddressProblem,
    },
    /// Bootstrap peers were given and none of them answered.
    #[error("no bootstrap peer answered: {}", list(.0))]
    BootstrapUnreachable(Vec<Unreachable>),
    /// The node has stopped.
    #[error("the DHT node has stopped")]
    Stopped,
    /// The walk finished and no agent announces the name.
    #[error("no agent on the DHT announces {what} (the lookup asked {asked} peer(s))")]
    NotFound {
        /// What was looked up (`account bob.near`, `service chat`, `the record of agent …`).
        what: String,
        /// Peers the walk asked.
        asked: u32,
    },
    /// Agents announce the name, but none has a current, valid record for it.
    #[error("{providers} agent(s) announce {what}, but none has a current, valid record for it")]
    NoValidRecord {
        /// What was looked up.
        what: String,
        /// Agents that announce it.
        providers: usize,
    },
    /// The query timeout cut the walk short before anything was found.
    #[error("the DHT lookup for {what} did not finish within the {} query timeout", secs(*.timeout))]
    Timeout {
        /// What was looked up.
        what: String,
        /// The query timeout.
        timeout: Duration,
    },
    /// The routing table is empty: there is nobody to ask.
    #[error("no DHT peer to ask about {what}: the routing table is empty")]
    NoPeers {
        /// What was looked up.
        what: String,
    },
    /// Publishing failed (no peer took the record, or the record was refused locally).
    #[error("publishing on the DHT failed: {0}")]
    Publish(String),
}

impl DhtError {
    /// The one thing to do about it.
    pub fn action(&self) -> &'static str {
        match self {
            DhtError::Setup(_) => "check the key file; otherwise this is a bug worth reporting",
            DhtError::Listen { .. } => "choose a free port (or port 0 for any free one), or stop the process using it",
            DhtError::BootstrapAddress { problem, .. } => problem.action(),
            DhtError::BootstrapUnreachable(_) => {
                "check that the bootstrap node runs and that the address (IP, port, udp/quic-v1 or tcp) is the one it printed"
            }
            DhtError::Stopped => "restart the agent",
            DhtError::NotFound { .. } => "check the account or service name; the brand may not be running",
            DhtError::NoValidRecord { .. } => {
                "the brand's record has expired or is invalid; it republishes while it runs, so check that it is running"
            }
            DhtError::Timeout { .. } => "retry; if it keeps happening, check the bootstrap peers or raise the query timeout",
            DhtError::NoPeers { .. } => "check the bootstrap addresses; this node has no DHT peer left",
            DhtError::Publish(_) => "nothing: the brand publishes again on its republish timer; check the bootstrap peers",
        }
    }

    /// Whether the same call a little later may succeed (a walk cut short, no
    /// peers yet), as opposed to an answer (nothing there) or a configuration error.
    pub fn retry_may_help(&self) -> bool {
        matches!(self, DhtError::Timeout { .. } | DhtError::NoPeers { .. } | DhtError::Publish(_))
    }
}

/// What is wrong with a bootstrap address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressProblem {
    /// It does not end in `/p2p/<peer id>`, so the peer cannot be authenticated.
    NoPeerId,
    /// It names this node itself.
    OwnPeerId,
    /// It does not start with an IP address (`/ip4/…`, `/ip6/…`): names are not resolved.
    NoIp,
    /// Its transport is neither `/udp/<port>/quic-v1` nor `/tcp/<port>`.
    Transport,
}

impl AddressProblem {
    fn action(self) -> &'static str {
        match self {
            AddressProblem::NoPeerId => {
                "use the full address the bootstrap node prints (`agentwire bootstrap`), ending in /p2p/<peer id>"
            }
            AddressProblem::OwnPeerId => "give the address of another node",
            AddressProblem::NoIp => "use the node's IP address (/ip4/… or /ip6/…)",
            AddressProblem::Transport => {
                "use /ip4/<ip>/udp/<port>/quic-v1/p2p/<peer id> or /ip4/<ip>/tcp/<port>/p2p/<peer id>"
            }
        }
    }
}

impl fmt::Display for AddressProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressProblem::NoPeerId => "has no /p2p/<peer id> at the end",
            AddressProblem::OwnPeerId => "is this node's own address",
            AddressProblem::NoIp => "does not start with an IP address (DNS names are not resolved)",
            AddressProblem::Transport => "names no transport this node speaks (udp/quic-v1 or tcp)",
        })
    }
}

/// One bootstrap address that could not be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The address dialed.
    pub addr: Multiaddr,
    /// Why it failed.
    pub why: DialFailure,
}

/// Why dialing an address failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialFailure {
    /// No answer within the connect timeout: nothing listens on that UDP
    /// port, the host is down, or a firewall drops the packets.
    NoAnswer(Duration),
    /// The host refused the connection: nothing listens on that TCP port.
    Refused,
    /// Another node answers at that address.
    WrongPeer {
        /// The peer id the address names.
        expected: PeerId,
        /// The peer id of the node that answered.
        actual: PeerId,
    },
    /// Anything else, in the transport's words.
    Other(String),
}

impl fmt::Display for DialFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialFailure::NoAnswer(t) => write!(
                f,
                "no answer within {} (nothing listening on that port, the host down, or a firewall dropping packets)",
                secs(*t)
            ),
            DialFailure::Refused => f.write_str("connection refused (nothing listening on that TCP port)"),
            DialFailure::WrongPeer { actual, .. } => {
                write!(f, "another node answers there (peer id {actual}): the address is out of date")
            }
            DialFailure::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.addr, self.why)
    }
}

fn list(items: &[Unreachable]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `2 s`, `1.5 s`, `250 ms`.
pub(crate) fn secs(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Calls `visit` on `e` and each error under it, descending into
/// `io::Error`'s wrapped error (its `source()` skips that level).
fn walk<'a>(e: &'a (dyn StdError + 'static), visit: &mut impl FnMut(&'a (dyn StdError + 'static))) {
    let mut next = Some(e);
    for _ in 0..16 {
        let Some(e) = next else { return };
        visit(e);
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
}

/// The messages of an error and its causes, in order, without the empty
/// ones (libp2p's `TransportError::Other` displays nothing) and without
/// repeats from transparent wrappers.
pub(crate) fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    walk(e, &mut |e| {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    });
    if parts.is_empty() {
        format!("{e:?}")
    } else {
        parts.join(": ")
    }
}

/// Why a dial to `addr` (expected to be `expected`) failed.
pub(crate) fn dial_failure(error: &DialError, expected: PeerId, timeout: Duration) -> DialFailure {
    match error {
        DialError::WrongPeerId { obtained, .. } => DialFailure::WrongPeer { expected, actual: *obtained },
        DialError::Transport(errors) => match errors.first() {
            Some((_, TransportError::MultiaddrNotSupported(_))) => {
                DialFailure::Other("this node cannot dial that kind of address".into())
            }
            Some((_, TransportError::Other(e))) => io_failure(e, timeout),
            None => DialFailure::Other(error.to_string()),
        },
        other => DialFailure::Other(describe(other)),
    }
}

/// What the TCP transport's timeout says (join.rs), so it can be recognised.
pub(crate) const CONNECT_TIMED_OUT: &str = "no answer before the connect timeout";

/// Refused or timed out, from the kinds of the I/O errors in the chain or,
/// where libp2p's `Either` errors hide a level from `source()`, from the
/// texts those very errors display.
fn io_failure(e: &io::Error, timeout: Duration) -> DialFailure {
    let refused_text = io::Error::from(io::ErrorKind::ConnectionRefused).to_string().to_lowercase();
    let quic_timeout = libp2p::quic::Error::HandshakeTimedOut.to_string();
    let (mut refused, mut timed_out) = (false, false);
    walk(e, &mut |e| {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            refused |= io.kind() == io::ErrorKind::ConnectionRefused;
            timed_out |= io.kind() == io::ErrorKind::TimedOut;
        }
        let text = e.to_string();
        refused |= text.to_lowercase().contains(&refused_text);
        timed_out |= text.contains(&quic_timeout) || text.contains(CONNECT_TIMED_OUT);
    });
    if refused {
        DialFailure::Refused
    } else if timed_out {
        DialFailure::NoAnswer(timeout)
    } else {
        DialFailure::Other(describe(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_skips_empty_and_repeated_messages() {
        let inner = io::Error::new(io::ErrorKind::AddrInUse, "Address already in use (os error 98)");
        let wrapped: TransportError<io::Error> = TransportError::Other(io::Error::other(inner));
        assert_eq!(wrapped.to_string(), "", "libp2p's own text is empty: why we walk the chain");
        assert_eq!(describe(&wrapped), "Address already in use (os error 98)");
    }

    #[test]
    fn refused_and_timed_out_connections_are_told_apart() {
        let t = Duration::from_secs(2);
        let refused = io::Error::other(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(io_failure(&refused, t), DialFailure::Refused);
        let quic = io::Error::other(libp2p::quic::Error::HandshakeTimedOut);
        assert_eq!(io_failure(&quic, t), DialFailure::NoAnswer(t));
        // Behind an `Either` (which hides its inner level from `source()`).
        let hidden: either::Either<io::Error, io::Error> =
            either::Either::Right(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(io_failure(&io::Error::other(hidden), t), DialFailure::Refused);
        let hidden: either::Either<io::Error, libp2p::quic::Error> =
            either::Either::Right(libp2p::quic::Error::HandshakeTimedOut);
        assert_eq!(io_failure(&io::Error::other(hidden), t), DialFailure::NoAnswer(t));
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timeout");
        assert_eq!(io_failure(&timed_out, t), DialFailure::NoAnswer(t));
        assert!(matches!(io_failure(&io::Error::other("odd"), t), DialFailure::Other(s) if s == "odd"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(secs(Duration::from_secs(2)), "2 s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(secs(Duration::from_millis(250)), "250 ms");
    }
}
