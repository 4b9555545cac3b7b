//! The handshake payload: proof that the Noise static key speaks for an
//! identity key, plus the sender's capabilities.

use crate::cbor::{CborError, Reader, Writer};
use crate::identity::{verify_static_binding, KeyError, LocalIdentity, NoiseStaticKey, PublicKey};

/// Largest encoded handshake payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024;
/// Most capability strings.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability string, in bytes.
pub const MAX_CAPABILITY_LEN: usize = 32;
const PAYLOAD_VERSION: u64 = 1;

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
    pub fn decode(bytes: &[u8]) -> Result<Self, CborError> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(CborError::TooLong("handshake payload"));
        }
        let mut r = Reader::new(bytes)?;
        r.array_of(4, "handshake payload")?;
        if r.u64("payload version")? != PAYLOAD_VERSION {
            return Err(CborError::Malformed("payload version"));
        }
        let identity = PublicKey::from_bytes(&r.fixed::<32>("identity_key")?)
            .map_err(|_| CborError::Malformed("identity_key"))?;
        let static_signature = r.fixed::<64>("static_signature")?;
        let n = r.array_max(MAX_CAPABILITIES, "capabilities")?;
        let mut capabilities = Vec::with_capacity(n);
        for _ in 0..n {
            capabilities.push(r.text(MAX_CAPABILITY_LEN, "capability")?.to_owned());
        }
        r.finish()?;
        Ok(HandshakePayload { identity, static_signature, capabilities })
    }

    /// Checks that the identity signed `remote_static`.
    pub fn verify(&self, remote_static: &NoiseStaticKey) -> Result<(), KeyError> {
        verify_static_binding(&self.identity, remote_static, &self.static_signature)
    }
}
