//! The `agentwire` subcommands other than `devnet` and `walkthrough`.

pub mod bootstrap;
pub mod channel;
pub mod channel_status;
pub mod error;
pub mod gateway;
pub mod identity;
pub mod lookup;
#[cfg(feature = "mcp")]
pub mod mcp;
pub mod money;
pub mod payer_args;
pub mod query;
pub mod serve;
pub mod user_args;

use std::path::PathBuf;

pub use error::CliError;

/// The directory of the agent's files: `~/.agentwire`.
pub fn home_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".agentwire")
}

/// The one naming scheme for key files: `~/.agentwire/<role>.key`. Every
/// command that acts as an agent (`identity`, `query`, `gateway`) uses the
/// role `agent`; a DHT bootstrap node uses `bootstrap`. A brand names its
/// key file in its configuration.
pub fn default_key_path(role: &str) -> PathBuf {
    home_dir().join(format!("{role}.key"))
}

/// The agent key file: `--key` if given, else `~/.agentwire/agent.key`.
pub fn agent_key_path(key: &Option<PathBuf>) -> PathBuf {
    key.clone().unwrap_or_else(|| default_key_path("agent"))
}

/// A multi-thread tokio runtime for a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        CliError::new("Runtime", format!("cannot start the async runtime: {e}"), "check the system's limits")
    })
}

/// Parses libp2p addresses given on the command line.
pub fn multiaddrs(list: &[String]) -> Result<Vec<libp2p::Multiaddr>, CliError> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                CliError::new(
                    "BadAddress",
                    format!("{a:?} is not a libp2p address: {e}"),
                    "write it as /ip4/<IP>/udp/<port>/quic-v1 (or /tcp/<port>), with /p2p/<peer id> for a bootstrap peer",
                )
            })
        })
        .collect()
}

/// A step that takes a while, said on stderr as it starts (not under `--json`,
/// whose output is only the result).
pub fn progress(json: bool, text: impl std::fmt::Display) {
    if !json {
        eprintln!("{text}");
    }
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
