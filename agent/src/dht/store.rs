//! The record store every AgentWire DHT node keeps, with the rules of spec
//! §6.9–§6.11 and §7.4 inside it: what a peer sends, what this node
//! publishes and what a lookup brings back all go through [`ValidatingStore::put`].
//! A node that already holds exactly the incoming record takes it as
//! stored: a republish of an unchanged record is not a refusal.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use agentwire_protocol::dht::agent_from_record_key;
use agentwire_protocol::record::{RecordError, SignedRecord, MAX_RECORD_BYTES};
use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;

use super::cache::LookupCache;

/// Why a record is not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// Larger than a record may be.
    #[error("larger than {MAX_RECORD_BYTES} bytes")]
    TooLarge,
    /// The key is not `/agentwire/agent/<agent id>`.
    #[error("not under an AgentWire record key")]
    NotARecordKey,
    /// The record does not verify, is not fresh, not its key's agent, or not newer.
    #[error("{0}")]
    Invalid(RecordError),
}

/// Checks `record` for storage at `now` over `existing` (spec §6.9–§6.11).
/// An expired stored record counts as none: it is dropped, not defended.
pub(crate) fn check(record: &Record, existing: Option<&Record>, now: u64) -> Result<SignedRecord, Refusal> {
    if record.value.len() > MAX_RECORD_BYTES {
        return Err(Refusal::TooLarge);
    }
    let agent = agent_from_record_key(record.key.as_ref()).ok_or(Refusal::NotARecordKey)?;
    let signed = SignedRecord::decode(&record.value).map_err(Refusal::Invalid)?;
    let old = existing.and_then(|r| SignedRecord::decode(&r.value).ok()).filter(|r| r.check_fresh(now).is_ok());
    signed.validate_for_store(&agent, old.as_ref(), now).map_err(Refusal::Invalid)?;
    Ok(signed)
}

/// Whether `key` is a provider key: a sha2-256 multihash (spec §7.2).
pub(crate) fn is_provider_key(key: &[u8]) -> bool {
    key.len() == 34 && key[0] == 0x12 && key[1] == 0x20
}

/// Kademlia's expiry for a record that ends at `expires_at` (unix seconds).
pub(crate) fn expiry(expires_at: u64, now: u64) -> Instant {
    Instant::now() + Duration::from_secs(expires_at.saturating_sub(now))
}

/// A [`MemoryStore`] that keeps only what validates.
pub(crate) struct ValidatingStore {
    inner: MemoryStore,
    cache: LookupCache,
    now: fn() -> u64,
}

impl ValidatingStore {
    /// A store for node `local`; records it takes in supersede older ones in `cache`.
    pub(crate) fn new(local: PeerId, config: MemoryStoreConfig, cache: LookupCache, now: fn() -> u64) -> Self {
        ValidatingStore { inner: MemoryStore::with_config(local, config), cache, now }
    }

    /// Whether `record` would be stored now (`Ok(None)`: it is already, unchanged).
    pub(crate) fn admit(&self, record: &Record) -> Result<Option<SignedRecord>, Refusal> {
        let existing = self.inner.get(&record.key);
        if existing.as_ref().is_some_and(|e| e.value == record.value) {
            return Ok(None);
        }
        check(record, existing.as_deref(), (self.now)()).map(Some)
    }
}

impl RecordStore for ValidatingStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(key)
    }

    /// Stores a record that validates, expiring at its `expires_at`. The
    /// error for a refusal is `ValueTooLarge`, the only one Kademlia's store
    /// interface has for it (the reason is logged at debug level).
    fn put(&mut self, mut record: Record) -> store::Result<()> {
        match self.admit(&record) {
            Ok(None) => Ok(()),
            Ok(Some(signed)) => {
                let ends = expiry(signed.record().expires_at, (self.now)());
                record.expires = Some(record.expires.map_or(ends, |e| e.min(ends)));
                self.inner.put(record)?;
                self.cache.supersede(&signed);
                Ok(())
            }
            Err(why) => {
                tracing::debug!(key = ?record.key, %why, "refused a record");
                Err(store::Error::ValueTooLarge)
            }
        }
    }

    fn remove(&mut self, key: &RecordKey) {
        self.inner.remove(key)
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    /// Keeps a provider entry under a provider key only; the provider is the
    /// sending peer (Kademlia checks it).
    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        if !is_provider_key(record.key.as_ref()) {
            tracing::debug!(key = ?record.key, "refused a provider entry: not a provider key");
            return Err(store::Error::ValueTooLarge);
        }
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        self.inner.remove_provider(key, provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::dht::{account_provider_key, record_key};
    use agentwire_protocol::testing::{identity, signed_brand_record};

    const NOW: u64 = 1_900_000_000;

    fn now() -> u64 {
        NOW
    }

    fn store() -> ValidatingStore {
        let config = MemoryStoreConfig { max_value_bytes: MAX_RECORD_BYTES, ..MemoryStoreConfig::default() };
        ValidatingStore::new(PeerId::random(), config, LookupCache::default(), now)
    }

    fn kad_record(brand: &str, seq: u64, expires_at: u64) -> Record {
        let id = identity(brand);
        let signed = signed_brand_record(&id, seq, expires_at);
        Record::new(record_key(&id.agent_id()), signed.encoded().to_vec())
    }

    #[test]
    fn only_newer_valid_records_replace_and_an_unchanged_one_is_acknowledged() {
        let mut s = store();
        let first = kad_record("a", 5, NOW + 600);
        s.put(first.clone()).unwrap();
        s.put(first.clone()).expect("the same record again is acknowledged");
        assert!(s.put(kad_record("a", 4, NOW + 600)).is_err(), "a lower sequence is refused");
        assert!(s.put(kad_record("a", 5, NOW + 900)).is_err(), "the same sequence with other content is refused");
        assert_eq!(s.get(&first.key).unwrap().value, first.value);
        let newer = kad_record("a", 6, NOW + 600);
        s.put(newer.clone()).unwrap();
        assert_eq!(s.get(&first.key).unwrap().value, newer.value);
    }

    #[test]
    fn forged_expired_misfiled_and_oversized_records_are_refused() {
        let mut s = store();
        let mut forged = kad_record("a", 1, NOW + 600);
        let last = forged.value.len() - 1;
        forged.value[last] ^= 1;
        assert!(s.put(forged).is_err());
        assert!(s.put(kad_record("a", 1, NOW)).is_err(), "expired");
        let mut misfiled = kad_record("a", 1, NOW + 600);
        misfiled.key = kad_record("b", 1, NOW + 600).key;
        assert!(s.put(misfiled).is_err(), "under another agent's key");
        let mut other_key = kad_record("a", 1, NOW + 600);
        other_key.key = RecordKey::new(&b"/pk/whatever".to_vec());
        assert!(s.put(other_key).is_err());
        let mut big = kad_record("a", 1, NOW + 600);
        big.value = vec![0xA5; MAX_RECORD_BYTES + 1];
        assert!(s.put(big).is_err());
        assert_eq!(s.records().count(), 0);
    }

    #[test]
    fn an_expired_stored_record_does_not_defend_its_sequence() {
        let old = kad_record("a", 9, NOW + 600);
        assert!(check(&kad_record("a", 3, NOW + 600), Some(&old), NOW).is_err(), "while fresh it does");
        let later = NOW + 601;
        assert!(check(&kad_record("a", 3, later + 600), Some(&old), later).is_ok(), "once expired it does not");
    }

    #[test]
    fn stored_records_expire_with_their_expires_at() {
        let mut s = store();
        let r = kad_record("a", 1, NOW + 60);
        s.put(r.clone()).unwrap();
        let expires = s.get(&r.key).unwrap().expires.unwrap();
        let left = expires.saturating_duration_since(Instant::now());
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
    }

    #[test]
    fn provider_entries_only_under_provider_keys() {
        let mut s = store();
        let key = RecordKey::new(&account_provider_key(&agentwire_protocol::testing::account("a.near")));
        let entry = |key: RecordKey| ProviderRecord::new(key, PeerId::random(), vec![]);
        s.add_provider(entry(key.clone())).unwrap();
        assert!(s.add_provider(entry(RecordKey::new(&b"not a multihash".to_vec()))).is_err());
        assert_eq!(s.providers(&key).len(), 1);
    }
}
