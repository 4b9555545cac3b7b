//! A user agent: finds brands on the DHT by NEAR account or service, checks
//! that an agent claiming a NEAR account is listed in the contract's
//! endpoint registry (unless told not to), and keeps one session per brand
//! endpoint.
//!
//! A brand may run several endpoints (a fleet: one record per endpoint, all
//! under its account, sharing its channels). [`UserAgent::ask`] keeps going
//! to the endpoint it used last; when that one fails (unreachable, timed
//! out, or unable to take payments), it is passed over for
//! [`ENDPOINT_DOWN_FOR`] and the next query goes to another endpoint, with
//! the same channel: the payer's channel is with the account, not the
//! endpoint.

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
use crate::pay::{query, Payer, QueryError, QueryOutcome};
use crate::quic::{connect, Connection, Target, TransportError, TransportLimits};
use crate::units;
use agentwire_protocol::exchange::{PAY_V1, RECEIPTS_V1, STREAM_V1};

/// How long a registry answer is trusted.
pub const REGISTRY_CACHE: Duration = Duration::from_secs(300);

/// How long an endpoint that failed a query is passed over while its brand
/// has others.
pub const ENDPOINT_DOWN_FOR: Duration = Duration::from_secs(30);

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
    /// The agent did not answer at its record's address: it is down, or its record is stale.
    #[error("{0}")]
    Unanswered(Box<Unanswered>),
}

/// An agent that did not answer at the address its record gives, with what
/// the record says about its age (a stopped brand stays on the DHT until
/// its record expires).
#[derive(Debug)]
pub struct Unanswered {
    /// The agent.
    pub agent: AgentId,
    /// The account it speaks for.
    pub account: String,
    /// The address dialed.
    pub addr: SocketAddr,
    /// Why the session failed.
    pub cause: TransportError,
    /// The record's sequence number (by convention its publication time, Unix seconds).
    pub seq: u64,
    /// When the record expires, Unix seconds.
    pub expires_at: u64,
    /// How long ago this node's DHT dial to the agent's DHT node failed, if it just did.
    pub dht_unanswered: Option<Duration>,
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = units::now_secs();
        write!(f, "the agent {} of {} did not answer at {}: {}", self.agent, self.account, self.addr, self.cause)?;
        if let Some(ago) = self.dht_unanswered {
            write!(f, "; its DHT node did not answer either ({:.1} s ago)", ago.as_secs_f64())?;
        }
        write!(f, ". Its record may be stale: ")?;
        // The spec recommends the publication time as `seq`; say so only when it looks like one.
        if (1_000_000_000..=now + 300).contains(&self.seq) {
            write!(f, "published {}, ", units::when(self.seq, now))?;
        }
        write!(f, "expires {}", units::when(self.expires_at, now))
    }
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
            UserError::Unanswered(_) => {
                "the brand is probably stopped (its record stays on the DHT until it expires): retry later, or ask another agent (`agentwire lookup --check` shows which answer)"
            }
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
    /// Endpoints that failed, and when.
    down: Mutex<HashMap<AgentId, Instant>>,
    /// The endpoint each brand (account) was last reached at.
    last_used: Mutex<HashMap<String, AgentId>>,
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
        let endpoint = crate::quic::client_endpoint(config.quic_bind, limits.udp_buffer_bytes)?;
        Ok(UserAgent {
            identity,
            dht,
            endpoint,
            registry,
            limits,
            verified: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            last_used: Mutex::new(HashMap::new()),
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
            // A session near its age or stream limit is replaced before a request fails at it.
            if c.is_fresh() {
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
            Err(cause @ (TransportError::ConnectTimeout { .. } | TransportError::Connection(_))) => {
                return Err(UserError::Unanswered(Box::new(Unanswered {
                    agent,
                    account: r.near_account.as_str().to_owned(),
                    addr,
                    cause,
                    seq: r.seq,
                    expires_at: r.expires_at,
                    dht_unanswered: self.dht.unanswered(agent).await.ok().flatten(),
                })))
            }
            Err(e) => return Err(e.into()),
        };
        let conn = Arc::new(conn);
        self.sessions.lock().await.insert(agent, conn.clone());
        Ok(conn)
    }

    /// The endpoints of `records` in the order to try them: the one this
    /// brand was last reached at first, then those not passed over, then
    /// those that failed (longest ago first), so a brand whose every
    /// endpoint failed is still tried.
    async fn endpoint_order(&self, records: &[SignedRecord]) -> Vec<SignedRecord> {
        let last = match records.first() {
            Some(r) => self.last_used.lock().await.get(r.record().near_account.as_str()).copied(),
            None => None,
        };
        let down = self.down.lock().await;
        let failed_at =
            |r: &SignedRecord| down.get(&r.record().agent_id()).copied().filter(|at| at.elapsed() < ENDPOINT_DOWN_FOR);
        let mut order: Vec<(u8, Option<Instant>, usize)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| match failed_at(r) {
                Some(at) => (2, Some(at), i),
                None if Some(r.record().agent_id()) == last => (0, None, i),
                None => (1, None, i),
            })
            .collect();
        order.sort();
        order.into_iter().map(|(_, _, i)| records[i].clone()).collect()
    }

    /// A session to one endpoint of a brand, among `records` (what
    /// [`UserAgent::find`] returned for its account): the endpoint last used
    /// while it works, else the next one that can be reached. Returns the
    /// record of the endpoint with the session.
    pub async fn session_to_brand(
        &self,
        records: &[SignedRecord],
    ) -> Result<(SignedRecord, Arc<Connection>), UserError> {
        let mut last_error = UserError::NoAddress;
        for record in self.endpoint_order(records).await {
            match self.session(&record).await {
                Ok(conn) => {
                    let r = record.record();
                    self.last_used.lock().await.insert(r.near_account.as_str().to_owned(), r.agent_id());
                    return Ok((record, conn));
                }
                Err(e) => {
                    tracing::info!(agent = %record.record().agent_id(), error = %e, "endpoint unreachable; trying the next");
                    self.endpoint_failed(&record).await;
                    last_error = e;
                }
            }
        }
        Err(last_error)
    }

    /// The endpoint of `record` failed: its session is dropped, and its
    /// brand's next queries go to another endpoint for [`ENDPOINT_DOWN_FOR`].
    pub async fn endpoint_failed(&self, record: &SignedRecord) {
        let r = record.record();
        let agent = r.agent_id();
        if let Some(c) = self.sessions.lock().await.remove(&agent) {
            c.close();
        }
        self.down.lock().await.insert(agent, Instant::now());
        let mut last = self.last_used.lock().await;
        if last.get(r.near_account.as_str()) == Some(&agent) {
            last.remove(r.near_account.as_str());
        }
    }

    /// Asks `service` of the brand whose endpoints are `records`, paying
    /// with `payer` if it is priced, on the endpoint [`UserAgent::session_to_brand`]
    /// picks. A query that fails because of its endpoint (unreachable, cut
    /// off, or unable to take payments now) marks it failed, so the next
    /// query goes to another endpoint; the query itself is not re-sent (it
    /// may have been served). Returns the record of the endpoint that answered.
    pub async fn ask<F: std::future::Future<Output = ()>>(
        &self,
        records: &[SignedRecord],
        service: &str,
        body: Vec<u8>,
        payer: Option<&Payer>,
        on_chunk: impl FnMut(&[u8]) -> F,
    ) -> Result<(SignedRecord, QueryOutcome), AskError> {
        let (record, conn) = self.session_to_brand(records).await.map_err(AskError::Connect)?;
        match query(&conn, &record, service, body, payer, on_chunk).await {
            Ok(outcome) => Ok((record, outcome)),
            Err(e) => {
                if endpoint_fault(&e) {
                    self.endpoint_failed(&record).await;
                }
                Err(AskError::Query(e))
            }
        }
    }
}

/// Why [`UserAgent::ask`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No endpoint of the brand could be reached.
    #[error(transparent)]
    Connect(UserError),
    /// The query failed on the endpoint reached.
    #[error(transparent)]
    Query(QueryError),
}

/// Whether a failed query says its endpoint is unusable now (the brand's
/// other endpoints may not be): the connection or a wait failed, or the
/// brand answered that it cannot serve (its payment database, say).
pub fn endpoint_fault(e: &QueryError) -> bool {
    match e {
        QueryError::Transport(t) => match t.remote() {
            Some((code, _)) => code == agentwire_protocol::wire::ErrorCode::Unavailable,
            None => true,
        },
        _ => false,
    }
}
