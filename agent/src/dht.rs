//! Discovery on a libp2p Kademlia DHT under AgentWire's own protocol name.
//!
//! Brand agents and bootstrap nodes run in server mode, user agents in
//! client mode. A brand publishes its signed agent record under
//! `/agentwire/agent/<agent id>` and provides the keys of its NEAR account
//! and of each service (spec §7). Every node validates a record before it
//! stores it (signature, expiry, size, and a newer sequence number than the
//! one it holds), so forged, expired, oversized or stale records never
//! spread. Lookups have timeouts and a short cache; publishing and
//! bootstrapping repeat on timers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::dht::{account_provider_key, agent_from_record_key, record_key, service_provider_key};
use agentwire_protocol::identity::{AgentId, Keypair as AgentKeypair};
use agentwire_protocol::record::{SignedRecord, MAX_RECORD_BYTES};
use futures::StreamExt;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, GetProvidersOk, GetRecordOk, Mode, QueryId, QueryResult, Quorum, Record, StoreInserts};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::quic::now_secs;

/// AgentWire's Kademlia protocol (not IPFS's, so the DHTs never merge).
pub const KAD_PROTOCOL: &str = "/agentwire/kad/1.0.0";
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/agentwire/id/1.0.0";

/// Settings with their defaults.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Addresses to listen on (e.g. `/ip4/127.0.0.1/udp/0/quic-v1`, `/ip4/127.0.0.1/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers, as `/…/p2p/<peer id>` addresses.
    pub bootstrap: Vec<Multiaddr>,
    /// Serve the DHT (brands, bootstrap nodes) or only query it (users).
    pub server: bool,
    /// One Kademlia query's time limit (default 10 s).
    pub query_timeout: Duration,
    /// How often our own record and provider entries are published again (default 10 min).
    pub republish_interval: Duration,
    /// How often the routing table is refreshed (default 5 min).
    pub bootstrap_interval: Duration,
    /// How long lookup answers are cached (default 30 s). Only answers from
    /// a walk that finished are cached: one cut short by the query timeout
    /// may have missed providers, and the next lookup should walk again.
    pub cache_ttl: Duration,
    /// Records this node stores for others (default 1024).
    pub max_records: usize,
    /// Provider entries per key (default 64).
    pub max_providers_per_key: usize,
    /// Candidates a lookup checks (default 32).
    pub max_lookup_results: usize,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            server: false,
            query_timeout: Duration::from_secs(10),
            republish_interval: Duration::from_secs(600),
            bootstrap_interval: Duration::from_secs(300),
            cache_ttl: Duration::from_secs(30),
            max_records: 1024,
            max_providers_per_key: 64,
            max_lookup_results: 32,
        }
    }
}

/// What went wrong, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    /// The node could not start (bad address, transport): fix the configuration.
    #[error("DHT node: {0}")]
    Setup(String),
    /// The node has stopped.
    #[error("the DHT node has stopped")]
    Stopped,
    /// The query found nothing valid in time: retry later or check the name.
    #[error("not found on the DHT")]
    NotFound,
    /// Publishing failed (no peers to store it yet): retry after bootstrap.
    #[error("publishing failed: {0}")]
    Publish(String),
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

enum Command {
    Publish(Box<SignedRecord>, oneshot::Sender<Result<(), DhtError>>),
    Unpublish(oneshot::Sender<()>),
    Providers(Vec<u8>, oneshot::Sender<Result<Providers, DhtError>>),
    Record(AgentId, oneshot::Sender<Result<SignedRecord, DhtError>>),
    Stored(Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
    PutRaw(Vec<u8>, Vec<u8>, oneshot::Sender<()>),
    Listening(oneshot::Sender<Vec<Multiaddr>>),
    Peers(oneshot::Sender<usize>),
}

/// The providers a walk found for a key.
struct Providers {
    peers: HashSet<PeerId>,
    /// The walk reached the closest peers; `false` when the query timeout cut
    /// it short, so some providers may be missing.
    complete: bool,
}

/// Lookup answers by key, with when they were found.
type LookupCache = HashMap<Vec<u8>, (Instant, Vec<SignedRecord>)>;

/// A running DHT node.
#[derive(Clone)]
pub struct Dht {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    config: DhtConfig,
    cache: std::sync::Arc<std::sync::Mutex<LookupCache>>,
}

/// The libp2p keypair of an agent identity: its PeerId is the agent id.
pub fn libp2p_keypair(key: &AgentKeypair) -> Result<identity::Keypair, DhtError> {
    let mut seed = key.seed();
    identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|e| DhtError::Setup(e.to_string()))
}

/// Whether `record` may be stored under its key at `now`, replacing `existing`.
fn valid_for_store(record: &Record, existing: Option<&Record>, now: u64) -> Option<SignedRecord> {
    if record.value.len() > MAX_RECORD_BYTES {
        return None;
    }
    let agent = agent_from_record_key(record.key.as_ref())?;
    let signed = SignedRecord::decode(&record.value).ok()?;
    let old = existing.and_then(|r| SignedRecord::decode(&r.value).ok());
    signed.validate_for_store(&agent, old.as_ref(), now).ok()?;
    Some(signed)
}

/// Kademlia's expiry for a record that ends at `expires_at` (unix seconds).
fn expiry(expires_at: u64, now: u64) -> Instant {
    Instant::now() + Duration::from_secs(expires_at.saturating_sub(now))
}

impl Dht {
    /// Starts a node for the agent `key` and returns once it listens.
    pub async fn start(key: &AgentKeypair, config: DhtConfig) -> Result<Dht, DhtError> {
        let keypair = libp2p_keypair(key)?;
        let peer_id = keypair.public().to_peer_id();
        let setup = |e: &dyn std::fmt::Display| DhtError::Setup(e.to_string());
        let cfg = config.clone();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
            .map_err(|e| setup(&e))?
            .with_quic()
            .with_behaviour(|key| {
                let mut kcfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
                kcfg.set_query_timeout(cfg.query_timeout);
                kcfg.set_record_filtering(StoreInserts::FilterBoth);
                kcfg.set_periodic_bootstrap_interval(Some(cfg.bootstrap_interval));
                // Our own timers republish; Kademlia's 24 h/12 h defaults stay as a backstop.
                let store = MemoryStore::with_config(
                    key.public().to_peer_id(),
                    MemoryStoreConfig {
                        max_records: cfg.max_records,
                        max_value_bytes: MAX_RECORD_BYTES,
                        max_providers_per_key: cfg.max_providers_per_key,
                        max_provided_keys: 64,
                    },
                );
                let mut kad = kad::Behaviour::with_config(key.public().to_peer_id(), store, kcfg);
                kad.set_mode(Some(if cfg.server { Mode::Server } else { Mode::Client }));
                Behaviour {
                    kad,
                    identify: identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())),
                    ping: ping::Behaviour::default(),
                }
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        for addr in &config.listen {
            swarm.listen_on(addr.clone()).map_err(|e| setup(&e))?;
        }
        for addr in &config.bootstrap {
            if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            }
        }
        let (tx, rx) = mpsc::channel(256);
        let mut node = Node { swarm, pending: HashMap::new(), published: None, republish: config.republish_interval };
        // Wait until every listener is up, so callers can hand out addresses.
        let mut up = 0;
        while up < config.listen.len() {
            if let SwarmEvent::NewListenAddr { .. } = node.swarm.select_next_some().await {
                up += 1;
            }
        }
        if !config.bootstrap.is_empty() {
            let _ = node.swarm.behaviour_mut().kad.bootstrap();
        }
        tokio::spawn(node.run(rx));
        Ok(Dht { peer_id, commands: tx, config, cache: Default::default() })
    }

    /// A bootstrap node for a network on this machine (the demo, tests): a
    /// fresh key, server mode, one loopback QUIC port. Returns the node and
    /// the address other nodes bootstrap from (with `/p2p/<id>`).
    pub async fn loopback_bootstrap() -> Result<(Dht, Multiaddr), DhtError> {
        let listen = "/ip4/127.0.0.1/udp/0/quic-v1".parse().map_err(|e| DhtError::Setup(format!("{e}")))?;
        let config = DhtConfig { listen: vec![listen], server: true, ..DhtConfig::default() };
        let node = Dht::start(&AgentKeypair::generate(&mut rand_core::OsRng), config).await?;
        let addr = node.listen_addrs().await?.into_iter().next().ok_or(DhtError::Setup("no listen address".into()))?;
        Ok((node, addr))
    }

    /// This node's peer id (the agent id).
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, DhtError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }

    /// Addresses this node listens on, with `/p2p/<id>` (for bootstrap lists).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, DhtError> {
        let addrs = self.ask(Command::Listening).await?;
        Ok(addrs.into_iter().map(|a| a.with(libp2p::multiaddr::Protocol::P2p(self.peer_id))).collect())
    }

    /// Peers in the routing table.
    pub async fn routing_table_size(&self) -> Result<usize, DhtError> {
        self.ask(Command::Peers).await
    }

    /// Publishes `record` and provides its account and service keys; repeats
    /// every republish interval until [`Dht::unpublish`] or the node stops.
    pub async fn publish(&self, record: SignedRecord) -> Result<(), DhtError> {
        self.ask(|tx| Command::Publish(Box::new(record), tx)).await?
    }

    /// Stops republishing (the entries then expire).
    pub async fn unpublish(&self) -> Result<(), DhtError> {
        self.ask(Command::Unpublish).await
    }

    /// The raw record this node stores under `key`, if any (inspection, tests).
    pub async fn stored(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, DhtError> {
        self.ask(|tx| Command::Stored(key, tx)).await
    }

    /// Sends an arbitrary value under `key` to every peer in the routing
    /// table, without storing or checking it locally: for tests of what
    /// other nodes accept (a misbehaving node does exactly this).
    #[doc(hidden)]
    pub async fn put_raw(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DhtError> {
        self.ask(|tx| Command::PutRaw(key, value, tx)).await
    }

    /// The current record of `agent`, validated.
    pub async fn record(&self, agent: AgentId) -> Result<SignedRecord, DhtError> {
        self.ask(|tx| Command::Record(agent, tx)).await?
    }

    async fn lookup(
        &self,
        key: Vec<u8>,
        wanted: impl Fn(&SignedRecord) -> bool,
    ) -> Result<Vec<SignedRecord>, DhtError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, hit)) = cache.get(&key) {
                let now = now_secs();
                if at.elapsed() < self.config.cache_ttl && hit.iter().all(|r| r.check_fresh(now).is_ok()) {
                    return Ok(hit.clone());
                }
            }
        }
        let providers = self.ask(|tx| Command::Providers(key.clone(), tx)).await??;
        // The candidates' records are fetched at once: one slow or departed
        // provider costs one query timeout, not one per candidate.
        let agents = providers
            .peers
            .into_iter()
            .filter_map(|peer| AgentId::from_bytes(&peer.to_bytes()).ok())
            .take(self.config.max_lookup_results);
        let records = futures::future::join_all(agents.map(|agent| self.record(agent))).await;
        let found: Vec<SignedRecord> = records.into_iter().filter_map(Result::ok).filter(|r| wanted(r)).collect();
        if found.is_empty() {
            return Err(DhtError::NotFound);
        }
        if !providers.complete {
            tracing::debug!(found = found.len(), "provider walk cut short by the query timeout; answer not cached");
            return Ok(found);
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= 1024 {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), found.clone()));
        }
        Ok(found)
    }

    /// Agents that speak for NEAR account `account` (their records say so).
    /// The caller still checks the contract's endpoint registry.
    pub async fn find_by_account(&self, account: &AccountId) -> Result<Vec<SignedRecord>, DhtError> {
        let want = account.clone();
        self.lookup(account_provider_key(account), move |r| r.record().near_account == want).await
    }

    /// Agents offering service `name`.
    pub async fn find_by_service(&self, name: &str) -> Result<Vec<SignedRecord>, DhtError> {
        let want = name.to_owned();
        self.lookup(service_provider_key(name), move |r| r.record().service(&want).is_some()).await
    }
}

enum Pending {
    Publish(oneshot::Sender<Result<(), DhtError>>),
    Providers(Providers, oneshot::Sender<Result<Providers, DhtError>>),
    Record(Option<Box<SignedRecord>>, oneshot::Sender<Result<SignedRecord, DhtError>>),
}

struct Node {
    swarm: Swarm<Behaviour>,
    pending: HashMap<QueryId, Pending>,
    published: Option<SignedRecord>,
    republish: Duration,
}

impl Node {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut republish = tokio::time::interval(self.republish);
        republish.tick().await;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.event(event),
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
                let walk = Providers { peers: HashSet::new(), complete: true };
                self.pending.insert(q, Pending::Providers(walk, reply));
            }
            Command::Record(agent, reply) => {
                let q = self.swarm.behaviour_mut().kad.get_record(record_key(&agent).into());
                self.pending.insert(q, Pending::Record(None, reply));
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
            Command::Peers(reply) => {
                let n = self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum();
                let _ = reply.send(n);
            }
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) =>
            {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.kad_event(event),
            _ => {}
        }
    }

    fn kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.inbound(request),
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => self.progress(id, result, step.last),
            _ => {}
        }
    }

    /// Validation before storing anything a peer sends (`StoreInserts::FilterBoth`).
    fn inbound(&mut self, request: kad::InboundRequest) {
        let store = self.swarm.behaviour_mut().kad.store_mut();
        match request {
            kad::InboundRequest::PutRecord { record: Some(record), source, .. } => {
                let now = now_secs();
                let existing = store.get(&record.key).map(|r| r.into_owned());
                match valid_for_store(&record, existing.as_ref(), now) {
                    Some(signed) => {
                        let mut record = record;
                        record.expires = Some(expiry(signed.record().expires_at, now));
                        let _ = store.put(record);
                    }
                    None => tracing::debug!(peer = %source, "refused an invalid record"),
                }
            }
            kad::InboundRequest::AddProvider { record: Some(provider) } => {
                // Provider keys are sha2-256 multihashes (spec §7.2); the
                // provider is the sending peer, set by Kademlia.
                let key = provider.key.as_ref();
                if key.len() == 34 && key[0] == 0x12 && key[1] == 0x20 {
                    let _ = store.add_provider(provider);
                }
            }
            _ => {}
        }
    }

    fn progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let Some(mut pending) = self.pending.remove(&id) else { return };
        let mut done = last;
        match (&mut pending, result) {
            (Pending::Publish(_), QueryResult::PutRecord(r)) => {
                if let Pending::Publish(reply) = pending {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| DhtError::Publish(e.to_string())));
                }
                return;
            }
            // Answers come in as the query walks towards the key; the first
            // useful one ends it, so a lookup costs a round trip or two, not
            // the whole walk. Records from stale nodes lose to the validation
            // every storing node applies (a newer sequence always wins there).
            (Pending::Providers(found, _), QueryResult::GetProviders(r)) => match r {
                Ok(GetProvidersOk::FoundProviders { providers, .. }) => found.peers.extend(providers),
                Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                Err(_) => found.complete = false,
            },
            (Pending::Record(best, _), QueryResult::GetRecord(r)) => {
                if let Ok(GetRecordOk::FoundRecord(peer_record)) = r {
                    if let Some(signed) = valid_for_store(&peer_record.record, None, now_secs()) {
                        let newer = best.as_ref().is_none_or(|b| signed.record().seq > b.record().seq);
                        if newer {
                            *best = Some(Box::new(signed));
                        }
                        done = true;
                    }
                } else {
                    done = true;
                }
            }
            _ => done = true,
        }
        if !done {
            self.pending.insert(id, pending);
            return;
        }
        match pending {
            Pending::Publish(reply) => {
                let _ = reply.send(Err(DhtError::Publish("query ended unexpectedly".into())));
            }
            Pending::Providers(found, reply) => {
                let _ = reply.send(if found.peers.is_empty() { Err(DhtError::NotFound) } else { Ok(found) });
            }
            Pending::Record(best, reply) => {
                let _ = reply.send(best.map(|b| *b).ok_or(DhtError::NotFound));
            }
        }
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
    }
}
