//! `agentwire identity create|show|register`: the agent's key file, and its
//! listing in the channel contract's endpoint registry (users only trust a
//! brand's record if its account lists the record's key there).

use std::path::PathBuf;

use agentwire_agent::keyfile;
use agentwire_agent::near::ChannelClient;
use agentwire_protocol::identity::LocalIdentity;

use super::payer_args::near_account_from;
use super::{money, progress, CliError};

/// Where the registry is.
#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// NEAR RPC.
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    pub near_rpc: String,
    /// The channel contract (it holds the endpoint registry).
    #[arg(long, default_value = "channels.devnet")]
    pub contract: String,
}

/// Identity subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum IdentityCmd {
    /// Create a new identity (never overwrites one).
    Create {
        /// Key file (default ~/.agentwire/agent.key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Show an identity's agent id and public keys; with --near-account, whether the registry lists it.
    Show {
        /// Key file (default ~/.agentwire/agent.key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Check the endpoint registry for this NEAR account.
        #[arg(long)]
        near_account: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List the identity's key for a NEAR account in the endpoint registry
    /// (`agentwire serve` does this itself on start when the brand has [payments]).
    Register {
        /// Key file (default ~/.agentwire/agent.key; a brand's is its config's `identity`).
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        /// The NEAR account the key speaks for (a brand's `near_account`).
        #[arg(long)]
        near_account: String,
        /// File holding that account's secret key (`ed25519:...`).
        #[arg(long)]
        near_key_file: PathBuf,
    },
}

pub fn run(cmd: IdentityCmd, json: bool) -> Result<(), CliError> {
    match cmd {
        IdentityCmd::Create { key } => {
            let path = super::agent_key_path(&key);
            let id = keyfile::create(&path)?;
            print(&path, &id, None, json);
            if !json {
                println!("registration  none yet: a brand's `agentwire serve` lists it for its account on start, or run `agentwire identity register`");
            }
            Ok(())
        }
        IdentityCmd::Show { key, near_account, registry } => {
            let path = super::agent_key_path(&key);
            let id = keyfile::load(&path)?;
            let listed = match &near_account {
                Some(a) => {
                    let client = ChannelClient::new(&registry.near_rpc, &registry.contract)?;
                    let account: near_api::AccountId = money::account(a, "--near-account")?
                        .as_str()
                        .parse()
                        .map_err(|_| CliError::usage("bad account"))?;
                    let rt = super::runtime()?;
                    let yes = rt.block_on(client.is_endpoint(&account, &id.identity.public()))?;
                    Some((a.clone(), registry.contract.clone(), yes))
                }
                None => None,
            };
            print(&path, &id, listed.as_ref(), json);
            if !json {
                match &listed {
                    Some((a, c, true)) => println!("registration  listed for {a} in {c}'s endpoint registry"),
                    Some((a, c, false)) => println!(
                        "registration  NOT listed for {a} in {c}'s endpoint registry: users will not trust a record of {a} with this key; \
                         `agentwire serve` lists it on start when the brand has [payments], or run `agentwire identity register`"
                    ),
                    None => println!(
                        "registration  not checked (--near-account ACCOUNT checks it): a brand's `agentwire serve` lists its key \
                         for its account on start when it has [payments]; `agentwire identity register` lists it by hand; users need none"
                    ),
                }
            }
            Ok(())
        }
        IdentityCmd::Register { key, registry, near_account: name, near_key_file } => {
            let path = super::agent_key_path(&key);
            let id = keyfile::load(&path)?;
            let near = near_account_from(&name, Some(&near_key_file))?;
            let client = ChannelClient::new(&registry.near_rpc, &registry.contract)?;
            let rt = super::runtime()?;
            progress(json, format!("listing the key for {name} in {}'s endpoint registry …", registry.contract));
            let new = rt.block_on(client.ensure_endpoint(&near, &id.identity.public()))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "agent_id": id.agent_id().to_string(), "near_account": name, "listed": true, "newly": new })
                );
            } else if new {
                println!(
                    "agent {} is now listed for {name} in {}'s endpoint registry",
                    id.agent_id(),
                    registry.contract
                );
            } else {
                println!(
                    "agent {} was already listed for {name} in {}'s endpoint registry",
                    id.agent_id(),
                    registry.contract
                );
            }
            Ok(())
        }
    }
}

fn print(path: &std::path::Path, identity: &LocalIdentity, listed: Option<&(String, String, bool)>, json: bool) {
    let agent = identity.agent_id().to_string();
    let key = hex::encode(identity.identity.public().to_bytes());
    let noise = hex::encode(identity.noise.public().as_bytes());
    if json {
        let mut v =
            serde_json::json!({ "key_file": path, "agent_id": agent, "identity_key": key, "noise_static_key": noise });
        if let Some((account, contract, yes)) = listed {
            v["registry"] = serde_json::json!({ "near_account": account, "contract": contract, "listed": yes });
        }
        println!("{v}");
    } else {
        println!("agent id          {agent}");
        println!("identity key      {key}");
        println!("noise static key  {noise}");
        println!("key file          {}", path.display());
    }
}
