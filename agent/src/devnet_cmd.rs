//! `agentwire devnet`: a local NEAR devnet with the channel contract, a
//! USDC-like token and funded accounts, serving NEAR's JSON-RPC until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;

use agentwire_agent::devnet::{provision, ONE_USDC};
use agentwire_agent::keyfile;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};

use crate::cmd::CliError;

/// Options of `agentwire devnet`.
#[derive(clap::Args, Debug)]
pub struct DevnetArgs {
    /// Address for the JSON-RPC (loopback by default: the devnet's keys are printed in clear).
    #[arg(long, default_value = "127.0.0.1:3030")]
    pub listen: SocketAddr,
    /// Keep the chain in this file and continue from it on restart (default: in memory).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// User accounts to create and fund (comma-separated names, become `<name>.devnet`).
    #[arg(long, value_delimiter = ',', default_value = "alice,bob")]
    pub accounts: Vec<String>,
    /// NEAR given to each new user account.
    #[arg(long, default_value_t = 100)]
    pub near_each: u128,
    /// USDC given to each new user account.
    #[arg(long, default_value_t = 1_000)]
    pub usdc_each: u128,
    /// Also write each account's secret key to `DIR/<account>.near-key` (for `--near-key-file`; owner-only, 0600).
    #[arg(long, value_name = "DIR")]
    pub keys_dir: Option<PathBuf>,
}

pub fn run(args: DevnetArgs, json: bool) -> Result<(), CliError> {
    let config = DevnetConfig { listen: args.listen, state_file: args.state.clone(), ..DevnetConfig::default() };
    let devnet = Devnet::start(config).map_err(|e| {
        let text = e.to_string();
        if text.contains("in use") {
            CliError::new(
                "PortInUse",
                format!("cannot listen on {}: {text}", args.listen),
                format!("choose another port than {} with --listen, or stop what uses it", args.listen.port()),
            )
        } else {
            CliError::new("Devnet", format!("the devnet did not start: {text}"), "check --listen and --state")
        }
    })?;
    let runtime = super::cmd::runtime()?;
    let near_each = args.near_each.checked_mul(ONE_NEAR).ok_or_else(|| CliError::usage("--near-each is too large"))?;
    let usdc_each = args.usdc_each.checked_mul(ONE_USDC).ok_or_else(|| CliError::usage("--usdc-each is too large"))?;
    let names: Vec<&str> = args.accounts.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
    let ready = runtime
        .block_on(provision(&devnet, &names, near_each, usdc_each))
        .map_err(|e| CliError::from(e).context("setting up the devnet"))?;
    let root = devnet.root();
    if let Some(dir) = &args.keys_dir {
        for u in &ready.users {
            let path = dir.join(format!("{}.near-key", u.account_id));
            keyfile::write_secret(&path, &u.secret_key.to_string())?;
        }
    }
    if json {
        let users: Vec<_> = ready
            .users
            .iter()
            .map(|u| serde_json::json!({ "account_id": u.account_id, "secret_key": u.secret_key.to_string() }))
            .collect();
        let out = serde_json::json!({
            "rpc_url": ready.rpc_url,
            "root": { "account_id": root.account_id, "secret_key": root.secret_key.to_string() },
            "channel_contract": ready.channels,
            "token": ready.token,
            "accounts": users,
        });
        println!("{out}");
    } else {
        println!("AgentWire devnet — NEAR JSON-RPC at {}", ready.rpc_url);
        println!("  channel contract  {}", ready.channels);
        println!("  token (USDC, 6 decimals)  {}", ready.token);
        println!("  root (registrar and faucet)  {}  {}", root.account_id, root.secret_key);
        for u in &ready.users {
            println!("  account  {}  {}", u.account_id, u.secret_key);
        }
        match &args.state {
            Some(p) => println!("State is kept in {}. Ctrl-C stops the devnet.", p.display()),
            None => println!("State is in memory (use --state FILE to keep it). Ctrl-C stops the devnet."),
        }
    }
    runtime.block_on(super::cmd::shutdown_signal());
    devnet.shutdown();
    Ok(())
}
