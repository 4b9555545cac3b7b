//! The handshake payload: proof that the Noise static key speaks for an
//! identity key, plus the sender's capabilities.

use core::fmt;

use crate::cbor::{CborError, Reader, Writer};
use crate::identity::{verify_static_binding, KeyError, LocalIdentity, NoiseStaticKey, PublicKey};

/// Largest encoded handshake payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Most capability strings.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability string, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 32;
/// Handshake payload format version.
pub const PAYLOAD_VERSION: u64 = 1;

/// Why a handshake payload was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Not a valid payload encoding.
    Cbor(CborError),
    /// A payload version this implementation does not know.
    UnsupportedVersion(u64),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Cbor(e) => write!(f, "{e}"),
            PayloadError::UnsupportedVersion(v) => write!(f, "unsupported handshake payload version {v}"),
        }
    }
}

impl From<CborError> for PayloadError {
    fn from(e: CborError) -> Self {
        PayloadError::Cbor(e)
    }
}

/// Whether a capability list fits the payload limits.
pub fn valid_capabilities(caps: &[String]) -> bool {
    caps.len() <= MAX_CAPABILITIES && caps.iter().all(|c| !c.is_empty() && c.len() <= MAX_CAPABILITY_LEN)
}

/// CBOR `[version=1, identity_key bstr(32), static_signature bstr(64), capabilities [tstr]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakePayload {
    /// The sender's identity key.
    pub identity: PublicKey,
    /// `Sign(identity, NOISE_STATIC_TAG || sender's Noise static key)`.
    pub static_signature: [u8; 64],
    /// Features the sender supports (e.g. `"pay/1"`, `"stream/1"`).
    pub capabilities: Vec<String>,
}

impl HandshakePayload {
    /// The payload for a local identity.
    pub fn for_identity(local: &LocalIdentity, capabilities: &[String]) -> Self {
        HandshakePayload {
            identity: local.identity.public(),
            static_signature: local.static_signature,
            capabilities: capabilities.to_vec(),
        }
    }

    /// Canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array(4).u64(PAYLOAD_VERSION).bytes(&self.identity.to_bytes()).bytes(&self.static_signature);
        w.array(self.capabilities.len() as u64);
        for c in &self.capabilities {
            w.text(c);
        }
        w.finish()
    }

    /// Decodes and validates a payload (the identity key must not be weak).
    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(CborError::TooLong("handshake payload").into());
        }
        let mut r = Reader::new(bytes)?;
        let n = r.array("handshake payload")?;
        let version = r.u64("payload version")?;
        if version != PAYLOAD_VERSION {
            return Err(PayloadError::UnsupportedVersion(version));
        }
        if n != 4 {
            return Err(CborError::Malformed("handshake payload field count").into());
        }
        let identity = PublicKey::from_bytes(&r.fixed::<32>("identity_key")?)
            .map_err(|_| CborError::InvalidValue("identity_key"))?;
        let static_signature = r.fixed::<64>("static_signature")?;
        let n = r.array_max(MAX_CAPABILITIES, "capabilities")?;
        let mut capabilities = Vec::with_capacity(n);
        for _ in 0..n {
            let c = r.text(MAX_CAPABILITY_LEN, "capability")?;
            if c.is_empty() {
                return Err(CborError::InvalidValue("capability").into());
            }
            capabilities.push(c.to_owned());
        }
        r.finish()?;
        Ok(HandshakePayload { identity, static_signature, capabilities })
    }

    /// Checks that the identity signed `remote_static`.
    pub fn verify(&self, remote_static: &NoiseStaticKey) -> Result<(), KeyError> {
        verify_static_binding(&self.identity, remote_static, &self.static_signature)
    }
}
