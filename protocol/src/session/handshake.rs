//! Noise handshake state machines (IK and XX over snow).
//!
//! One type per state; each transition consumes the old state, so a finished
//! or failed handshake cannot be stepped again. IK is used when the initiator
//! knows the responder's static key from its record, XX otherwise. The first
//! IK message can be replayed by an attacker (Noise §7.7), so it carries only
//! the identity proof: nothing that changes state at the responder.

use core::fmt;

use rand_core::{CryptoRng, RngCore};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};

use super::framing::handshake_frame;
use super::framing::FrameError;
use super::payload::{valid_capabilities, HandshakePayload, PayloadError};
use super::stream::{Role, Session, SessionLimits};
use super::{prologue, CHANNEL_BINDING_LEN};
use crate::codes::ErrorCode;
use crate::identity::{validate_x25519, AgentId, KeyError, LocalIdentity, NoiseStaticKey, PublicKey};

/// Noise protocol name for IK.
pub const NOISE_IK: &str = "Noise_IK_25519_ChaChaPoly_SHA256";
/// Noise protocol name for XX.
pub const NOISE_XX: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// Largest Noise message (the Noise limit).
pub const MAX_HANDSHAKE_MESSAGE: usize = 65535;

/// Which handshake pattern; the first byte of the initiator's first message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Pattern {
    /// `Noise_IK`: initiator already knows the responder's static key.
    IK = 1,
    /// `Noise_XX`: both static keys are exchanged encrypted.
    XX = 2,
}

/// Why a handshake failed. [`HandshakeError::code`] gives the wire code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// An empty message, or one longer than the Noise limit.
    BadLength,
    /// The first byte names no known pattern.
    UnknownPattern(u8),
    /// An ephemeral or static X25519 key from the peer is weak or invalid.
    BadKey(KeyError),
    /// Noise processing failed: wrong static key, different channel binding, or tampering.
    Noise,
    /// The handshake payload is not valid.
    Payload(PayloadError),
    /// Our own capability list breaks the payload limits (a local configuration error).
    InvalidCapabilities,
    /// The identity key did not sign the peer's static key.
    IdentityProof,
    /// The peer is not the agent we meant to reach.
    UnexpectedPeer { expected: AgentId, got: AgentId },
    /// XX's first message must carry no payload (it is unencrypted).
    UnexpectedPayload,
    /// A handshake frame's header is invalid (spec §11.4): a length below
    /// the minimum (an empty body) or above the Noise limit.
    Framing(FrameError),
    /// The handshake stream ended before the handshake was complete.
    Truncated,
    /// The injected RNG or the Noise library failed locally.
    Local,
}

impl HandshakeError {
    /// The stable code to send to the peer.
    pub fn code(&self) -> ErrorCode {
        match self {
            HandshakeError::Payload(PayloadError::UnsupportedVersion(_)) => ErrorCode::UnsupportedVersion,
            HandshakeError::Local | HandshakeError::InvalidCapabilities => ErrorCode::Internal,
            _ => ErrorCode::HandshakeFailed,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::BadLength => write!(f, "handshake message empty or too long"),
            HandshakeError::UnknownPattern(p) => write!(f, "unknown handshake pattern {p}"),
            HandshakeError::BadKey(e) => write!(f, "peer key refused: {e}"),
            HandshakeError::Noise => {
                write!(f, "handshake failed to authenticate (wrong key, channel binding mismatch or tampering)")
            }
            HandshakeError::Payload(e) => write!(f, "handshake payload: {e}"),
            HandshakeError::InvalidCapabilities => {
                write!(f, "capabilities exceed the handshake limits (16 strings of 1..=32 bytes)")
            }
            HandshakeError::IdentityProof => write!(f, "identity key did not sign the Noise static key"),
            HandshakeError::UnexpectedPeer { expected, got } => write!(f, "expected agent {expected}, reached {got}"),
            HandshakeError::UnexpectedPayload => write!(f, "unexpected payload in XX first message"),
            HandshakeError::Framing(e) => write!(f, "handshake framing: {e}"),
            HandshakeError::Truncated => write!(f, "handshake stream ended mid-handshake"),
            HandshakeError::Local => write!(f, "local handshake failure"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What was learned about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's identity key.
    pub identity: PublicKey,
    /// The peer's agent id.
    pub agent_id: AgentId,
    /// The peer's Noise static key.
    pub noise_static: NoiseStaticKey,
    /// The peer's capabilities.
    pub capabilities: Vec<String>,
}

/// A completed handshake.
#[derive(Debug)]
pub struct Established {
    /// Keys and stream state.
    pub session: Session,
    /// The authenticated peer.
    pub peer: PeerInfo,
    /// Which pattern ran.
    pub pattern: Pattern,
}

/// Settings shared by both roles.
#[derive(Clone, Copy, Debug)]
pub struct HandshakeConfig<'a> {
    /// Our keys.
    pub local: &'a LocalIdentity,
    /// Our capabilities.
    pub capabilities: &'a [String],
    /// The outer connection's channel binding (TLS exporter).
    pub channel_binding: &'a [u8; CHANNEL_BINDING_LEN],
    /// Limits of the session this handshake creates.
    pub limits: SessionLimits,
}

/// Hands snow exactly one ephemeral secret drawn from the injected RNG.
struct OneShotRandom(Option<[u8; 32]>);

impl Random for OneShotRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(bytes) if dest.len() == 32 => {
                dest.copy_from_slice(&bytes);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

struct InjectedRng(std::sync::Mutex<Option<[u8; 32]>>);

impl CryptoResolver for InjectedRng {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let bytes = self.0.lock().ok().and_then(|mut g| g.take());
        Some(Box::new(OneShotRandom(bytes)))
    }
    fn resolve_dh(&self, _: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

fn build(
    pattern: Pattern,
    cfg: &HandshakeConfig<'_>,
    remote: Option<&NoiseStaticKey>,
    ephemeral: [u8; 32],
    initiator: bool,
) -> Result<HandshakeState, HandshakeError> {
    let name = match pattern {
        Pattern::IK => NOISE_IK,
        Pattern::XX => NOISE_XX,
    };
    let params = name.parse().map_err(|_| HandshakeError::Local)?;
    let resolver = FallbackResolver::new(
        Box::new(InjectedRng(std::sync::Mutex::new(Some(ephemeral)))),
        Box::new(FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver))),
    );
    let prologue = prologue(cfg.channel_binding);
    let mut b = Builder::with_resolver(params, Box::new(resolver))
        .prologue(&prologue)
        .and_then(|b| b.local_private_key(cfg.local.noise.secret()))
        .map_err(|_| HandshakeError::Local)?;
    if let Some(rs) = remote {
        b = b.remote_public_key(rs.as_bytes()).map_err(|_| HandshakeError::Local)?;
    }
    let hs = if initiator { b.build_initiator() } else { b.build_responder() };
    hs.map_err(|_| HandshakeError::Local)
}

/// Our payload, after checking our own configuration against the limits.
fn local_payload(cfg: &HandshakeConfig<'_>) -> Result<Vec<u8>, HandshakeError> {
    if !valid_capabilities(cfg.capabilities) {
        return Err(HandshakeError::InvalidCapabilities);
    }
    Ok(HandshakePayload::for_identity(cfg.local, cfg.capabilities).encode())
}

fn draw<R: RngCore + CryptoRng>(rng: &mut R) -> [u8; 32] {
    let mut e = [0u8; 32];
    rng.fill_bytes(&mut e);
    e
}

fn write(hs: &mut HandshakeState, payload: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    // One byte less than the Noise limit leaves room for the pattern byte, so
    // every framed body fits the 16-bit length.
    let mut out = vec![0u8; MAX_HANDSHAKE_MESSAGE - 1];
    let n = hs.write_message(payload, &mut out).map_err(|_| HandshakeError::Local)?;
    out.truncate(n);
    Ok(out)
}

/// Reads a Noise message whose first 32 bytes are the peer's ephemeral key.
fn read_with_ephemeral(hs: &mut HandshakeState, msg: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if msg.is_empty() || msg.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::BadLength);
    }
    let e: [u8; 32] = msg.get(..32).and_then(|s| s.try_into().ok()).ok_or(HandshakeError::Noise)?;
    validate_x25519(&e).map_err(HandshakeError::BadKey)?;
    read(hs, msg)
}

fn read(hs: &mut HandshakeState, msg: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    if msg.is_empty() || msg.len() > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::BadLength);
    }
    let mut out = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut out).map_err(|_| HandshakeError::Noise)?;
    out.truncate(n);
    Ok(out)
}

/// Validates the peer's static key and identity payload.
fn authenticate(hs: &HandshakeState, payload: &[u8], expected: Option<&PublicKey>) -> Result<PeerInfo, HandshakeError> {
    let rs: [u8; 32] = hs.get_remote_static().and_then(|s| s.try_into().ok()).ok_or(HandshakeError::Noise)?;
    let noise_static = NoiseStaticKey::from_bytes(&rs).map_err(HandshakeError::BadKey)?;
    let p = HandshakePayload::decode(payload).map_err(HandshakeError::Payload)?;
    p.verify(&noise_static).map_err(|_| HandshakeError::IdentityProof)?;
    if let Some(exp) = expected {
        if *exp != p.identity {
            return Err(HandshakeError::UnexpectedPeer { expected: exp.agent_id(), got: p.identity.agent_id() });
        }
    }
    Ok(PeerInfo { identity: p.identity, agent_id: p.identity.agent_id(), noise_static, capabilities: p.capabilities })
}

fn finish(
    mut hs: HandshakeState,
    role: Role,
    peer: PeerInfo,
    pattern: Pattern,
    limits: SessionLimits,
    now: u64,
) -> Established {
    let hash: [u8; 32] = hs.get_handshake_hash().try_into().unwrap_or([0; 32]);
    let (k1, k2) = hs.dangerously_get_raw_split();
    let (send, recv) = match role {
        Role::Initiator => (k1, k2),
        Role::Responder => (k2, k1),
    };
    Established { session: Session::new(role, send, recv, hash, limits, now), peer, pattern }
}

/// IK initiator after sending message 1.
pub struct IkInitiator {
    hs: HandshakeState,
    expected: PublicKey,
    limits: SessionLimits,
}

/// Starts an IK handshake to an agent whose record gave `remote_static` and
/// `expected` (its identity key). Returns the framed message to send.
pub fn initiate_ik<R: RngCore + CryptoRng>(
    cfg: &HandshakeConfig<'_>,
    remote_static: &NoiseStaticKey,
    expected: PublicKey,
    rng: &mut R,
) -> Result<(IkInitiator, Vec<u8>), HandshakeError> {
    let payload = local_payload(cfg)?;
    let mut hs = build(Pattern::IK, cfg, Some(remote_static), draw(rng), true)?;
    let mut body = vec![Pattern::IK as u8];
    body.extend(write(&mut hs, &payload)?);
    Ok((IkInitiator { hs, expected, limits: cfg.limits }, handshake_frame(&body)))
}

impl IkInitiator {
    /// Reads the responder's message 2 and completes the session.
    pub fn read_response(mut self, msg: &[u8], now: u64) -> Result<Established, HandshakeError> {
        let payload = read_with_ephemeral(&mut self.hs, msg)?;
        let peer = authenticate(&self.hs, &payload, Some(&self.expected))?;
        Ok(finish(self.hs, Role::Initiator, peer, Pattern::IK, self.limits, now))
    }
}

/// XX initiator after sending message 1.
pub struct XxInitiator {
    hs: HandshakeState,
    expected: Option<PublicKey>,
    payload: Vec<u8>,
    limits: SessionLimits,
}

/// Starts an XX handshake; `expected` pins the responder's identity if known.
pub fn initiate_xx<R: RngCore + CryptoRng>(
    cfg: &HandshakeConfig<'_>,
    expected: Option<PublicKey>,
    rng: &mut R,
) -> Result<(XxInitiator, Vec<u8>), HandshakeError> {
    let payload = local_payload(cfg)?;
    let mut hs = build(Pattern::XX, cfg, None, draw(rng), true)?;
    let mut body = vec![Pattern::XX as u8];
    body.extend(write(&mut hs, &[])?);
    Ok((XxInitiator { hs, expected, payload, limits: cfg.limits }, handshake_frame(&body)))
}

impl XxInitiator {
    /// Reads message 2; returns the session and the framed message 3 to send.
    pub fn read_response(mut self, msg: &[u8], now: u64) -> Result<(Established, Vec<u8>), HandshakeError> {
        let payload = read_with_ephemeral(&mut self.hs, msg)?;
        let peer = authenticate(&self.hs, &payload, self.expected.as_ref())?;
        let msg3 = write(&mut self.hs, &self.payload)?;
        Ok((finish(self.hs, Role::Initiator, peer, Pattern::XX, self.limits, now), handshake_frame(&msg3)))
    }
}

/// XX responder after sending message 2.
pub struct XxResponder {
    hs: HandshakeState,
    limits: SessionLimits,
}

impl XxResponder {
    /// Reads message 3 and completes the session.
    pub fn read_final(mut self, msg: &[u8], now: u64) -> Result<Established, HandshakeError> {
        let payload = read(&mut self.hs, msg)?;
        let peer = authenticate(&self.hs, &payload, None)?;
        Ok(finish(self.hs, Role::Responder, peer, Pattern::XX, self.limits, now))
    }
}

/// The responder's step after the initiator's first message.
pub enum ResponderStep {
    /// IK: the session is up; send `reply`.
    Done {
        /// The session.
        established: Established,
        /// Framed message 2.
        reply: Vec<u8>,
    },
    /// XX: send `reply`, then feed message 3 to `state`.
    AwaitFinal {
        /// Waiting for message 3.
        state: XxResponder,
        /// Framed message 2.
        reply: Vec<u8>,
    },
}

/// Handles the initiator's first message (`pattern byte || noise message`).
pub fn respond<R: RngCore + CryptoRng>(
    cfg: &HandshakeConfig<'_>,
    first: &[u8],
    now: u64,
    rng: &mut R,
) -> Result<ResponderStep, HandshakeError> {
    let (&p, msg) = first.split_first().ok_or(HandshakeError::BadLength)?;
    let payload = local_payload(cfg)?;
    match p {
        1 => {
            let mut hs = build(Pattern::IK, cfg, None, draw(rng), false)?;
            let their = read_with_ephemeral(&mut hs, msg)?;
            let peer = authenticate(&hs, &their, None)?;
            let reply = handshake_frame(&write(&mut hs, &payload)?);
            Ok(ResponderStep::Done {
                established: finish(hs, Role::Responder, peer, Pattern::IK, cfg.limits, now),
                reply,
            })
        }
        2 => {
            let mut hs = build(Pattern::XX, cfg, None, draw(rng), false)?;
            if !read_with_ephemeral(&mut hs, msg)?.is_empty() {
                return Err(HandshakeError::UnexpectedPayload);
            }
            let reply = handshake_frame(&write(&mut hs, &payload)?);
            Ok(ResponderStep::AwaitFinal { state: XxResponder { hs, limits: cfg.limits }, reply })
        }
        other => Err(HandshakeError::UnknownPattern(other)),
    }
}
