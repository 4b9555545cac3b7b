//! Options every user-side command shares (`query`, `gateway`): the DHT
//! bootstrap peers, the agent's key, the NEAR RPC and contract (endpoint
//! registry and payments), and the payer.

use std::path::PathBuf;
use std::sync::Arc;

use agentwire_agent::keyfile;
use agentwire_agent::near::ChannelClient;
use agentwire_agent::pay::Payer;
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{UserAgent, UserConfig};

use super::payer_args::PayerArgs;
use super::CliError;

/// User-agent options.
#[derive(clap::Args, Debug)]
pub struct UserArgs {
    /// DHT bootstrap peers.
    #[arg(long, required = true)]
    pub bootstrap: Vec<String>,
    /// Where the DHT client listens (e.g. /ip4/127.0.0.1/udp/0/quic-v1); default: nowhere, it only dials.
    #[arg(long)]
    pub p2p_listen: Vec<String>,
    /// Where the session endpoint binds.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
    /// The agent's key file (created if missing; default ~/.agentwire/agent.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// NEAR RPC (endpoint registry and payments).
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    pub near_rpc: String,
    /// The channel contract (endpoint registry and payments).
    #[arg(long, default_value = "channels.devnet")]
    pub contract: String,
    /// Do not check the endpoint registry (pure messaging; the brands' NEAR accounts are then unverified).
    #[arg(long)]
    pub skip_registry_check: bool,
    #[command(flatten)]
    pub payer: PayerArgs,
}

impl UserArgs {
    /// Starts the user agent and builds the payer (if an account is given).
    pub async fn start(&self) -> Result<(UserAgent, Option<Payer>), CliError> {
        let path = super::agent_key_path(&self.key);
        let identity = Arc::new(keyfile::load_or_create(&path)?);
        let registry =
            if self.skip_registry_check { None } else { Some(ChannelClient::new(&self.near_rpc, &self.contract)?) };
        let payer = self.payer.build(&self.near_rpc, &self.contract)?;
        let mut config = UserConfig::new(super::multiaddrs(&self.bootstrap)?);
        config.dht.listen = super::multiaddrs(&self.p2p_listen)?;
        config.quic_bind = self.bind;
        let user = UserAgent::start_with(identity, config, registry, TransportLimits::default()).await?;
        Ok((user, payer))
    }
}
