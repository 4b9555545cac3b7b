//! `agentwire gateway`: the localhost HTTP API (see `agentwire_agent::gateway`).

use std::net::SocketAddr;
use std::sync::Arc;

use agentwire_agent::gateway::{self, Gateway};

/// Options of `agentwire gateway`.
#[derive(clap::Args, Debug)]
pub struct GatewayArgs {
    /// Where the HTTP API listens (loopback only unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:8402")]
    pub listen: SocketAddr,
    /// Require `Authorization: Bearer <token>` on every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Allow a non-loopback listen address (only with --token).
    #[arg(long, requires = "token")]
    pub allow_remote: bool,
    /// Service names `GET /v1/models` looks up on the DHT (brands already used are listed too).
    #[arg(long, default_value = "chat", value_delimiter = ',')]
    pub discover: Vec<String>,
    #[command(flatten)]
    pub user: super::user_args::UserArgs,
}

pub fn run(args: GatewayArgs, json: bool) -> Result<(), String> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let (user, payer) = args.user.start().await?;
        let paying = payer.as_ref().map(|p| p.account().to_owned());
        let gw = Arc::new(
            Gateway::new(user, payer, args.token.clone()).discover(args.discover.clone()).near_rpc(&args.user.near_rpc),
        );
        let addr = gateway::start(gw, args.listen, args.allow_remote).await.map_err(|e| e.to_string())?;
        if json {
            println!("{}", serde_json::json!({ "listen": addr.to_string(), "payer": paying }));
        } else {
            println!("gateway on http://{addr}");
            match &paying {
                Some(a) => println!("  paying from {a}"),
                None => println!("  no payer: only free services (pass --near-account and --near-key-file)"),
            }
            println!("  OpenAI-compatible: base_url http://{addr}/v1 (POST /v1/chat/completions, GET /v1/models)");
            println!("  POST /v1/query/<account>/<service>   GET /v1/channels   Ctrl-C stops it");
        }
        super::shutdown_signal().await;
        Ok(())
    })
}
