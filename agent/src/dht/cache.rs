//! The short-lived cache of lookup answers, by provider key. An answer is
//! dropped when it expires (the cache's time to live, or any of its records'
//! `expires_at`), and as soon as a newer record of one of its agents is seen
//! (a record lookup found it, or this node stored it), so a brand that
//! re-signs its record is not hidden behind its old one for the cache's life.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentwire_protocol::record::SignedRecord;

/// Answers held at most (the cache is emptied when full).
const MAX_ANSWERS: usize = 1024;

type Answers = HashMap<Vec<u8>, (Instant, Vec<SignedRecord>)>;

/// Lookup answers, shared by a node's handles and its record store.
#[derive(Clone, Default)]
pub(crate) struct LookupCache(Arc<Mutex<Answers>>);

impl LookupCache {
    /// The answer cached for `key`, if younger than `ttl` and every record in it is fresh at `now`.
    pub(crate) fn get(&self, key: &[u8], ttl: Duration, now: u64) -> Option<Vec<SignedRecord>> {
        let answers = self.0.lock().ok()?;
        let (at, records) = answers.get(key)?;
        (at.elapsed() < ttl && records.iter().all(|r| r.check_fresh(now).is_ok())).then(|| records.clone())
    }

    /// Caches `records` as the answer for `key`.
    pub(crate) fn insert(&self, key: Vec<u8>, records: Vec<SignedRecord>) {
        if let Ok(mut answers) = self.0.lock() {
            if answers.len() >= MAX_ANSWERS {
                answers.clear();
            }
            answers.insert(key, (Instant::now(), records));
        }
    }

    /// Drops every answer that holds an older record (a lower `seq`) of the agent of `newer`.
    pub(crate) fn supersede(&self, newer: &SignedRecord) {
        let r = newer.record();
        if let Ok(mut answers) = self.0.lock() {
            answers.retain(|_, (_, records)| {
                !records.iter().any(|old| old.record().identity == r.identity && old.record().seq < r.seq)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentwire_protocol::testing::{identity, signed_brand_record};

    const EXPIRES: u64 = 2_000_000_000;

    fn record(brand: &str, seq: u64) -> SignedRecord {
        signed_brand_record(&identity(brand), seq, EXPIRES)
    }

    #[test]
    fn a_newer_record_drops_the_answers_holding_an_older_one() {
        let cache = LookupCache::default();
        let (old, newer, other) = (record("a", 1), record("a", 2), record("b", 1));
        let now = EXPIRES - 100;
        let ttl = Duration::from_secs(30);
        cache.insert(b"account".to_vec(), vec![old.clone(), other.clone()]);
        cache.insert(b"service".to_vec(), vec![other.clone()]);
        cache.supersede(&old);
        assert!(cache.get(b"account", ttl, now).is_some(), "the same sequence supersedes nothing");
        cache.supersede(&newer);
        assert!(cache.get(b"account", ttl, now).is_none(), "the answer with the older record is dropped");
        assert_eq!(cache.get(b"service", ttl, now).map(|r| r.len()), Some(1), "other agents' answers stay");
    }

    #[test]
    fn answers_expire_with_the_ttl_and_with_their_records() {
        let cache = LookupCache::default();
        let expires = EXPIRES;
        cache.insert(b"k".to_vec(), vec![record("a", 1)]);
        assert!(cache.get(b"k", Duration::from_secs(30), expires - 1).is_some());
        assert!(cache.get(b"k", Duration::from_secs(30), expires).is_none(), "the record expired");
        assert!(cache.get(b"k", Duration::ZERO, expires - 1).is_none(), "the answer is older than the ttl");
    }
}
