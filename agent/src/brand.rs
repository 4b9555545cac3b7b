//! A brand agent: its services behind a QUIC session server, its signed
//! record on the DHT (re-signed with a higher sequence number before it
//! expires), and optional Prometheus metrics. `agentwire serve` runs one.

use std::sync::Arc;
use std::time::Duration;

use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::record::{AgentRecord, Currency, Service as Offer, SignedRecord, MAX_P2P_ADDRS};
use libp2p::Multiaddr;

use std::collections::HashMap;

use crate::config::{BrandConfig, HandlerConfig, PaymentsConfig};
use crate::dht::{Dht, DhtConfig};
use crate::near::{ChannelClient, NearAccount};
#[cfg(feature = "postgres")]
use crate::pay::pg::{PgConfig, PgMoney};
use crate::pay::store::{Store, StoreConfig};
use crate::pay::{LedgerMoney, Payee, PayeeConfig, PayeeMoney, Price};
use crate::quic::Increment;
use crate::quic::{now_secs, Server, Service, TransportLimits};
use crate::services::{Builtin, HttpProxy, HttpProxyConfig, OpenAiChat, OpenAiConfig, Router};
use agentwire_protocol::exchange::{PAY_V1, RECEIPTS_V1, STREAM_V1};

/// Why a brand agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrandError {
    /// The configuration is unusable (the message says what to change).
    #[error("{0}")]
    Config(String),
    /// The key file.
    #[error(transparent)]
    Key(#[from] crate::keyfile::KeyFileError),
    /// The session server.
    #[error(transparent)]
    Transport(#[from] crate::quic::TransportError),
    /// The DHT node.
    #[error(transparent)]
    Dht(#[from] crate::dht::DhtError),
}

/// A running brand agent.
pub struct RunningBrand {
    /// Its identity.
    pub identity: Arc<LocalIdentity>,
    /// The session server.
    pub server: Server,
    /// Its DHT node.
    pub dht: Dht,
    /// The record it publishes now.
    pub record: SignedRecord,
    /// Where metrics are served, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The payee, when services are priced.
    pub payee: Option<Arc<Payee>>,
    refresher: tokio::task::JoinHandle<()>,
    payee_task: Option<PayeeTask>,
}

/// The payee's watcher: its stop signal, and the task, which returns the
/// (channel, total) its last claim made.
type PayeeTask = (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<Vec<(u64, u128)>>);

/// What a brand's shutdown did with the money it holds vouchers for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// (channel, total now claimed on chain) for each claim made on the way out.
    pub claimed: Vec<(u64, u128)>,
    /// (channel, durable amount not claimed): its claim failed (chain
    /// unreachable, say). The voucher is kept; the watcher claims it after
    /// the next start, so start again before the channel could be closed.
    pub unclaimed: Vec<(u64, u128)>,
    /// This endpoint of a fleet was not the claimer: the fleet's claimer
    /// claims (nothing was claimed or left unclaimed by this one).
    pub left_to_fleet: bool,
}

fn config_err(e: impl std::fmt::Display) -> BrandError {
    BrandError::Config(e.to_string())
}

/// Builds the services of a configuration.
pub fn router(config: &BrandConfig) -> Result<Router, BrandError> {
    let mut router = Router::new();
    for s in &config.services {
        let service: Arc<dyn Service> = match &s.handler {
            HandlerConfig::Echo => Arc::new(Builtin::Echo),
            HandlerConfig::Words => Arc::new(Builtin::Words),
            HandlerConfig::Static { text } => Arc::new(Builtin::Static(text.clone().into_bytes())),
            HandlerConfig::Http { url, headers, stream, timeout_secs } => {
                let mut c = HttpProxyConfig::new(url);
                c.headers = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                c.stream = *stream;
                if let Some(t) = timeout_secs {
                    c.timeout = Duration::from_secs(*t);
                }
                Arc::new(HttpProxy::new(c).map_err(config_err)?)
            }
            HandlerConfig::OpenAi { url, models, max_tokens, api_key, api_key_env, headers, timeout_secs } => {
                let mut c = OpenAiConfig::new(url, models.clone());
                c.max_tokens = *max_tokens;
                c.headers = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                c.api_key = match (api_key, api_key_env) {
                    (Some(k), _) => Some(k.clone()),
                    (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                        config_err(format!("service {}: handler.api_key_env {var} is not set", s.name))
                    })?),
                    (None, None) => None,
                };
                if let Some(t) = timeout_secs {
                    c.timeout = Duration::from_secs(*t);
                }
                c.pricing = s.pricing();
                Arc::new(OpenAiChat::new(c).map_err(config_err)?)
            }
        };
        router = router.route(&s.name, service);
    }
    Ok(router)
}

fn sign_record(
    identity: &LocalIdentity,
    config: &BrandConfig,
    quic: std::net::SocketAddr,
    p2p: &[Multiaddr],
    seq: u64,
) -> Result<SignedRecord, BrandError> {
    let services = config
        .services
        .iter()
        .map(|s| {
            let currency = currency_of(&s.currency)?;
            Ok(Offer {
                interface: s.interface(),
                pricing: s.pricing(),
                ..Offer::per_query(&s.name, &s.description, s.price.0, currency)
            })
        })
        .collect::<Result<Vec<_>, BrandError>>()?;
    let now = now_secs();
    AgentRecord {
        identity: identity.identity.public(),
        near_account: AccountId::new(&config.near_account).map_err(config_err)?,
        noise_static: identity.noise.public(),
        quic_addrs: vec![quic],
        p2p_addrs: p2p.iter().take(MAX_P2P_ADDRS).map(|a| a.to_string()).collect(),
        services,
        channel_contract: AccountId::new(&config.channel_contract).map_err(config_err)?,
        min_deposit: config.min_deposit.0,
        seq,
        expires_at: now + config.record_lifetime_secs,
    }
    .sign(&identity.identity)
    .map_err(config_err)
}

/// Starts a brand agent from `config`.
pub async fn start(config: BrandConfig, limits: TransportLimits) -> Result<RunningBrand, BrandError> {
    if config.listen.ip().is_unspecified() {
        return Err(BrandError::Config(
            "listen must be the address users reach (e.g. 127.0.0.1:4433 or a public IP), not 0.0.0.0".into(),
        ));
    }
    if !(60..=7 * 24 * 3600).contains(&config.record_lifetime_secs) {
        return Err(BrandError::Config("record_lifetime_secs must be between 60 and 604800".into()));
    }
    let identity = Arc::new(crate::keyfile::load_or_create(&config.identity)?);
    let payee = match &config.payments {
        Some(p) => Some(Arc::new(payee(&config, p, &identity).await?)),
        None => None,
    };
    let meter = payee.clone().map(|p| p as Arc<dyn crate::quic::Meter>);
    // A brand that takes payments says so (spec §16.10): payers send vouchers only then.
    let mut caps = vec![STREAM_V1.to_owned()];
    if payee.is_some() {
        caps.push(PAY_V1.to_owned());
        caps.push(RECEIPTS_V1.to_owned());
    }
    let server =
        Server::bind_metered(config.listen, identity.clone(), caps, Arc::new(router(&config)?), meter, limits)?;
    if let Some(p) = &config.payments {
        register(&config, p, &identity).await?;
    }
    let payee_task = payee.clone().map(|p| {
        let (stop, rx) = tokio::sync::watch::channel(false);
        (stop, tokio::spawn(p.run(rx)))
    });
    let quic = server.local_addr()?;
    let parse = |v: &Vec<String>| {
        v.iter()
            .map(|a| a.parse::<Multiaddr>().map_err(|e| config_err(format!("{a}: {e}"))))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut listen = parse(&config.p2p_listen)?;
    if listen.is_empty() {
        listen.push("/ip4/127.0.0.1/udp/0/quic-v1".parse().map_err(config_err)?);
    }
    let dht_config = DhtConfig { listen, bootstrap: parse(&config.bootstrap)?, server: true, ..DhtConfig::default() };
    let dht = Dht::start(&identity.identity, dht_config).await?;
    let p2p = dht.listen_addrs().await?;
    // Sequence numbers come from the clock, so a restarted brand's record replaces the old one.
    let record = sign_record(&identity, &config, quic, &p2p, now_secs())?;
    if let Err(e) = dht.publish(record.clone()).await {
        tracing::warn!(error = %e, "first publish failed; retrying on the republish timer");
    }
    let metrics = match config.metrics {
        Some(addr) => Some(
            crate::metrics::serve(addr, server.stats_handle())
                .await
                .map_err(|e| config_err(format!("metrics {addr}: {e}")))?,
        ),
        None => None,
    };
    let refresher = {
        let (dht, identity, config) = (dht.clone(), identity.clone(), config.clone());
        tokio::spawn(async move {
            let every = Duration::from_secs((config.record_lifetime_secs / 3).max(20));
            loop {
                tokio::time::sleep(every).await;
                match sign_record(&identity, &config, quic, &p2p, now_secs()) {
                    Ok(r) => {
                        if let Err(e) = dht.publish(r).await {
                            tracing::warn!(error = %e, "republishing the record failed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot sign the record"),
                }
            }
        })
    };
    Ok(RunningBrand { identity, server, dht, record, metrics, payee, refresher, payee_task })
}

/// The payee of a configuration: its chain client, claiming account, prices
/// and money store (the embedded one in `store`, or the fleet's database at
/// `store_url`).
async fn payee(config: &BrandConfig, p: &PaymentsConfig, identity: &LocalIdentity) -> Result<Payee, BrandError> {
    let key = std::fs::read_to_string(&p.near_key_file)
        .map_err(|e| config_err(format!("payments.near_key_file {}: {e}", p.near_key_file.display())))?;
    let account = NearAccount::new(&config.near_account, key.trim()).map_err(config_err)?;
    let chain = ChannelClient::new(&p.near_rpc, &config.channel_contract).map_err(config_err)?;
    let mut prices = HashMap::new();
    for s in &config.services {
        let currency = currency_of(&s.currency)?;
        let increment =
            s.increment.as_ref().map(|i| Increment { chunks: i.chunks, price: i.price.0, currency: currency.clone() });
        prices.insert(s.name.clone(), Price { price: s.price.0, currency, increment, pricing: s.pricing() });
    }
    let policy = PayeeConfig {
        claim_above: p.claim_above.0,
        claim_every: Duration::from_secs(p.claim_every_secs.max(1)),
        watch_every: Duration::from_secs(p.watch_every_secs.max(1)),
        // Asked several times per lease, so a dead claimer is replaced promptly.
        claimer_every: Duration::from_millis((p.fleet_lease_secs.max(1) * 1000 / 4).max(250)),
        ..PayeeConfig::default()
    };
    let money: Arc<dyn PayeeMoney> =
        match (&p.store_url, &p.store) {
            (Some(url), _) => fleet_store(config, p, url, identity, &policy).await?,
            (None, Some(dir)) => {
                let store = Store::open(dir, StoreConfig::default())
                    .map_err(|e| config_err(format!("payments.store {}: {e}", dir.display())))?;
                Arc::new(LedgerMoney::new(store, policy.max_channels))
            }
            (None, None) => return Err(config_err(
                "payments: give `store` (a directory: one endpoint) or `store_url` (PostgreSQL: a fleet of endpoints)",
            )),
        };
    Payee::near_with(chain, account, prices, money, policy).map_err(config_err)
}

/// The money store a fleet of endpoints shares.
#[cfg(feature = "postgres")]
async fn fleet_store(
    config: &BrandConfig,
    p: &PaymentsConfig,
    url: &str,
    identity: &LocalIdentity,
    policy: &PayeeConfig,
) -> Result<Arc<dyn PayeeMoney>, BrandError> {
    let agent = identity.identity.public().agent_id().to_string();
    let mut pg = PgConfig::new(url, &config.near_account, &config.channel_contract, &agent);
    pg.lease = Duration::from_secs(p.fleet_lease_secs.max(1));
    pg.max_channels = policy.max_channels;
    let money = PgMoney::connect(pg).await.map_err(|e| {
        config_err(format!("payments.store_url: {e} (is PostgreSQL 15+ running there, and the database created?)"))
    })?;
    Ok(Arc::new(money))
}

#[cfg(not(feature = "postgres"))]
async fn fleet_store(
    _config: &BrandConfig,
    _p: &PaymentsConfig,
    _url: &str,
    _identity: &LocalIdentity,
    _policy: &PayeeConfig,
) -> Result<Arc<dyn PayeeMoney>, BrandError> {
    Err(config_err("payments.store_url: this agent was built without the `postgres` feature"))
}

/// Lists this agent's key for the brand's account in the contract's endpoint
/// registry (once; users check it before they trust the record).
async fn register(config: &BrandConfig, p: &PaymentsConfig, identity: &LocalIdentity) -> Result<(), BrandError> {
    let key = std::fs::read_to_string(&p.near_key_file)
        .map_err(|e| config_err(format!("payments.near_key_file {}: {e}", p.near_key_file.display())))?;
    let account = NearAccount::new(&config.near_account, key.trim()).map_err(config_err)?;
    let chain = ChannelClient::new(&p.near_rpc, &config.channel_contract).map_err(config_err)?;
    let unreachable =
        |e: crate::near::NearError| config_err(format!("registering the agent key on {}: {e}", p.near_rpc));
    if chain.ensure_endpoint(&account, &identity.identity.public()).await.map_err(unreachable)? {
        tracing::info!(account = %account.id, "registered the agent key in the endpoint registry");
    }
    Ok(())
}

fn currency_of(text: &str) -> Result<Currency, BrandError> {
    if text == "NEAR" {
        Ok(Currency::Near)
    } else {
        Ok(Currency::Token(AccountId::new(text).map_err(config_err)?))
    }
}

impl RunningBrand {
    /// Stops publishing, closes every session gracefully, claims everything
    /// durable on chain and stops; says what was and was not claimed.
    pub async fn shutdown(self) -> ShutdownReport {
        self.refresher.abort();
        let _ = self.dht.unpublish().await;
        self.server.shutdown().await;
        let mut report = ShutdownReport::default();
        if let Some((stop, task)) = self.payee_task {
            let _ = stop.send(true);
            report.claimed = task.await.unwrap_or_default();
        }
        if let Some(payee) = &self.payee {
            if payee.is_claimer() {
                report.unclaimed = payee
                    .channels()
                    .await
                    .into_iter()
                    .filter(|c| c.2 > 0)
                    .map(|(id, _, unclaimed)| (id, unclaimed))
                    .collect();
            } else {
                report.left_to_fleet = true;
            }
        }
        report
    }
}
