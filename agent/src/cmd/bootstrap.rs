//! `agentwire bootstrap`: a DHT bootstrap node (server mode) until Ctrl-C.

use std::path::PathBuf;

use agentwire_agent::dht::{Dht, DhtConfig};
use agentwire_agent::keyfile;

use super::CliError;

/// Options of `agentwire bootstrap`.
#[derive(clap::Args, Debug)]
pub struct BootstrapArgs {
    /// Key file (created if missing; default ~/.agentwire/bootstrap.key).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// libp2p listen addresses.
    #[arg(long, default_values_t = ["/ip4/127.0.0.1/udp/4000/quic-v1".to_string(), "/ip4/127.0.0.1/tcp/4000".to_string()])]
    pub listen: Vec<String>,
    /// Other bootstrap nodes to join.
    #[arg(long)]
    pub bootstrap: Vec<String>,
}

pub fn run(args: BootstrapArgs, json: bool) -> Result<(), CliError> {
    let path = args.key.unwrap_or_else(|| super::default_key_path("bootstrap"));
    let identity = keyfile::load_or_create(&path)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let config = DhtConfig {
            listen: super::multiaddrs(&args.listen)?,
            bootstrap: super::multiaddrs(&args.bootstrap)?,
            server: true,
            // A bootstrap node starts even when the others are down: it is
            // what the others join, and it keeps trying to reach them.
            require_bootstrap: false,
            ..DhtConfig::default()
        };
        let dht = Dht::start(&identity.identity, config).await?;
        let addrs = dht.listen_addrs().await?;
        if json {
            println!("{}", serde_json::json!({ "peer_id": dht.peer_id().to_string(), "addresses": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>() }));
        } else {
            println!("bootstrap node {} — give agents one of:", dht.peer_id());
            for a in &addrs {
                println!("  --bootstrap {a}");
            }
            println!("Ctrl-C stops it.");
        }
        super::shutdown_signal().await;
        Ok(())
    })
}
