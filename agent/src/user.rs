//! A user agent: finds brands on the DHT by NEAR account or service, checks
//! that an agent claiming a NEAR account is listed in the contract's
//! endpoint registry (unless told not to), and keeps one session per brand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{AgentId, LocalIdentity};
use agentwire_protocol::record::SignedRecord;
use libp2p::Multiaddr;
use tokio::sync::Mutex;

use crate::dht::{Dht, DhtConfig, DhtError};
use crate::near::{ChannelClient, NearError};
use crate::quic::{connect, Connection, Target, TransportError, TransportLimits};
use agentwire_protocol::exchange::{PAY_V1, RECEIPTS_V1, STREAM_V1};

/// How long a registry answer is trusted.
pub const REGISTRY_CACHE: Duration = Duration::from_secs(300);

/// What to look for.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The agents of a NEAR account.
    Account(AccountId),
    /// The agents offering a service.
    Service(String),
}

/// Where a user agent's sockets go, and its DHT settings.
#[derive(Clone, Debug)]
pub struct UserConfig {
    /// The DHT node (always a client). Its `listen` is empty by default: it
    /// accepts nothing and dials from an ephemeral port on every interface;
    /// give e.g. `/ip4/127.0.0.1/udp/0/quic-v1` to keep it on one address.
    pub dht: DhtConfig,
    /// Where the session endpoint binds (default `0.0.0.0:0`: any interface,
    /// an ephemeral port; it only dials out).
    pub quic_bind: SocketAddr,
}

impl UserConfig {
    /// The defaults, with these bootstrap peers.
    pub fn new(bootstrap: Vec<Multiaddr>) -> UserConfig {
        UserConfig {
            dht: DhtConfig { bootstrap, ..DhtConfig::default() },
            quic_bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }
}

/// What went wrong, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Discovery failed: check the name, the bootstrap peers, or retry.
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// No agent passed the registry check: the records claim an account that does not list them.
    #[error("no agent found for {0} is listed in the contract's endpoint registry")]
    NotRegistered(String),
    /// The registry could not be asked: check the NEAR RPC, or skip the check for pure messaging.
    #[error("endpoint registry: {0}")]
    Registry(#[from] NearError),
    /// Connecting or talking failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The record has no QUIC address.
    #[error("the agent's record has no address")]
    NoAddress,
}

impl UserError {
    /// The one thing to do about it.
    pub fn action(&self) -> &'static str {
        match self {
            UserError::Dht(e) => e.action(),
            UserError::NotRegistered(_) => "the record may be forged: use another agent, or ask the brand to register",
            UserError::Registry(_) => "check the NEAR RPC, or skip the registry check for pure messaging",
            UserError::Transport(_) => "retry later; the brand may be down",
            UserError::NoAddress => "the brand must publish a record with an address",
        }
    }

    /// Whether the same call a little later may succeed ([`DhtError::retry_may_help`]).
    pub fn retry_may_help(&self) -> bool {
        matches!(self, UserError::Dht(e) if e.retry_may_help())
    }
}

/// A running user agent.
pub struct UserAgent {
    identity: Arc<LocalIdentity>,
    dht: Dht,
    endpoint: quinn::Endpoint,
    registry: Option<ChannelClient>,
    limits: TransportLimits,
    verified: Mutex<HashMap<(String, AgentId), (Instant, bool)>>,
    sessions: Mutex<HashMap<AgentId, Arc<Connection>>>,
}

impl UserAgent {
    /// Starts a DHT client node and a QUIC endpoint with the defaults of
    /// [`UserConfig::new`]. `registry`: the channel contract to check
    /// endpoints against (`None` skips the check).
    pub async fn start(
        identity: Arc<LocalIdentity>,
        bootstrap: Vec<Multiaddr>,
        registry: Option<ChannelClient>,
        limits: TransportLimits,
    ) -> Result<UserAgent, UserError> {
        UserAgent::start_with(identity, UserConfig::new(bootstrap), registry, limits).await
    }

    /// Starts a DHT client node and a QUIC endpoint as `config` says. Fails
    /// when no bootstrap peer answers (within the DHT's connect timeout).
    pub async fn start_with(
        identity: Arc<LocalIdentity>,
        config: UserConfig,
        registry: Option<ChannelClient>,
        limits: TransportLimits,
    ) -> Result<UserAgent, UserError> {
        let dht = Dht::start(&identity.identity, DhtConfig { server: false, ..config.dht }).await?;
        let endpoint = quinn::Endpoint::client(config.quic_bind).map_err(TransportError::Io)?;
        Ok(UserAgent {
            identity,
            dht,
            endpoint,
            registry,
            limits,
            verified: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The DHT node (for inspection).
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    async fn listed(&self, record: &SignedRecord) -> Result<bool, UserError> {
        let Some(registry) = &self.registry else { return Ok(true) };
        let r = record.record();
        let key = (r.near_account.as_str().to_owned(), r.agent_id());
        if let Some((at, ok)) = self.verified.lock().await.get(&key) {
            if at.elapsed() < REGISTRY_CACHE {
                return Ok(*ok);
            }
        }
        let account = r
            .near_account
            .as_str()
            .parse()
            .map_err(|_| NearError::Invalid { what: "account", value: key.0.clone() })?;
        let ok = registry.is_endpoint(&account, &r.identity).await?;
        self.verified.lock().await.insert(key, (Instant::now(), ok));
        Ok(ok)
    }

    /// Finds agents; with a registry, only those their account lists.
    pub async fn find(&self, lookup: &Lookup) -> Result<Vec<SignedRecord>, UserError> {
        let (found, what) = match lookup {
            Lookup::Account(a) => (self.dht.find_by_account(a).await?, a.as_str().to_owned()),
            Lookup::Service(s) => (self.dht.find_by_service(s).await?, format!("service {s}")),
        };
        let mut ok = Vec::new();
        for r in found {
            if self.listed(&r).await? {
                ok.push(r);
            }
        }
        if ok.is_empty() {
            return Err(UserError::NotRegistered(what));
        }
        Ok(ok)
    }

    /// A session to the agent of `record`, reused while it lives. IK with the
    /// record's keys; if that handshake fails, once more with XX (spec §11.13).
    pub async fn session(&self, record: &SignedRecord) -> Result<Arc<Connection>, UserError> {
        let r = record.record();
        let agent = r.agent_id();
        if let Some(c) = self.sessions.lock().await.get(&agent) {
            if c.quic().close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let addr = *r.quic_addrs.first().ok_or(UserError::NoAddress)?;
        let caps = vec![STREAM_V1.to_owned(), PAY_V1.to_owned(), RECEIPTS_V1.to_owned()];
        let ik = Target { addr, identity: Some(r.identity), noise_static: Some(r.noise_static) };
        let conn = match connect(&self.endpoint, self.identity.clone(), &ik, &caps, self.limits).await {
            Ok(c) => c,
            Err(TransportError::Handshake(_)) => {
                let xx = Target { addr, identity: Some(r.identity), noise_static: None };
                connect(&self.endpoint, self.identity.clone(), &xx, &caps, self.limits).await?
            }
            Err(e) => return Err(e.into()),
        };
        let conn = Arc::new(conn);
        self.sessions.lock().await.insert(agent, conn.clone());
        Ok(conn)
    }
}
