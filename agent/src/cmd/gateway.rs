//! `agentwire gateway`: the localhost HTTP API (see `agentwire_agent::gateway`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agentwire_agent::gateway::{self, Gateway};
use agentwire_agent::keyfile;
use agentwire_agent::near::ChannelClient;
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::UserAgent;

use super::payer_args::PayerArgs;

/// Options of `agentwire gateway`.
#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// Where the HTTP API listens (loopback only unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:8402")]
    pub listen: SocketAddr,
    /// DHT bootstrap peers.
    #[arg(long, required = true)]
    pub bootstrap: Vec<String>,
    /// The user agent's key file (created if missing; default ~/.agentwire/user.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// NEAR RPC (endpoint registry and payments).
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    pub near_rpc: String,
    /// The channel contract.
    #[arg(long, default_value = "channels.devnet")]
    pub contract: String,
    /// Do not check the endpoint registry (the brands' NEAR accounts are then unverified).
    #[arg(long)]
    pub skip_registry_check: bool,
    /// Require `Authorization: Bearer <token>` on every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Allow a non-loopback listen address (only with --token).
    #[arg(long, requires = "token")]
    pub allow_remote: bool,
    #[command(flatten)]
    pub payer: PayerArgs,
}

pub fn run(args: GatewayArgs, json: bool) -> Result<(), String> {
    let path = args.key.clone().unwrap_or_else(|| super::default_key_path("user"));
    let identity = Arc::new(keyfile::load_or_create(&path).map_err(|e| e.to_string())?);
    let registry = if args.skip_registry_check {
        None
    } else {
        Some(ChannelClient::new(&args.near_rpc, &args.contract).map_err(|e| e.to_string())?)
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let payer = args.payer.build(&args.near_rpc, &args.contract)?;
        let user =
            UserAgent::start(identity, super::multiaddrs(&args.bootstrap)?, registry, TransportLimits::default())
                .await
                .map_err(|e| e.to_string())?;
        let paying = payer.as_ref().map(|p| p.account().id.to_string());
        let gw = Arc::new(Gateway::new(user, payer, args.token.clone()));
        let addr = gateway::start(gw, args.listen, args.allow_remote).await.map_err(|e| e.to_string())?;
        if json {
            println!("{}", serde_json::json!({ "listen": addr.to_string(), "payer": paying }));
        } else {
            println!("gateway on http://{addr}");
            match &paying {
                Some(a) => println!("  paying from {a}"),
                None => println!("  no payer: only free services (pass --near-account and --near-key-file)"),
            }
            println!("  POST /v1/query/<account>/<service>   GET /v1/channels   Ctrl-C stops it");
        }
        super::shutdown_signal().await;
        Ok(())
    })
}
