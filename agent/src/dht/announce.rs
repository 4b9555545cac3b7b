//! Announcing our record and provider entries (spec §7.4, Publishing): at
//! each republish, and again soon when an announcement's walk failed or the
//! network outgrew the one it was made in.
//!
//! libp2p-kad stores an entry on the closest peers one walk finds, and
//! never moves it: on a slow or partly gone network the walk times out
//! before it reached the closest peers, and on a growing one closer peers
//! join after it. Either way lookups look where the entries are not, until
//! the next republish (an hour by default). Repeating the announcement
//! within seconds closes that window.

use std::collections::HashSet;
use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use agentwire_protocol::dht::{account_provider_key, record_key, service_provider_key};
use agentwire_protocol::record::SignedRecord;
use libp2p::kad::{QueryId, Quorum, Record};
use tokio::time::Instant;

use super::error::DhtError;
use super::node::Node;
use super::store::expiry;
use crate::quic::now_secs;

/// Times a publication is repeated soon after a failed announcement, before
/// the next republish (with the 30 s default: for 3 minutes).
pub(crate) const ANNOUNCE_RETRIES: u32 = 6;

/// Whether a routing table of `now` peers has outgrown the `then` peers an
/// announcement was made among: it doubled, counting at least 10.
fn outgrown(then: usize, now: usize) -> bool {
    now >= 2 * then.max(10)
}

/// When our announcements are made again, and which are in flight
/// (`Q` is libp2p-kad's query id; tests use their own).
pub(crate) struct Announcements<Q = QueryId> {
    /// How soon a failed or outgrown announcement is made again.
    retry: Duration,
    /// Queries announcing our provider entries and record, not yet answered.
    queries: HashSet<Q>,
    /// When the announcements are made again, before the next republish.
    retry_at: Option<Instant>,
    /// Repetitions after failures left in this round.
    retries_left: u32,
    /// Peers in the routing table when the last announcement started.
    among: usize,
}

impl<Q: Eq + Hash> Announcements<Q> {
    pub(crate) fn new(retry: Duration) -> Announcements<Q> {
        Announcements { retry, queries: HashSet::new(), retry_at: None, retries_left: ANNOUNCE_RETRIES, among: 0 }
    }

    /// A publication or a republish round starts: failures may be repeated again.
    pub(crate) fn new_round(&mut self) {
        self.retries_left = ANNOUNCE_RETRIES;
    }

    /// Nothing is to be announced again (the record was withdrawn).
    pub(crate) fn cancel(&mut self) {
        self.retry_at = None;
    }

    /// Resolves when the announcements are due again (never, when none is planned).
    pub(crate) fn due(&self) -> impl Future<Output = ()> + Send + 'static {
        let at = self.retry_at;
        async move {
            match at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Whether a repetition is planned.
    pub(crate) fn planned(&self) -> bool {
        self.retry_at.is_some()
    }

    fn plan(&mut self, now: Instant) {
        self.retry_at = Some(now + self.retry);
    }

    /// An announcement query started among `peers` peers.
    fn started(&mut self, id: Q, peers: usize) {
        self.queries.insert(id);
        self.among = peers;
    }

    /// The announcement query `id`'s walk ended; `ok` when it succeeded
    /// and no peer failed to answer it (a walk with failures may have ended
    /// before it found the closest peers, although the query reports
    /// success). Returns whether the query was one of ours.
    pub(crate) fn ended(&mut self, id: &Q, ok: bool, now: Instant) -> bool {
        if !self.queries.remove(id) {
            return false;
        }
        if !ok && self.retry_at.is_none() && self.retries_left > 0 {
            self.retries_left -= 1;
            self.plan(now);
        }
        true
    }

    /// The routing table holds `peers` now: once it has doubled since the
    /// last announcement, the peers closest to our keys are likely others
    /// than those that took our entries.
    pub(crate) fn table_grew(&mut self, peers: usize, now: Instant) {
        if self.retry_at.is_none() && outgrown(self.among, peers) {
            tracing::debug!(then = self.among, peers, "the routing table doubled since our announcement");
            self.plan(now);
        }
    }
}

impl Node {
    /// Puts our record and provides its keys again, if it is still current.
    pub(crate) fn republish(&mut self) {
        self.announcements.cancel();
        if let Some(record) = self.published.clone() {
            if record.check_fresh(now_secs()).is_ok() {
                if let Err(error) = self.put(&record) {
                    tracing::warn!(%error, "republishing our record failed");
                }
            }
        }
    }

    /// Peers in the routing table.
    pub(crate) fn table_size(&mut self) -> usize {
        self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum()
    }

    /// A new peer joined our routing table.
    pub(crate) fn network_grew(&mut self) {
        if self.published.is_some() && !self.announcements.planned() {
            let peers = self.table_size();
            self.announcements.table_grew(peers, Instant::now());
        }
    }

    /// Stores our record on the closest peers and provides its keys: the
    /// record's put is the returned query, all are announcements.
    pub(crate) fn put(&mut self, signed: &SignedRecord) -> Result<QueryId, DhtError> {
        let peers = self.table_size();
        let now = now_secs();
        let r = signed.record();
        let record = Record {
            key: record_key(&r.agent_id()).into(),
            value: signed.encoded().to_vec(),
            publisher: None,
            expires: Some(expiry(r.expires_at, now)),
        };
        let kad = &mut self.swarm.behaviour_mut().kad;
        // Our own store applies the same rules as everyone's: say why, not "value too large".
        if let Err(why) = kad.store_mut().admit(&record) {
            return Err(DhtError::Publish(format!("this node refuses its own record: {why}")));
        }
        let query = kad.put_record(record, Quorum::One).map_err(|e| DhtError::Publish(e.to_string()))?;
        self.announcements.started(query, peers);
        for key in std::iter::once(account_provider_key(&r.near_account))
            .chain(r.services.iter().map(|s| service_provider_key(&s.name)))
        {
            let q = kad.start_providing(key.into()).map_err(|e| DhtError::Publish(e.to_string()))?;
            self.announcements.started(q, peers);
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_is_repeated_each_time_the_network_it_saw_doubles() {
        // Announced among 1 peer (a brand that just joined): again at 20, not at 19.
        assert!(!outgrown(1, 19));
        assert!(outgrown(1, 20));
        // Then at 40, 80, …: a few times over a node's life, not per new peer.
        assert!(!outgrown(20, 39));
        assert!(outgrown(20, 40));
        assert!(!outgrown(160, 300));
        assert!(outgrown(160, 320));
    }

    #[test]
    fn failed_announcements_are_repeated_a_bounded_number_of_times_per_round() {
        let now = Instant::now();
        let mut a = Announcements::<u32>::new(Duration::from_secs(30));
        assert!(!a.ended(&1, false, now), "not an announcement of ours");
        assert!(!a.planned());
        a.started(1, 50);
        a.started(2, 50);
        assert!(a.ended(&1, true, now));
        assert!(!a.planned(), "a clean walk is not repeated");
        assert!(a.ended(&2, false, now));
        assert_eq!(a.retry_at, Some(now + Duration::from_secs(30)));
        // The repetition fails again, up to the bound; then only the republish repeats it.
        for n in 3..3 + ANNOUNCE_RETRIES {
            a.cancel();
            a.started(n, 50);
            a.ended(&n, false, now);
        }
        assert!(!a.planned(), "{ANNOUNCE_RETRIES} repetitions per round at most");
        a.new_round();
        a.started(99, 50);
        a.ended(&99, false, now);
        assert!(a.planned());
    }

    #[test]
    fn a_doubled_table_plans_one_repetition() {
        let now = Instant::now();
        let mut a = Announcements::<u32>::new(Duration::from_secs(30));
        a.started(1, 15);
        a.table_grew(29, now);
        assert!(!a.planned());
        a.table_grew(30, now);
        assert!(a.planned());
    }
}
