//! `agentwire gateway`: the localhost HTTP API (see `agentwire_agent::gateway`).

use std::net::SocketAddr;
use std::sync::Arc;

use agentwire_agent::gateway::{self, Gateway};

use super::CliError;

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

pub fn run(args: GatewayArgs, json: bool) -> Result<(), CliError> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let (user, payer) = args.user.start().await?;
        let paying = payer.as_ref().map(|p| p.account().to_owned());
        let gw = Arc::new(
            Gateway::new(user, payer, args.token.clone()).discover(args.discover.clone()).near_rpc(&args.user.near_rpc),
        );
        let addr = gateway::start(gw, args.listen, args.allow_remote).await.map_err(|e| {
            let action = if e.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "choose another port than {} with --listen (port 0 picks a free one), or stop what uses it",
                    args.listen.port()
                )
            } else {
                "use a loopback --listen address, or --allow-remote with --token".to_owned()
            };
            let code = if e.kind() == std::io::ErrorKind::AddrInUse { "PortInUse" } else { "CannotListen" };
            CliError::new(code, format!("cannot listen on {}: {e}", args.listen), action)
        })?;
        if json {
            println!("{}", serde_json::json!({ "listen": addr.to_string(), "payer": paying }));
        } else {
            println!("gateway on http://{addr}");
            match &paying {
                Some(a) => println!("  paying from {a}"),
                None => println!("  no payer: only free services (pass --near-account and --near-key-file)"),
            }
            println!("  OpenAI-compatible: base_url http://{addr}/v1 (POST /v1/chat/completions, GET /v1/models)");
            println!("  POST /v1/query/<account>/<service>   POST /v1/service/<service>   GET /v1/channels");
            println!("  `agentwire channel status --gateway http://{addr} --near-account …` reads its channels");
            println!("Ctrl-C stops it.");
        }
        super::shutdown_signal().await;
        Ok(())
    })
}
