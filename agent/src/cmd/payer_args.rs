//! Options every paying command shares (`query`, `gateway`, `channel`):
//! the NEAR account that pays, its key, where payment state is kept, and
//! the deposit policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use agentwire_agent::keyfile;
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{DepositOffer, Limits, Payer, PayerConfig, Spending};
use agentwire_protocol::identity::Keypair;
use agentwire_protocol::money::Currency;

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
    /// The most one query may cost, in NEAR (e.g. 0.05); a dearer one is refused before anything is signed.
    #[arg(long, value_name = "NEAR")]
    pub max_price: Option<String>,
    /// The most spent on one brand per UTC day, in NEAR.
    #[arg(long, value_name = "NEAR")]
    pub budget_per_brand: Option<String>,
    /// The most spent on all brands together per UTC day, in NEAR.
    #[arg(long, value_name = "NEAR")]
    pub budget_per_day: Option<String>,
    /// The largest deposit a channel may be opened with, in NEAR.
    #[arg(long, value_name = "NEAR")]
    pub max_deposit: Option<String>,
    /// State the deposit and ask on the terminal before any channel is opened.
    #[arg(long)]
    pub confirm_deposit: bool,
}

fn near_amount(flag: &str, v: &Option<String>) -> Result<Option<u128>, CliError> {
    v.as_deref()
        .map(|t| {
            agentwire_protocol::money::parse_units(t, agentwire_protocol::money::NEAR_DECIMALS)
                .map_err(|e| CliError::usage(format!("--{flag} {t:?}: {e} (an amount in NEAR, e.g. 0.05)")))
        })
        .transpose()
}

/// Asks on the terminal (never on stdin, which may carry a protocol such as MCP).
fn confirm_on_terminal(offer: &DepositOffer) -> bool {
    use std::io::{BufRead, Write};
    let Ok(tty) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") else {
        eprintln!("not opening {}: no terminal to confirm it on", offer.describe());
        return false;
    };
    let mut out = &tty;
    let _ = write!(out, "Open {}? [y/N] ", offer.describe());
    let _ = out.flush();
    let mut line = String::new();
    let _ = std::io::BufReader::new(&tty).read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
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
pub const LOCKED_INSTEAD: &str =
    "while that process runs, go through it (a gateway: `agentwire channel status --gateway http://127.0.0.1:8402`, \
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
        let store =
            Store::open(&dir, StoreConfig::default()).map_err(|e| error::store_open(&dir, e, LOCKED_INSTEAD))?;
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
        let limits = Limits {
            max_price: near_amount("max-price", &self.max_price)?,
            per_brand_per_day: near_amount("budget-per-brand", &self.budget_per_brand)?,
            per_day: near_amount("budget-per-day", &self.budget_per_day)?,
            max_deposit: near_amount("max-deposit", &self.max_deposit)?,
        };
        let file = dir.join("spending.json");
        let mut spending = Spending::new(HashMap::from([(Currency::Near, limits)]), Some(&file)).map_err(|e| {
            CliError::new(
                "SpendingFile",
                format!("{}: {e}", file.display()),
                "fix or remove that file (it holds today's spending against the limits)",
            )
        })?;
        if self.confirm_deposit {
            spending = spending.confirm_deposits(Arc::new(confirm_on_terminal));
        }
        let payer = Payer::near(chain, near, voucher_key, store, config)?;
        Ok(Some(payer.with_spending(spending)))
    }
}
