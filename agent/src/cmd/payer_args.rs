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
use agentwire_protocol::money::Currency;
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

fn near_amount(flag: &str, v: &Option<String>) -> Result<Option<u128>, String> {
    v.as_deref()
        .map(|t| {
            agentwire_protocol::money::parse_units(t, agentwire_protocol::money::NEAR_DECIMALS)
                .map_err(|e| format!("--{flag} {t:?}: {e} (an amount in NEAR, e.g. 0.05)"))
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
        let limits = Limits {
            max_price: near_amount("max-price", &self.max_price)?,
            per_brand_per_day: near_amount("budget-per-brand", &self.budget_per_brand)?,
            per_day: near_amount("budget-per-day", &self.budget_per_day)?,
            max_deposit: near_amount("max-deposit", &self.max_deposit)?,
        };
        let file = dir.join("spending.json");
        let mut spending = Spending::new(HashMap::from([(Currency::Near, limits)]), Some(&file))
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if self.confirm_deposit {
            spending = spending.confirm_deposits(Arc::new(confirm_on_terminal));
        }
        let payer = Payer::near(chain, near, voucher_key, store, config).map_err(|e| e.to_string())?;
        Ok(Some(payer.with_spending(spending)))
    }
}
