//! Options every paying command shares (`query`, `gateway`, `channel`):
//! the NEAR account that pays, its key, where payment state is kept, and
//! the deposit policy.

use std::path::PathBuf;

use agentwire_agent::keyfile;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{Payer, PayerConfig};
use agentwire_protocol::identity::Keypair;

use super::error::{self, CliError};

/// Paying options.
#[derive(clap::Args, Debug, Clone)]
pub struct PayerArgs {
    /// The NEAR account that pays (e.g. alice.devnet); without it, only free services can be asked.
    #[arg(long)]
    pub near_account: Option<String>,
    /// File holding that account's secret key (`ed25519:...`).
    #[arg(long)]
    pub near_key_file: Option<PathBuf>,
    /// Directory of the payer's durable state (default ~/.agentwire/payer-<account>); one process at a time.
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

/// A NEAR account and its key, read from `key_file` (`--near-key-file`).
pub fn near_account_from(account: &str, key_file: Option<&PathBuf>) -> Result<NearAccount, CliError> {
    let key_file = key_file.ok_or_else(|| {
        CliError::usage("--near-account needs --near-key-file (the file holding that account's `ed25519:…` key)")
    })?;
    let secret = std::fs::read_to_string(key_file).map_err(|e| {
        CliError::new(
            "NearKeyFile",
            format!("--near-key-file {}: {e}", key_file.display()),
            "give the file holding the account's secret key (`agentwire devnet --keys-dir DIR` writes DIR/<account>.near-key)",
        )
    })?;
    Ok(NearAccount::new(account, secret.trim())?)
}

/// What to use instead of a payment store another process holds.
pub const LOCKED_INSTEAD: &str = "while that process runs, go through it (a gateway: `agentwire channel status --gateway http://127.0.0.1:8402`, \
     or its HTTP API: POST /v1/query/<account>/<service>, GET /v1/channels), or use another --store";

impl PayerArgs {
    /// The payer's state directory: `--store`, else `~/.agentwire/payer-<account>`.
    pub fn store_dir(&self, account: &str) -> PathBuf {
        self.store.clone().unwrap_or_else(|| super::home_dir().join(format!("payer-{account}")))
    }

    /// The account's NEAR key, from `--near-key-file`.
    pub fn near_account(&self, account: &str) -> Result<NearAccount, CliError> {
        near_account_from(account, self.near_key_file.as_ref())
    }

    /// The payer, if an account is given.
    pub fn build(&self, near_rpc: &str, contract: &str) -> Result<Option<Payer>, CliError> {
        let Some(account) = &self.near_account else { return Ok(None) };
        let near = self.near_account(account)?;
        let dir = self.store_dir(account);
        let store = Store::open(&dir, StoreConfig::default()).map_err(|e| error::store_open(&dir, e, LOCKED_INSTEAD))?;
        // The voucher key is kept apart from the agent's identity (spec §16.9).
        let voucher = keyfile::load_or_create(&dir.join("voucher.key"))?;
        let voucher_key = Keypair::from_seed(&voucher.identity.seed());
        let chain = ChannelClient::new(near_rpc, contract)?;
        let config = PayerConfig {
            deposit_queries: self.deposit_queries.max(1),
            top_up_below_queries: self.top_up_below_queries,
            top_up_queries: self.top_up_queries.max(1),
            auto_top_up: self.top_up_below_queries > 0,
            ..PayerConfig::default()
        };
        Ok(Some(Payer::near(chain, near, voucher_key, store, config)?))
    }
}
