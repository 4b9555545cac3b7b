//! The `agentwire` subcommands other than `devnet` and `walkthrough`.

pub mod bootstrap;
pub mod channel;
pub mod gateway;
pub mod identity;
pub mod lookup;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod payer_args;
pub mod query;
pub mod serve;
pub mod user_args;

use std::path::PathBuf;

/// Where keys live by default.
pub fn default_key_path(name: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".agentwire").join(format!("{name}.key"))
}

/// A multi-thread tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

/// Parses libp2p addresses given on the command line.
pub fn multiaddrs(list: &[String]) -> Result<Vec<libp2p::Multiaddr>, String> {
    list.iter().map(|a| a.parse().map_err(|e| format!("{a:?} is not a libp2p address: {e}"))).collect()
}

/// Resolves on Ctrl-C or SIGTERM (what service managers send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
