//! The encrypted session: a Noise handshake bound to the outer QUIC
//! connection, then per-stream authenticated encryption under the session keys.
//!
//! Everything here is sans-IO. The driver feeds bytes it read and writes the
//! bytes it is handed; time (`now`, unix seconds) and randomness are arguments.

mod framing;
mod handshake;
mod payload;
mod stream;

pub use framing::{FrameError, FrameSplitter, HANDSHAKE_HEADER_LEN, STREAM_HEADER_LEN};
pub use handshake::{
    initiate_ik, initiate_xx, respond, Established, HandshakeConfig, HandshakeError, IkInitiator, Pattern, PeerInfo,
    ResponderStep, XxInitiator, XxResponder, MAX_HANDSHAKE_MESSAGE, NOISE_IK, NOISE_XX,
};
pub use payload::{
    valid_capabilities, HandshakePayload, PayloadError, MAX_CAPABILITIES, MAX_CAPABILITY_LEN, MAX_PAYLOAD_BYTES,
    PAYLOAD_VERSION,
};
pub use stream::{
    noise_rekey, Flags, Role, Session, SessionError, SessionLimits, StreamEvent, StreamOpener, StreamReader,
    StreamSealer, StreamWriter, MAX_STREAM_ID, REKEY_INTERVAL,
};

/// Protocol tag at the start of the Noise prologue.
pub const PROLOGUE_TAG: &[u8] = b"agentwire/1 noise";
/// Length of the channel binding (TLS exporter output).
pub const CHANNEL_BINDING_LEN: usize = 32;
/// TLS exporter label for the channel binding (RFC 9266).
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// The Noise prologue: `PROLOGUE_TAG || channel_binding`. Both sides must
/// compute the same binding from their QUIC/TLS connection, or the handshake fails.
pub fn prologue(channel_binding: &[u8; CHANNEL_BINDING_LEN]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROLOGUE_TAG.len() + CHANNEL_BINDING_LEN);
    p.extend_from_slice(PROLOGUE_TAG);
    p.extend_from_slice(channel_binding);
    p
}
