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
use libp2p::core::Endpoint;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{
    self, GetProvidersOk, GetRecordError, GetRecordOk, QueryId, QueryResult, QueryStats, Quorum, Record,
};
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::announce::Announcements;
use super::direct::{DirectReply, RecordCodec};
use super::error::DhtError;
use super::store::{check, expiry, ValidatingStore};
use crate::quic::now_secs;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) kad: kad::Behaviour<ValidatingStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) unanswered: super::unanswered::Unanswered,
    /// The record protocol: providers asked for their own records (`direct.rs`).
    pub(crate) record: request_response::Behaviour<RecordCodec>,
}

pub(crate) enum Command {
    Publish(Box<SignedRecord>, oneshot::Sender<Result<(), DhtError>>),
    Unpublish(oneshot::Sender<()>),
    Providers(Vec<u8>, oneshot::Sender<Walk<Providers>>),
    Record(AgentId, oneshot::Sender<Walk<Option<SignedRecord>>>),
    /// Ask the agent itself, at these addresses, for its record.
    Direct(AgentId, Vec<Multiaddr>, DirectReply),
    Stored(Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
    PutRaw(Vec<u8>, Vec<u8>, oneshot::Sender<()>),
    Listening(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<usize>),
    /// How long ago a dial to this peer failed on every address (within the memory).
    Unanswered(PeerId, oneshot::Sender<Option<Duration>>),
}

/// Addresses kept per provider (the peers that answered chose them).
const MAX_PROVIDER_ADDRS: usize = 8;

/// Providers found, each with the addresses the walk learned for it (the
/// query forgets them when it ends; the record request dials them).
pub(crate) type Providers = HashMap<PeerId, Vec<Multiaddr>>;

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
    Providers(Walk<Providers>, oneshot::Sender<Walk<Providers>>),
    Record(Box<RecordWalk>, oneshot::Sender<Walk<Option<SignedRecord>>>),
}

pub(crate) struct Node {
    pub(crate) swarm: Swarm<Behaviour>,
    pending: HashMap<QueryId, Pending>,
    /// Record requests in flight, by the agent asked.
    pub(crate) direct: HashMap<OutboundRequestId, (AgentId, DirectReply)>,
    pub(crate) published: Option<SignedRecord>,
    republish: Duration,
    /// Our announcements in flight, and when they are made again (`announce.rs`).
    pub(crate) announcements: Announcements,
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
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        republish: Duration,
        announce_retry: Duration,
        record_quorum: usize,
        settle: Duration,
    ) -> Node {
        Node {
            swarm,
            pending: HashMap::new(),
            direct: HashMap::new(),
            published: None,
            republish,
            announcements: Announcements::new(announce_retry),
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
                    self.announcements.new_round();
                    self.republish();
                }
                _ = self.announcements.due(), if self.announcements.planned() => {
                    tracing::debug!("announcing again: a walk failed, or the network doubled");
                    self.republish();
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish(record, reply) => match self.put(&record) {
                Ok(q) => {
                    self.announcements.new_round();
                    self.published = Some(*record);
                    self.pending.insert(q, Pending::Publish(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Unpublish(reply) => {
                self.announcements.cancel();
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
                let walk = Walk { found: HashMap::new(), complete: true, asked: 0 };
                self.pending.insert(q, Pending::Providers(walk, reply));
            }
            Command::Record(agent, reply) => {
                let q = self.swarm.behaviour_mut().kad.get_record(record_key(&agent).into());
                self.pending.insert(q, Pending::Record(Box::default(), reply));
            }
            Command::Direct(agent, addrs, reply) => self.ask_directly(agent, addrs, reply),
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
                let n = self.table_size();
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
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated { is_new_peer: true, .. })) => {
                self.network_grew();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Record(event)) => self.direct_event(event),
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
        if last {
            // A walk in which peers failed to answer may have ended before
            // it found the closest ones: the entries then sit where lookups
            // do not look, although the query reports success.
            let ok = stats.num_failures() == 0
                && match &result {
                    QueryResult::StartProviding(r) => r.is_ok(),
                    QueryResult::PutRecord(r) => r.is_ok(),
                    _ => false,
                };
            self.announcements.ended(&id, ok, tokio::time::Instant::now());
        }
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
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    for peer in providers {
                        // Where the answer said it listens: in the query's
                        // address book only while the query runs.
                        let addrs = kad
                            .handle_pending_outbound_connection(
                                ConnectionId::new_unchecked(0),
                                Some(peer),
                                &[],
                                Endpoint::Dialer,
                            )
                            .unwrap_or_default();
                        let known = walk.found.entry(peer).or_default();
                        for addr in addrs {
                            if known.len() < MAX_PROVIDER_ADDRS && !known.contains(&addr) {
                                known.push(addr);
                            }
                        }
                    }
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
