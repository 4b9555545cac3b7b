//! The task that owns the libp2p swarm: commands from [`super::Dht`]
//! handles in, query progress and swarm events handled, answers out.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use agentwire_protocol::dht::{account_provider_key, record_key, service_provider_key};
use agentwire_protocol::identity::AgentId;
use agentwire_protocol::record::SignedRecord;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{
    self, GetProvidersOk, GetRecordError, GetRecordOk, QueryId, QueryResult, QueryStats, Quorum, Record,
};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::error::DhtError;
use super::store::{check, expiry, ValidatingStore};
use crate::quic::now_secs;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) kad: kad::Behaviour<ValidatingStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) unanswered: super::unanswered::Unanswered,
}

pub(crate) enum Command {
    Publish(Box<SignedRecord>, oneshot::Sender<Result<(), DhtError>>),
    Unpublish(oneshot::Sender<()>),
    Providers(Vec<u8>, oneshot::Sender<Walk<HashSet<PeerId>>>),
    Record(AgentId, oneshot::Sender<Walk<Option<SignedRecord>>>),
    Stored(Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
    PutRaw(Vec<u8>, Vec<u8>, oneshot::Sender<()>),
    Listening(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<usize>),
    /// How long ago a dial to this peer failed on every address (within the memory).
    Unanswered(PeerId, oneshot::Sender<Option<Duration>>),
}

/// What a walk found, and how it ended.
pub(crate) struct Walk<T> {
    pub(crate) found: T,
    /// The walk reached its end (or, for records, the quorum of answers);
    /// `false` when the query timeout or the settle window cut it short.
    pub(crate) complete: bool,
    /// Peers asked.
    pub(crate) asked: u32,
}

/// A record walk's state: the highest sequence among the valid answers so
/// far, and who answered with which sequence.
#[derive(Default)]
struct RecordWalk {
    best: Option<SignedRecord>,
    /// (peer, sequence) of each valid answer; `None` is this node's own store.
    answers: Vec<(Option<PeerId>, u64)>,
    /// The query timeout ended the walk.
    cut_short: bool,
}

impl RecordWalk {
    fn answer(&mut self, from: Option<PeerId>, record: SignedRecord) {
        let seq = record.record().seq;
        self.answers.push((from, seq));
        if self.best.as_ref().is_none_or(|b| seq > b.record().seq) {
            self.best = Some(record);
        }
    }

    /// The peers that answered with an older record than the best.
    fn stale(&self) -> Vec<PeerId> {
        let best = self.best.as_ref().map_or(0, |b| b.record().seq);
        self.answers.iter().filter(|(_, seq)| *seq < best).filter_map(|(peer, _)| *peer).collect()
    }
}

enum Pending {
    Publish(oneshot::Sender<Result<(), DhtError>>),
    Providers(Walk<HashSet<PeerId>>, oneshot::Sender<Walk<HashSet<PeerId>>>),
    Record(Box<RecordWalk>, oneshot::Sender<Walk<Option<SignedRecord>>>),
}

pub(crate) struct Node {
    pub(crate) swarm: Swarm<Behaviour>,
    pending: HashMap<QueryId, Pending>,
    published: Option<SignedRecord>,
    republish: Duration,
    /// Valid answers after which a record walk ends.
    record_quorum: usize,
    /// How long a walk goes on after its first useful answer ([`super::DhtConfig::settle`]).
    settle: Duration,
    /// Walks whose settle window is running, and the timers that end them.
    settling: HashSet<QueryId>,
    settle_timers: FuturesUnordered<Pin<Box<dyn Future<Output = QueryId> + Send>>>,
    /// Announce every listen address as external (server mode, no configured public addresses).
    pub(crate) announce_listen_addrs: bool,
    /// Bootstrap addresses, to warn when one fails after the start.
    pub(crate) bootstrap: HashSet<Multiaddr>,
}

impl Node {
    pub(crate) fn new(swarm: Swarm<Behaviour>, republish: Duration, record_quorum: usize, settle: Duration) -> Node {
        Node {
            swarm,
            pending: HashMap::new(),
            published: None,
            republish,
            record_quorum: record_quorum.max(1),
            settle,
            settling: HashSet::new(),
            settle_timers: FuturesUnordered::new(),
            announce_listen_addrs: false,
            bootstrap: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut republish = tokio::time::interval(self.republish);
        republish.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.event(event),
                Some(id) = self.settle_timers.next(), if !self.settle_timers.is_empty() => self.settled(id),
                _ = republish.tick() => {
                    if let Some(record) = self.published.clone() {
                        if record.check_fresh(now_secs()).is_ok() {
                            let _ = self.put(&record);
                        }
                    }
                }
            }
        }
    }

    fn put(&mut self, signed: &SignedRecord) -> Result<QueryId, DhtError> {
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
        for key in std::iter::once(account_provider_key(&r.near_account))
            .chain(r.services.iter().map(|s| service_provider_key(&s.name)))
        {
            kad.start_providing(key.into()).map_err(|e| DhtError::Publish(e.to_string()))?;
        }
        Ok(query)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish(record, reply) => match self.put(&record) {
                Ok(q) => {
                    self.published = Some(*record);
                    self.pending.insert(q, Pending::Publish(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Unpublish(reply) => {
                if let Some(r) = self.published.take() {
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    kad.remove_record(&record_key(&r.record().agent_id()).into());
                    kad.stop_providing(&account_provider_key(&r.record().near_account).into());
                    for s in &r.record().services {
                        kad.stop_providing(&service_provider_key(&s.name).into());
                    }
                }
                let _ = reply.send(());
            }
            Command::Providers(key, reply) => {
                let q = self.swarm.behaviour_mut().kad.get_providers(key.into());
                let walk = Walk { found: HashSet::new(), complete: true, asked: 0 };
                self.pending.insert(q, Pending::Providers(walk, reply));
            }
            Command::Record(agent, reply) => {
                let q = self.swarm.behaviour_mut().kad.get_record(record_key(&agent).into());
                self.pending.insert(q, Pending::Record(Box::default(), reply));
            }
            Command::Stored(key, reply) => {
                let value = self.swarm.behaviour_mut().kad.store_mut().get(&key.into()).map(|r| r.value.clone());
                let _ = reply.send(value);
            }
            Command::PutRaw(key, value, reply) => {
                let kad = &mut self.swarm.behaviour_mut().kad;
                let peers: Vec<PeerId> =
                    kad.kbuckets().flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>()).collect();
                let record = Record { key: key.into(), value, publisher: None, expires: None };
                kad.put_record_to(record, peers.into_iter(), Quorum::One);
                let _ = reply.send(());
            }
            Command::Listening(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Unanswered(peer, reply) => {
                let _ = reply.send(self.swarm.behaviour().unanswered.failed_at(&peer).map(|at| at.elapsed()));
            }
            Command::Peers(reply) => {
                let n = self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum();
                let _ = reply.send(n);
            }
        }
    }

    pub(crate) fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if info.protocols.iter().any(|p| p.as_ref() == super::KAD_PROTOCOL) =>
            {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::InboundRequest { request })) => self.inbound(request),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result,
                step,
                stats,
            })) => self.progress(id, result, step.last, &stats),
            // A server's listen addresses are what it announces (ADD_PROVIDER
            // carries the confirmed external addresses, and other
            // implementations drop a provider without any).
            SwarmEvent::NewListenAddr { address, .. } if self.announce_listen_addrs => {
                self.swarm.add_external_address(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } if self.announce_listen_addrs => {
                self.swarm.remove_external_address(&address);
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                if let libp2p::swarm::DialError::Transport(failed) = &error {
                    for (addr, _) in failed.iter().filter(|(a, _)| self.bootstrap.contains(a)) {
                        tracing::warn!(%addr, error = %super::error::describe(&error), "bootstrap peer unreachable");
                    }
                }
            }
            _ => {}
        }
    }

    /// What a peer asks this node to store goes through the validating
    /// store (`StoreInserts::FilterBoth`): records that validate, provider
    /// entries under provider keys (the provider is the sender, set by Kademlia).
    fn inbound(&mut self, request: kad::InboundRequest) {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        match request {
            kad::InboundRequest::PutRecord { record: Some(record), source, .. } => {
                let _ = store.put(record).inspect_err(|_| tracing::debug!(peer = %source, "refused a record"));
            }
            kad::InboundRequest::AddProvider { record: Some(provider) } => {
                let _ = store.add_provider(provider);
            }
            _ => {}
        }
    }

    fn progress(&mut self, id: QueryId, result: QueryResult, last: bool, stats: &QueryStats) {
        let Some(mut pending) = self.pending.remove(&id) else { return };
        let mut done = last;
        match (&mut pending, result) {
            (Pending::Publish(_), QueryResult::PutRecord(r)) => {
                if let Pending::Publish(reply) = pending {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| DhtError::Publish(e.to_string())));
                }
                return;
            }
            // A provider walk runs to its end (any peer on the way may know a
            // provider), or to the end of its settle window once it found one.
            (Pending::Providers(walk, _), QueryResult::GetProviders(r)) => match r {
                Ok(GetProvidersOk::FoundProviders { providers, .. }) => {
                    walk.found.extend(providers);
                    if !walk.found.is_empty() {
                        self.start_settling(id);
                    }
                }
                Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                Err(_) => walk.complete = false,
            },
            // A record walk keeps the highest sequence among the valid
            // answers, until the walk ends or `record_quorum` answers came
            // in: a node that does not enforce the sequence rule (or missed
            // an update) may hold a superseded record, and may be the
            // first one asked.
            (Pending::Record(walk, _), QueryResult::GetRecord(r)) => match r {
                Ok(GetRecordOk::FoundRecord(found)) => {
                    if let Ok(signed) = check(&found.record, None, now_secs()) {
                        walk.answer(found.peer, signed);
                        done |= walk.answers.len() >= self.record_quorum;
                        self.start_settling(id);
                    }
                }
                Ok(GetRecordOk::FinishedWithNoAdditionalRecord { .. }) | Err(GetRecordError::NotFound { .. }) => {}
                Err(_) => {
                    walk.cut_short = true;
                    done = true;
                }
            },
            _ => done = true,
        }
        if !done {
            self.pending.insert(id, pending);
            return;
        }
        self.answer(id, pending, stats.num_requests());
    }

    /// Answers a walk and stops its query.
    fn answer(&mut self, id: QueryId, pending: Pending, asked: u32) {
        self.settling.remove(&id);
        match pending {
            Pending::Publish(reply) => {
                let _ = reply.send(Err(DhtError::Publish("query ended unexpectedly".into())));
            }
            Pending::Providers(mut walk, reply) => {
                walk.asked = asked;
                let _ = reply.send(walk);
            }
            Pending::Record(walk, reply) => self.finish_record(walk, reply, asked),
        }
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
    }

    /// A walk has a useful answer: it goes on for the settle window at most,
    /// so that one peer whose node is gone (a stopped brand stays in routing
    /// tables) cannot hold the answer for a whole connect timeout.
    fn start_settling(&mut self, id: QueryId) {
        if self.settling.insert(id) {
            let settle = self.settle;
            self.settle_timers.push(Box::pin(async move {
                tokio::time::sleep(settle).await;
                id
            }));
        }
    }

    /// A walk's settle window ended before the walk did: it answers with
    /// what it has, marked incomplete (not cached).
    fn settled(&mut self, id: QueryId) {
        if !self.settling.contains(&id) {
            return;
        }
        let Some(mut pending) = self.pending.remove(&id) else {
            self.settling.remove(&id);
            return;
        };
        let asked = self.swarm.behaviour_mut().kad.query(&id).map_or(0, |q| q.stats().num_requests());
        match &mut pending {
            Pending::Providers(walk, _) => walk.complete = false,
            Pending::Record(walk, _) => walk.cut_short = true,
            Pending::Publish(_) => {}
        }
        tracing::debug!(asked, "walk answered at the end of its settle window");
        self.answer(id, pending, asked);
    }

    /// Answers a record walk, and sends the newest record to the peers that
    /// answered with an older one (they take it: its sequence is higher).
    fn finish_record(&mut self, walk: Box<RecordWalk>, reply: oneshot::Sender<Walk<Option<SignedRecord>>>, asked: u32) {
        if let Some(best) = &walk.best {
            let r = best.record();
            let record = Record {
                key: record_key(&r.agent_id()).into(),
                value: best.encoded().to_vec(),
                publisher: None,
                expires: Some(expiry(r.expires_at, now_secs())),
            };
            let kad = &mut self.swarm.behaviour_mut().kad;
            if walk.answers.iter().any(|(peer, seq)| peer.is_none() && *seq < r.seq) {
                // Our own store held the older one; it validates the newer one like any put.
                let _ = kad.store_mut().put(record.clone());
            }
            let stale = walk.stale();
            if !stale.is_empty() {
                tracing::debug!(
                    peers = stale.len(),
                    seq = r.seq,
                    "sending the newest record to peers holding an older one"
                );
                kad.put_record_to(record, stale.into_iter(), Quorum::One);
            }
        }
        let _ = reply.send(Walk { found: walk.best, complete: !walk.cut_short, asked });
    }
}
