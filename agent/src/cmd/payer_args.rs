//! Options every paying command shares (`query`, `gateway`, `channel`):
//! the NEAR account that pays, its key, where payment state is kept, and
//! the deposit policy.

use std::path::PathBuf;

use agentwire_agent::keyfile;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{Payer, PayerConfig};
use agentwire_protocol::identity::Keypair;

/// Paying options.
#[derive(clap::Args, Debug, Clone)]
pub struct PayerArgs {
    /// The NEAR account that pays (e.g. alice.devnet); without it, only free services can be asked.
    #[arg(long)]
    pub near_account: Option<String>,
    /// File holding that account's secret key (`ed25519:...`).
    #[arg(long)]
    pub near_key_file: Option<PathBuf>,
    /// Directory of the payer's durable state (default ~/.agentwire/payer-<account>).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// A new channel's deposit, in queries of the price paid.
    #[arg(long, default_value_t = 100)]
    pub deposit_queries: u128,
    /// Top up when fewer queries than this are left (0: never automatically).
    #[arg(long, default_value_t = 10)]
    pub top_up_below_queries: u128,
    /// A top-up adds this many queries.
    #[arg(long, default_value_t = 100)]
    pub top_up_queries: u128,
}

impl PayerArgs {
    /// The payer, if an account is given.
    pub fn build(&self, near_rpc: &str, contract: &str) -> Result<Option<Payer>, String> {
        let Some(account) = &self.near_account else { return Ok(None) };
        let key_file = self.near_key_file.as_ref().ok_or("--near-account needs --near-key-file")?;
        let secret = std::fs::read_to_string(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
        let near = NearAccount::new(account, secret.trim()).map_err(|e| e.to_string())?;
        let dir = self
            .store
            .clone()
            .unwrap_or_else(|| super::default_key_path("x").with_file_name(format!("payer-{account}")));
        let store = Store::open(&dir, StoreConfig::default()).map_err(|e| format!("{}: {e}", dir.display()))?;
        // The voucher key is kept apart from the agent's identity (spec §16.9).
        let voucher = keyfile::load_or_create(&dir.join("voucher.key")).map_err(|e| e.to_string())?;
        let voucher_key = Keypair::from_seed(&voucher.identity.seed());
        let chain = ChannelClient::new(near_rpc, contract).map_err(|e| e.to_string())?;
        let config = PayerConfig {
            deposit_queries: self.deposit_queries.max(1),
            top_up_below_queries: self.top_up_below_queries,
            top_up_queries: self.top_up_queries.max(1),
            auto_top_up: self.top_up_below_queries > 0,
            ..PayerConfig::default()
        };
        Payer::near(chain, near, voucher_key, store, config).map(Some).map_err(|e| e.to_string())
    }
}
