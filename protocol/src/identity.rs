//! Identities: the ed25519 identity key, the agent id derived from it (a
//! libp2p PeerId, so the DHT and sessions share one id) and the X25519 Noise
//! static key that the identity key vouches for.
//!
//! Every public key that arrives from a peer is validated here; weak and
//! small-order keys cannot be constructed.

use core::fmt;

use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

/// Domain tag for the signature that binds a Noise static key to an identity.
pub const NOISE_STATIC_TAG: &[u8] = b"agentwire:noise-static:v1";

/// Length of an agent id in bytes (identity multihash of the protobuf key).
pub const AGENT_ID_LEN: usize = 38;

/// Prefix of an agent id: multihash identity (0x00), length 36 (0x24), then the
/// libp2p protobuf `PublicKey { Type: Ed25519 (0x08 0x01), Data: 32 bytes (0x12 0x20) }`.
const AGENT_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// Why a key or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// Not a valid encoding of a curve point.
    InvalidEncoding,
    /// A small-order (weak) point: signatures or DH outputs would be forgeable or predictable.
    WeakKey,
    /// The signature does not verify under this key and message.
    BadSignature,
    /// Bytes are not an AgentWire agent id.
    InvalidAgentId,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::InvalidEncoding => "key is not a valid curve point encoding",
            KeyError::WeakKey => "key is a small-order (weak) point",
            KeyError::BadSignature => "signature does not verify",
            KeyError::InvalidAgentId => "not an ed25519 libp2p peer id",
        })
    }
}

impl std::error::Error for KeyError {}

/// A validated ed25519 public key (canonical, not small-order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses and validates a 32-byte ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidEncoding)?;
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        // Reject non-canonical encodings of a valid point: the same key must have one encoding.
        if key.to_edwards().compress().as_bytes() != bytes {
            return Err(KeyError::InvalidEncoding);
        }
        Ok(PublicKey(key))
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies `signature` over `tag || message` (strict RFC 8032 verification:
    /// no small-order R, canonical S).
    pub fn verify_tagged(&self, tag: &[u8], message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        let mut buf = Vec::with_capacity(tag.len() + message.len());
        buf.extend_from_slice(tag);
        buf.extend_from_slice(message);
        self.verify_raw(&buf, signature)
    }

    /// Verifies `signature` over `message` exactly as given (strict).
    pub fn verify_raw(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).map_err(|_| KeyError::BadSignature)
    }

    /// The agent id (libp2p PeerId bytes) of this key.
    pub fn agent_id(&self) -> AgentId {
        let mut id = [0u8; AGENT_ID_LEN];
        id[..6].copy_from_slice(&AGENT_ID_PREFIX);
        id[6..].copy_from_slice(self.0.as_bytes());
        AgentId(id)
    }

    pub(crate) fn dalek(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex32(self.0.as_bytes()))
    }
}

/// An ed25519 signing key: an agent's identity, or a payer's voucher key.
pub struct Keypair {
    secret: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// Derives the keypair from a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = SigningKey::from_bytes(seed);
        // A key derived from a seed is a clamped-scalar multiple of the base
        // point, never small-order.
        let public = PublicKey(secret.verifying_key());
        Keypair { secret, public }
    }

    /// Generates a fresh keypair from the injected RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let kp = Self::from_seed(&seed);
        seed.zeroize();
        kp
    }

    /// The 32-byte seed (store it encrypted at rest).
    pub fn seed(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `tag || message`.
    pub fn sign_tagged(&self, tag: &[u8], message: &[u8]) -> [u8; 64] {
        let mut buf = Vec::with_capacity(tag.len() + message.len());
        buf.extend_from_slice(tag);
        buf.extend_from_slice(message);
        self.sign_raw(&buf)
    }

    /// Signs `message` exactly as given.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.secret.sign(message).to_bytes()
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair::from_seed(&self.secret.to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair {{ public: {:?}, .. }}", self.public)
    }
}

/// An agent id: the libp2p PeerId of the agent's ed25519 identity key
/// (identity multihash of the protobuf-encoded public key, 38 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId([u8; AGENT_ID_LEN]);

impl AgentId {
    /// Parses PeerId bytes; only ed25519 identity-multihash ids are agent ids,
    /// and the embedded key must itself be valid.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != AGENT_ID_LEN || bytes[..6] != AGENT_ID_PREFIX {
            return Err(KeyError::InvalidAgentId);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        PublicKey::from_bytes(&key)?;
        let mut id = [0u8; AGENT_ID_LEN];
        id.copy_from_slice(bytes);
        Ok(AgentId(id))
    }

    /// The raw PeerId bytes.
    pub fn as_bytes(&self) -> &[u8; AGENT_ID_LEN] {
        &self.0
    }

    /// The identity key embedded in the id.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(&self.0[6..]);
        // Validated at construction.
        match PublicKey::from_bytes(&key) {
            Ok(k) => k,
            Err(_) => unreachable!("AgentId holds a validated key"),
        }
    }

    /// Base58btc text form, as libp2p prints PeerIds (`12D3KooW...`).
    pub fn to_base58(&self) -> String {
        bs58::encode(&self.0).into_string()
    }

    /// Parses the base58btc text form.
    pub fn from_base58(s: &str) -> Result<Self, KeyError> {
        if s.len() > 64 {
            return Err(KeyError::InvalidAgentId);
        }
        let bytes = bs58::decode(s).into_vec().map_err(|_| KeyError::InvalidAgentId)?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.to_base58())
    }
}

/// A validated X25519 public key: canonical (u < p, top bit clear), on the
/// curve (not the twist) and not of small order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseStaticKey([u8; 32]);

impl NoiseStaticKey {
    /// Validates an X25519 public key received from a peer.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        validate_x25519(bytes)?;
        Ok(NoiseStaticKey(*bytes))
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NoiseStaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoiseStaticKey({})", hex32(&self.0))
    }
}

/// Checks an X25519 public key (static or ephemeral) from a peer.
pub fn validate_x25519(bytes: &[u8; 32]) -> Result<(), KeyError> {
    // Canonical: top bit clear and u < p = 2^255 - 19.
    if bytes[31] & 0x80 != 0 || !below_field_prime(bytes) {
        return Err(KeyError::InvalidEncoding);
    }
    let Some(point) = MontgomeryPoint(*bytes).to_edwards(0) else {
        return Err(KeyError::InvalidEncoding);
    };
    if point.is_small_order() {
        return Err(KeyError::WeakKey);
    }
    Ok(())
}

fn below_field_prime(le: &[u8; 32]) -> bool {
    // p = 2^255 - 19: 0xed, 0xff * 30, 0x7f (little endian).
    if le[31] < 0x7f {
        return true;
    }
    if le[1..31].iter().any(|&b| b != 0xff) {
        return true;
    }
    le[0] < 0xed
}

/// A Noise static keypair (X25519).
pub struct NoiseStaticKeypair {
    secret: [u8; 32],
    public: NoiseStaticKey,
}

impl NoiseStaticKeypair {
    /// Builds the keypair from a 32-byte secret (clamped as X25519 requires).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = x25519_dalek::x25519(secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        NoiseStaticKeypair { secret, public: NoiseStaticKey(public) }
    }

    /// Generates a keypair from the injected RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// The public key.
    pub fn public(&self) -> NoiseStaticKey {
        self.public
    }

    /// The secret bytes (for snow and for storage).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl Clone for NoiseStaticKeypair {
    fn clone(&self) -> Self {
        NoiseStaticKeypair { secret: self.secret, public: self.public }
    }
}

impl Drop for NoiseStaticKeypair {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for NoiseStaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoiseStaticKeypair {{ public: {:?}, .. }}", self.public)
    }
}

/// An agent's full local identity: identity key, Noise static key and the
/// identity's signature over the static key.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    /// The ed25519 identity key.
    pub identity: Keypair,
    /// The X25519 Noise static key.
    pub noise: NoiseStaticKeypair,
    /// `Sign(identity, NOISE_STATIC_TAG || noise.public)`.
    pub static_signature: [u8; 64],
}

impl LocalIdentity {
    /// Binds `noise` to `identity` by signing it.
    pub fn new(identity: Keypair, noise: NoiseStaticKeypair) -> Self {
        let static_signature = identity.sign_tagged(NOISE_STATIC_TAG, noise.public().as_bytes());
        LocalIdentity { identity, noise, static_signature }
    }

    /// Generates both keys from the injected RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let identity = Keypair::generate(rng);
        let noise = NoiseStaticKeypair::generate(rng);
        Self::new(identity, noise)
    }

    /// This agent's id.
    pub fn agent_id(&self) -> AgentId {
        self.identity.public().agent_id()
    }
}

/// Checks that `identity` signed `static_key` under [`NOISE_STATIC_TAG`].
pub fn verify_static_binding(
    identity: &PublicKey,
    static_key: &NoiseStaticKey,
    signature: &[u8; 64],
) -> Result<(), KeyError> {
    identity.verify_tagged(NOISE_STATIC_TAG, static_key.as_bytes(), signature)
}

pub(crate) fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(n: u8) -> Keypair {
        Keypair::from_seed(&[n; 32])
    }

    #[test]
    fn agent_id_matches_libp2p_peer_id() {
        let k = kp(1);
        let ours = k.public().agent_id();
        let lib = libp2p_identity::PublicKey::from(
            libp2p_identity::ed25519::PublicKey::try_from_bytes(&k.public().to_bytes()).unwrap(),
        )
        .to_peer_id();
        assert_eq!(ours.as_bytes().as_slice(), lib.to_bytes().as_slice());
        assert_eq!(ours.to_base58(), lib.to_base58());
        assert_eq!(AgentId::from_base58(&ours.to_base58()).unwrap(), ours);
        assert_eq!(ours.public_key(), k.public());
    }

    #[test]
    fn rejects_weak_ed25519_keys() {
        assert_eq!(PublicKey::from_bytes(&[0u8; 32]), Err(KeyError::WeakKey));
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey::from_bytes(&identity), Err(KeyError::WeakKey));
        // y = -1 (order 2)
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        assert_eq!(PublicKey::from_bytes(&minus_one), Err(KeyError::WeakKey));
        // Non-canonical encoding of y = 1 (y + p).
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xee;
        noncanon[31] = 0x7f;
        assert!(PublicKey::from_bytes(&noncanon).is_err());
    }

    #[test]
    fn rejects_small_order_and_noncanonical_x25519() {
        // u = 0 and u = 1: small order.
        assert_eq!(validate_x25519(&[0u8; 32]), Err(KeyError::WeakKey));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(validate_x25519(&one), Err(KeyError::WeakKey));
        // The order-8 point from the libsodium blocklist.
        let order8 = hex_arr("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
        assert_eq!(validate_x25519(&order8), Err(KeyError::WeakKey));
        // u = p - 1 is u = -1: on neither curve nor twist as an X25519 key.
        let mut pm1 = [0xffu8; 32];
        pm1[0] = 0xec;
        pm1[31] = 0x7f;
        assert!(validate_x25519(&pm1).is_err());
        // u = p (non-canonical zero).
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert_eq!(validate_x25519(&p), Err(KeyError::InvalidEncoding));
        // High bit set.
        let mut hb = *NoiseStaticKeypair::from_secret([9; 32]).public().as_bytes();
        hb[31] |= 0x80;
        assert_eq!(validate_x25519(&hb), Err(KeyError::InvalidEncoding));
        // A real key passes.
        assert!(validate_x25519(NoiseStaticKeypair::from_secret([9; 32]).public().as_bytes()).is_ok());
    }

    #[test]
    fn static_binding_verifies_and_detects_swaps() {
        let id = LocalIdentity::new(kp(3), NoiseStaticKeypair::from_secret([4; 32]));
        let pk = id.identity.public();
        assert!(verify_static_binding(&pk, &id.noise.public(), &id.static_signature).is_ok());
        let other = NoiseStaticKeypair::from_secret([5; 32]).public();
        assert_eq!(verify_static_binding(&pk, &other, &id.static_signature), Err(KeyError::BadSignature));
    }

    pub(crate) fn hex_arr(s: &str) -> [u8; 32] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }
}
