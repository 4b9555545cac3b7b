//! Discovery on a libp2p Kademlia DHT under AgentWire's own protocol name.
//!
//! Brand agents and bootstrap nodes run in server mode, user agents in
//! client mode. A brand publishes its signed agent record under
//! `/agentwire/agent/<agent id>` and provides the keys of its NEAR account
//! and of each service (spec §7), announcing its addresses with them. Every
//! node validates a record before it stores it (signature, expiry, size, and
//! a newer sequence number than the one it holds), so forged, expired,
//! oversized or stale records never spread. Every wait is bounded by
//! [`DhtConfig`]: a start fails at once on a malformed bootstrap address and
//! within the connect timeout when no bootstrap peer answers; a silent peer
//! costs a lookup one request timeout.
//! Lookups keep the newest record they see and are cached briefly;
//! publishing and bootstrapping repeat on timers.
//!
//! - `join.rs`: the swarm, listeners, announced addresses, the bootstrap join;
//! - `node.rs`: the task that owns the swarm (commands, walks, events);
//! - `announce.rs`: our announcements, repeated when a walk failed or the network doubled;
//! - `direct.rs`: the record protocol (a provider asked for its own record);
//! - `store.rs`: the record store with the inbound filter;
//! - `cache.rs`: lookup answers; `error.rs`: errors with causes and actions.

mod announce;
mod cache;
mod direct;
mod error;
mod join;
mod node;
mod store;
mod unanswered;

use std::time::Duration;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::dht::{account_provider_key, service_provider_key};
use agentwire_protocol::identity::{AgentId, Keypair as AgentKeypair};
use agentwire_protocol::record::SignedRecord;
use libp2p::{identity, Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

pub use direct::RECORD_PROTOCOL;
pub use error::{AddressProblem, DhtError, DialFailure, Unreachable};

use cache::LookupCache;
use node::{Command, Node, Walk};

use crate::quic::now_secs;

/// AgentWire's Kademlia protocol (not IPFS's, so the DHTs never merge).
pub const KAD_PROTOCOL: &str = "/agentwire/kad/1.0.0";
/// Identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/agentwire/id/1.0.0";

/// Settings with their defaults.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Addresses to listen on (e.g. `/ip4/127.0.0.1/udp/0/quic-v1`,
    /// `/ip4/127.0.0.1/tcp/0`). Empty (the default): none; a client then
    /// dials from an ephemeral port and accepts no connections.
    pub listen: Vec<Multiaddr>,
    /// Addresses other nodes reach a server at (its public ones), announced
    /// with its provider entries. Empty (the default): its listen addresses,
    /// loopback and private ones included, which suits a local network.
    pub external: Vec<Multiaddr>,
    /// Bootstrap peers, as `/ip4/…/udp/<port>/quic-v1/p2p/<peer id>` or
    /// `/ip4/…/tcp/<port>/p2p/<peer id>` addresses.
    pub bootstrap: Vec<Multiaddr>,
    /// When bootstrap peers are given and none answers within the connect
    /// timeout, [`Dht::start`] fails (default `true`). With `false` it logs
    /// a warning naming each address and why, and Kademlia keeps trying on
    /// its bootstrap timer (bootstrap nodes that join each other).
    pub require_bootstrap: bool,
    /// Serve the DHT (brands, bootstrap nodes) or only query it (users).
    pub server: bool,
    /// How long a dial may take, handshake included (QUIC; TCP with Noise
    /// and Yamux), default 2 s. Also bounds how long the start waits for a
    /// bootstrap peer to answer and for its listeners to come up.
    pub connect_timeout: Duration,
    /// How long one Kademlia request to one peer may take (default 3 s):
    /// a peer that has not answered by then counts as failed and the walk
    /// goes on, so one silent peer cannot use up a whole query.
    pub request_timeout: Duration,
    /// One Kademlia query's time limit (default 10 s).
    pub query_timeout: Duration,
    /// How long a lookup's walk goes on after its first useful answer (a
    /// provider, a valid record) before answering with what it has (default
    /// 500 ms); it answers earlier at its end or its quorum. A peer whose
    /// node is gone but still in routing tables (a stopped brand) then costs
    /// this, not the connect timeout. Answers cut short are not cached.
    pub settle: Duration,
    /// Valid answers after which a record walk stops (default 4); it stops
    /// earlier when the walk ends. It returns the highest sequence among
    /// them, and sends that record to the peers that answered with an older one.
    pub record_quorum: usize,
    /// How often our own record and provider entries are published again (default 10 min).
    pub republish_interval: Duration,
    /// When publishing them failed, or peers failed to answer its walk (on
    /// a slow or busy network the walk may end before it reached the
    /// closest peers), how soon it is repeated (default 30 s; at most 6
    /// times before the next republish), and how soon after the routing
    /// table has doubled since the last publication.
    pub announce_retry: Duration,
    /// How often the routing table is refreshed (default 5 min).
    pub bootstrap_interval: Duration,
    /// How long lookup answers are cached (default 30 s). Only answers from
    /// a walk that finished are cached: one cut short by the query timeout
    /// may have missed providers, and the next lookup should walk again. An
    /// answer is dropped as soon as a newer record of one of its agents is seen.
    pub cache_ttl: Duration,
    /// Records this node stores for others (default 1024).
    pub max_records: usize,
    /// Provider entries per key (default 64).
    pub max_providers_per_key: usize,
    /// Candidates a lookup checks (default 32).
    pub max_lookup_results: usize,
    /// How long a peer that did not answer a dial (on any address) is not
    /// dialed again (default 30 s; zero: always dial). A lookup's second
    /// walk then skips a stopped brand's node at once instead of waiting
    /// the connect timeout a second time. Inbound connections are never refused.
    pub unanswered_memory: Duration,
    /// How long a connection nobody uses stays open (default 30 s): long
    /// enough for a lookup's walks to share connections, short enough that
    /// the peers met on walks do not pile up; each open one costs keep-alives.
    pub idle_connection_timeout: Duration,
    /// How often an open connection that carries nothing proves it is alive
    /// (QUIC PING, default 15 s; QUIC's idle timeout is twice this). It
    /// keeps NAT bindings open; libp2p-quic's 5 s made 500 nodes' idle
    /// connections use up a 2-core machine.
    pub keep_alive: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            listen: Vec::new(),
            external: Vec::new(),
            bootstrap: Vec::new(),
            require_bootstrap: true,
            server: false,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_secs(10),
            settle: Duration::from_millis(500),
            record_quorum: 4,
            republish_interval: Duration::from_secs(600),
            announce_retry: Duration::from_secs(30),
            bootstrap_interval: Duration::from_secs(300),
            cache_ttl: Duration::from_secs(30),
            max_records: 1024,
            max_providers_per_key: 64,
            max_lookup_results: 32,
            unanswered_memory: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// A running DHT node.
#[derive(Clone)]
pub struct Dht {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    config: DhtConfig,
    cache: LookupCache,
}

/// The libp2p keypair of an agent identity: its PeerId is the agent id.
pub fn libp2p_keypair(key: &AgentKeypair) -> Result<identity::Keypair, DhtError> {
    let mut seed = key.seed();
    identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|e| DhtError::Setup(e.to_string()))
}

impl Dht {
    /// Starts a node for the agent `key` and returns once it listens and,
    /// when bootstrap peers are given, once one of them answers (see
    /// [`DhtConfig::require_bootstrap`]). A malformed bootstrap address or
    /// an unusable listen address fails at once, naming it.
    pub async fn start(key: &AgentKeypair, config: DhtConfig) -> Result<Dht, DhtError> {
        let keypair = libp2p_keypair(key)?;
        let peer_id = keypair.public().to_peer_id();
        let bootstrap = config
            .bootstrap
            .iter()
            .map(|addr| join::bootstrap_peer(addr, peer_id).map(|peer| (addr.clone(), peer)))
            .collect::<Result<Vec<_>, _>>()?;
        let cache = LookupCache::default();
        let swarm = join::swarm(keypair, &config, cache.clone())?;
        let mut node =
            Node::new(swarm, config.republish_interval, config.announce_retry, config.record_quorum, config.settle);
        if config.server {
            if config.external.is_empty() {
                node.announce_listen_addrs = true;
            }
            for addr in &config.external {
                node.swarm.add_external_address(addr.clone());
            }
        }
        node.listen(&config.listen, config.connect_timeout).await?;
        if let Err(failed) = node.join(&bootstrap, config.connect_timeout).await {
            let error = DhtError::BootstrapUnreachable(failed);
            if config.require_bootstrap {
                return Err(error);
            }
            tracing::warn!(%error, "starting without a DHT peer; retrying on the bootstrap timer");
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(node.run(rx));
        Ok(Dht { peer_id, commands: tx, config, cache })
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

    /// How long ago a dial to `agent`'s DHT node failed on every address,
    /// if that is within [`DhtConfig::unanswered_memory`]: a hint that the
    /// agent itself is down (its node and its sessions are one process).
    pub async fn unanswered(&self, agent: AgentId) -> Result<Option<Duration>, DhtError> {
        let Ok(peer) = PeerId::from_bytes(agent.as_bytes()) else { return Ok(None) };
        self.ask(|tx| Command::Unanswered(peer, tx)).await
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

    /// The current record of `agent`, validated: the highest sequence among
    /// the answers of its walk.
    pub async fn record(&self, agent: AgentId) -> Result<SignedRecord, DhtError> {
        let walk = self.ask(|tx| Command::Record(agent, tx)).await?;
        let what = || format!("the record of agent {agent}");
        match walk.found {
            Some(record) => {
                self.cache.supersede(&record);
                Ok(record)
            }
            None => Err(self.nothing(what(), &walk)),
        }
    }

    /// A provider's record: asked of the agent itself first (one request
    /// instead of a walk, spec §7.4). When it has not answered within the
    /// settle window (a stopped brand's node costs a whole connect timeout)
    /// a walk for the record starts beside it, and the first valid record
    /// wins; when the provider gives none, the walk's answer is the lookup's.
    async fn provider_record(&self, agent: AgentId, addrs: Vec<Multiaddr>) -> Result<SignedRecord, DhtError> {
        use futures::future::{select, Either};
        let direct = Box::pin(self.ask(|tx| Command::Direct(agent, addrs, tx)));
        let hedge = Box::pin(tokio::time::sleep(self.config.settle));
        let direct = match select(direct, hedge).await {
            Either::Left((answer, _)) => match answer? {
                Ok(record) => return Ok(self.provided(record)),
                Err(why) => {
                    tracing::debug!(%agent, %why, "no record from the provider itself; walking for it");
                    return self.record(agent).await;
                }
            },
            Either::Right(((), direct)) => direct,
        };
        tracing::debug!(%agent, "the provider has not answered yet; walking for its record as well");
        match select(direct, Box::pin(self.record(agent))).await {
            Either::Left((Ok(Ok(record)), _)) => Ok(self.provided(record)),
            Either::Left((_, walk)) => walk.await,
            Either::Right((Ok(record), _)) => Ok(record),
            Either::Right((Err(walk_error), direct)) => match direct.await {
                Ok(Ok(record)) => Ok(self.provided(record)),
                _ => Err(walk_error),
            },
        }
    }

    /// A record the provider gave: newer than cached answers, it replaces them.
    fn provided(&self, record: SignedRecord) -> SignedRecord {
        self.cache.supersede(&record);
        record
    }

    /// Why a walk that found nothing found nothing.
    fn nothing<T>(&self, what: String, walk: &Walk<T>) -> DhtError {
        if walk.asked == 0 {
            DhtError::NoPeers { what }
        } else if !walk.complete {
            DhtError::Timeout { what, timeout: self.config.query_timeout }
        } else {
            DhtError::NotFound { what, asked: walk.asked }
        }
    }

    async fn lookup(
        &self,
        what: String,
        key: Vec<u8>,
        wanted: impl Fn(&SignedRecord) -> bool,
    ) -> Result<Vec<SignedRecord>, DhtError> {
        if let Some(hit) = self.cache.get(&key, self.config.cache_ttl, now_secs()) {
            return Ok(hit);
        }
        let providers = self.ask(|tx| Command::Providers(key.clone(), tx)).await?;
        if providers.found.is_empty() {
            return Err(self.nothing(what, &providers));
        }
        // The candidates' records are fetched at once: one slow or departed
        // provider costs one request (then one query) timeout, not one per candidate.
        let candidates = providers
            .found
            .iter()
            .filter_map(|(peer, addrs)| AgentId::from_bytes(&peer.to_bytes()).ok().map(|a| (a, addrs.clone())))
            .take(self.config.max_lookup_results);
        let records =
            futures::future::join_all(candidates.map(|(agent, addrs)| self.provider_record(agent, addrs))).await;
        let timed_out = records.iter().any(|r| matches!(r, Err(DhtError::Timeout { .. })));
        let found: Vec<SignedRecord> = records.into_iter().filter_map(Result::ok).filter(|r| wanted(r)).collect();
        if found.is_empty() {
            return Err(if timed_out {
                DhtError::Timeout { what, timeout: self.config.query_timeout }
            } else {
                DhtError::NoValidRecord { what, providers: providers.found.len() }
            });
        }
        if !providers.complete {
            tracing::debug!(found = found.len(), "provider walk cut short by the query timeout; answer not cached");
            return Ok(found);
        }
        self.cache.insert(key, found.clone());
        Ok(found)
    }

    /// Agents that speak for NEAR account `account` (their records say so).
    /// The caller still checks the contract's endpoint registry.
    pub async fn find_by_account(&self, account: &AccountId) -> Result<Vec<SignedRecord>, DhtError> {
        let want = account.clone();
        let what = format!("account {account}");
        self.lookup(what, account_provider_key(account), move |r| r.record().near_account == want).await
    }

    /// Agents offering service `name`.
    pub async fn find_by_service(&self, name: &str) -> Result<Vec<SignedRecord>, DhtError> {
        let want = name.to_owned();
        let what = format!("service {name}");
        self.lookup(what, service_provider_key(name), move |r| r.record().service(&want).is_some()).await
    }
}
