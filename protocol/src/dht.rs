//! DHT keys. Record keys live under the `/agentwire/` namespace so other
//! libp2p implementations can pick our validator; provider keys are SHA-256
//! multihashes (what implementations that expect CIDs accept).

use crate::account::AccountId;
use crate::identity::AgentId;
use sha2::{Digest, Sha256};

/// Namespace prefix of record keys.
pub const RECORD_NAMESPACE: &[u8] = b"/agentwire/agent/";

/// Key under which an agent's signed record is stored: `/agentwire/agent/` || agent id bytes.
pub fn record_key(agent: &AgentId) -> Vec<u8> {
    let mut k = RECORD_NAMESPACE.to_vec();
    k.extend_from_slice(agent.as_bytes());
    k
}

/// Parses a record key back into the agent id it names.
pub fn agent_from_record_key(key: &[u8]) -> Option<AgentId> {
    let id = key.strip_prefix(RECORD_NAMESPACE)?;
    AgentId::from_bytes(id).ok()
}

fn provider_key(label: &str, value: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(value.as_bytes());
    // Multihash: sha2-256 code 0x12, length 0x20, digest.
    let mut k = vec![0x12, 0x20];
    k.extend_from_slice(&h.finalize());
    k
}

/// Provider key for agents speaking for a NEAR account:
/// multihash sha2-256 of `"agentwire:account:" || account`.
pub fn account_provider_key(account: &AccountId) -> Vec<u8> {
    provider_key("agentwire:account:", account.as_str())
}

/// Provider key for agents offering a service: multihash sha2-256 of `"agentwire:service:" || name`.
pub fn service_provider_key(service: &str) -> Vec<u8> {
    provider_key("agentwire:service:", service)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    #[test]
    fn record_key_roundtrip() {
        let id = Keypair::from_seed(&[1; 32]).public().agent_id();
        assert_eq!(agent_from_record_key(&record_key(&id)), Some(id));
        assert_eq!(agent_from_record_key(b"/other/x"), None);
    }

    #[test]
    fn provider_keys_are_sha256_multihashes() {
        let k = account_provider_key(&AccountId::new("brand.near").unwrap());
        assert_eq!(&k[..2], &[0x12, 0x20]);
        assert_eq!(k.len(), 34);
        assert_ne!(k, service_provider_key("brand.near"));
    }
}
