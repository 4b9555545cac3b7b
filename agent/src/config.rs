//! `agentwire serve`'s TOML configuration: who the brand is, where it
//! listens, what it offers at what price, and what answers each service.
//!
//! ```toml
//! identity = "brand.key"                 # created on first start
//! near_account = "brand.near"
//! channel_contract = "channels.devnet"
//! listen = "127.0.0.1:4433"              # agent sessions (QUIC)
//! p2p_listen = ["/ip4/127.0.0.1/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/127.0.0.1/udp/4000/quic-v1/p2p/12D3KooW..."]
//! metrics = "127.0.0.1:9464"             # Prometheus, optional
//! record_lifetime_secs = 3600
//!
//! [[service]]
//! name = "assistant"
//! description = "Our model, per token"
//! price = "300000000000000000000000"      # the most one request may cost (yoctoNEAR here)
//! per_token = { input = "10000000000000000000", output = "30000000000000000000" }
//! handler = { kind = "openai", url = "http://127.0.0.1:8080/v1", models = ["llama3"], max_tokens = 512, api_key_env = "UPSTREAM_KEY" }
//!
//! [[service]]
//! name = "lookup"
//! price = "10000000000000000000000"
//! handler = { kind = "http", url = "http://127.0.0.1:8081/lookup", headers = { Authorization = "Bearer ..." } }
//! ```
//!
//! (A TOML inline table is one line: a handler with many fields can be a
//! `[service.handler]` table instead.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or a field is missing or wrong (the message says which).
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A brand agent's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandConfig {
    /// Key file (created if missing), relative to the config file.
    pub identity: PathBuf,
    /// The NEAR account this agent speaks for.
    pub near_account: String,
    /// The channel contract payments use.
    #[serde(default = "default_contract")]
    pub channel_contract: String,
    /// Address for agent sessions.
    pub listen: SocketAddr,
    /// DHT listen addresses.
    #[serde(default)]
    pub p2p_listen: Vec<String>,
    /// DHT bootstrap peers.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Local address for Prometheus metrics.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Lifetime of the published record, seconds (republished well before).
    #[serde(default = "default_lifetime")]
    pub record_lifetime_secs: u64,
    /// Least deposit a payer's channel must hold.
    #[serde(default)]
    pub min_deposit: Amount,
    /// The services offered.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// How the brand is paid; required when any service has a price.
    #[serde(default)]
    pub payments: Option<PaymentsConfig>,
}

/// The `[payments]` section: the chain, the NEAR key that claims, where
/// vouchers are kept, and the claim policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// NEAR JSON-RPC.
    #[serde(default = "default_rpc")]
    pub near_rpc: String,
    /// File holding the secret key (`ed25519:...`) of `near_account`, which signs claims.
    pub near_key_file: PathBuf,
    /// Directory of the embedded voucher store (created if missing): the
    /// store of a brand with one endpoint.
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// A PostgreSQL URL (`postgres://user@host:port/db`): the money store
    /// that several endpoints of the brand share (a fleet). Takes the place
    /// of `store`; `agentwire serve --store-url` or `AGENTWIRE_STORE_URL`
    /// override it.
    #[serde(default)]
    pub store_url: Option<String>,
    /// With `store_url`: an endpoint not heard from for this long is taken
    /// for dead, and the claimer lease passes on after it (default 10).
    #[serde(default = "default_fleet_lease")]
    pub fleet_lease_secs: u64,
    /// Claim a channel once this much is unclaimed (default 0: by time only).
    #[serde(default)]
    pub claim_above: Amount,
    /// Claim whatever is unclaimed at least this often (default 3600).
    #[serde(default = "default_claim_every")]
    pub claim_every_secs: u64,
    /// How often channels are read on chain for closes and top-ups (default 30).
    #[serde(default = "default_watch_every")]
    pub watch_every_secs: u64,
}

fn default_rpc() -> String {
    "http://127.0.0.1:3030".into()
}

fn default_fleet_lease() -> u64 {
    10
}

fn default_claim_every() -> u64 {
    3600
}

fn default_watch_every() -> u64 {
    30
}

/// A metered stream's price per further group of chunks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementConfig {
    /// Chunks each payment buys (the request's price buys the first ones).
    pub chunks: u32,
    /// Price of each further group.
    pub price: Amount,
}

fn default_contract() -> String {
    "channels.devnet".into()
}

fn default_lifetime() -> u64 {
    3600
}

/// An amount in the currency's smallest unit, written as a decimal string (it can exceed 2^64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount(pub u128);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s
                .parse()
                .map(Amount)
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an amount in the smallest unit"))),
            Raw::Int(n) => Ok(Amount(u128::from(n))),
        }
    }
}

/// One offered service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Its name (lowercase letters, digits, `-`, `_`; at most 32).
    pub name: String,
    /// A short description shown to users.
    #[serde(default)]
    pub description: String,
    /// Price per query in the smallest unit.
    #[serde(default)]
    pub price: Amount,
    /// `NEAR` or a NEP-141 token's account.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// For a streamed answer: charge per group of chunks beyond the first (spec §13.7).
    #[serde(default)]
    pub increment: Option<IncrementConfig>,
    /// Per-token pricing of a chat service (an `openai` handler): `price` is
    /// then the most one request may cost (spec §6.2).
    #[serde(default)]
    pub per_token: Option<PerTokenConfig>,
    /// What answers.
    pub handler: HandlerConfig,
}

/// Unit prices of a per-token service.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTokenConfig {
    /// Price of one prompt token.
    pub input: Amount,
    /// Price of one generated token.
    pub output: Amount,
}

/// Default cap on the tokens an `openai` handler lets one request generate.
pub const DEFAULT_MAX_TOKENS: u32 = 1024;

fn default_max_tokens() -> u32 {
    DEFAULT_MAX_TOKENS
}

fn default_currency() -> String {
    "NEAR".into()
}

/// What answers a service.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum HandlerConfig {
    /// The query back.
    Echo,
    /// The query streamed back word by word (a stand-in for a model).
    Words,
    /// A fixed answer.
    Static {
        /// The answer.
        text: String,
    },
    /// An HTTP upstream.
    Http {
        /// Where queries are POSTed.
        url: String,
        /// Headers for the upstream.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Relay the answer chunk by chunk.
        #[serde(default)]
        stream: bool,
        /// Seconds the upstream may take to answer (default 60).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    /// An OpenAI-compatible model server (vLLM, Ollama, llama.cpp, a hosted
    /// API): users send a chat request (spec §13.11), get text deltas back.
    OpenAi {
        /// The API's base URL, e.g. `http://127.0.0.1:8080/v1` (`/chat/completions` is added).
        url: String,
        /// The models sold here: the first is the default; a request naming another is refused.
        models: Vec<String>,
        /// The most tokens one request may generate (default 1024).
        #[serde(default = "default_max_tokens")]
        max_tokens: u32,
        /// The upstream's API key, sent as `Authorization: Bearer`.
        #[serde(default)]
        api_key: Option<String>,
        /// Or the environment variable holding it.
        #[serde(default)]
        api_key_env: Option<String>,
        /// More headers for the upstream.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Seconds the upstream may take to start answering, and between two pieces (default 60).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
}

impl ServiceConfig {
    /// The handler's cap on generated tokens (chat handlers only).
    pub fn max_tokens(&self) -> Option<u32> {
        match &self.handler {
            HandlerConfig::OpenAi { max_tokens, .. } => Some(*max_tokens),
            _ => None,
        }
    }

    /// What the service speaks.
    pub fn interface(&self) -> agentwire_protocol::pricing::Interface {
        match self.handler {
            HandlerConfig::OpenAi { .. } => agentwire_protocol::pricing::Interface::Chat,
            _ => agentwire_protocol::pricing::Interface::Text,
        }
    }

    /// How it is charged, as the record states it.
    pub fn pricing(&self) -> agentwire_protocol::pricing::Pricing {
        use agentwire_protocol::pricing::Pricing;
        match (&self.per_token, &self.increment) {
            (Some(t), _) => Pricing::PerToken {
                input: t.input.0,
                output: t.output.0,
                max_output_tokens: self.max_tokens().unwrap_or(DEFAULT_MAX_TOKENS),
            },
            (None, Some(i)) => Pricing::Metered { chunks: i.chunks, increment: i.price.0 },
            (None, None) => Pricing::PerQuery,
        }
    }
}

impl BrandConfig {
    /// Reads and checks `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<BrandConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.display().to_string(), message };
        let mut config: BrandConfig = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        resolve(&mut config.identity);
        if let Some(pay) = config.payments.as_mut() {
            resolve(&mut pay.near_key_file);
            if let Some(store) = pay.store.as_mut() {
                resolve(store);
            }
            if pay.fleet_lease_secs == 0 {
                return Err(invalid("payments.fleet_lease_secs must be at least 1".into()));
            }
        }
        if config.services.is_empty() {
            return Err(invalid("at least one [[service]] is needed".into()));
        }
        for s in &config.services {
            if !agentwire_protocol::record::valid_service_name(&s.name) {
                return Err(invalid(format!(
                    "service name {:?}: lowercase letters, digits, '-' or '_', at most 32",
                    s.name
                )));
            }
            if matches!(&s.increment, Some(i) if i.chunks == 0) {
                return Err(invalid(format!("service {}: increment.chunks must be at least 1", s.name)));
            }
            if matches!(&s.increment, Some(i) if i.price.0 > s.price.0) {
                return Err(invalid(format!("service {}: increment.price must be at most price", s.name)));
            }
            let chat = matches!(s.handler, HandlerConfig::OpenAi { .. });
            if let HandlerConfig::OpenAi { models, max_tokens, .. } = &s.handler {
                if models.is_empty() {
                    return Err(invalid(format!("service {}: handler.models needs at least one model", s.name)));
                }
                if *max_tokens == 0 {
                    return Err(invalid(format!("service {}: handler.max_tokens must be at least 1", s.name)));
                }
            }
            if let Some(t) = &s.per_token {
                if !chat {
                    return Err(invalid(format!(
                        "service {}: per_token needs a chat handler (kind = \"openai\")",
                        s.name
                    )));
                }
                if s.increment.is_some() {
                    return Err(invalid(format!("service {}: per_token and increment exclude each other", s.name)));
                }
                let cap = s.max_tokens().unwrap_or(DEFAULT_MAX_TOKENS);
                let least = t.output.0.checked_mul(u128::from(cap));
                if least.is_none_or(|least| s.price.0 < least) {
                    return Err(invalid(format!(
                        "service {}: price (the most one request may cost) must cover max_tokens {cap} at the output price",
                        s.name
                    )));
                }
            }
            let priced = s.price.0 > 0 || s.increment.is_some();
            if priced && config.payments.is_none() {
                return Err(invalid(format!(
                    "service {} has a price: add a [payments] section (near_key_file, store or store_url) or make it free",
                    s.name
                )));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses_and_mistakes_are_named() {
        let dir = std::env::temp_dir().join(format!("agentwire-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("brand.toml");
        std::fs::write(
            &path,
            r#"
identity = "brand.key"
near_account = "brand.near"
listen = "127.0.0.1:4433"
p2p_listen = ["/ip4/127.0.0.1/udp/4001/quic-v1"]

[[service]]
name = "chat"
price = "10000000000000000000000"
handler = { kind = "http", url = "http://127.0.0.1:8080/v1", stream = true, headers = { Authorization = "Bearer x" } }

[[service]]
name = "hello"
handler = { kind = "static", text = "hi" }

[payments]
near_key_file = "brand.near-key"
store = "vouchers"
"#,
        )
        .unwrap();
        let c = BrandConfig::load(&path).unwrap();
        assert_eq!(c.identity, dir.join("brand.key"));
        assert_eq!(c.payments.as_ref().unwrap().store, Some(dir.join("vouchers")));
        assert_eq!(c.payments.as_ref().unwrap().store_url, None);
        // A priced service without [payments] would be served for free: refused.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.find("[payments]").unwrap()]).unwrap();
        let e = BrandConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("service chat has a price"), "{e}");
        assert_eq!(c.services[0].price, Amount(10_000_000_000_000_000_000_000));
        assert!(matches!(c.services[1].handler, HandlerConfig::Static { .. }));
        std::fs::write(
            &path,
            "identity = \"k\"\nnear_account = \"b.near\"\nlisten = \"127.0.0.1:1\"\nbogus = 1\nservice = []\n",
        )
        .unwrap();
        let e = BrandConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
