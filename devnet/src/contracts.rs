//! The contracts the devnet is used with, as wasm: the AgentWire channel
//! contract, the devnet's NEP-141 token and its root's registrar. Taken from the file an
//! environment variable names (scripts/test.sh builds them once and sets
//! it), or built here with the chain flags into a target directory of their own.

use std::path::PathBuf;
use std::process::Command;

/// A contract this workspace builds for the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contract {
    /// `channel-contract/`: AgentWire payment channels.
    Channel,
    /// `devnet/token/`: a NEP-141 token standing in for USDC.
    Token,
    /// `devnet/registrar/`: the root's `create_account` for anyone.
    Registrar,
}

impl Contract {
    fn package(self) -> &'static str {
        match self {
            Contract::Channel => "agentwire-channel",
            Contract::Token => "agentwire-devnet-token",
            Contract::Registrar => "agentwire-devnet-registrar",
        }
    }

    /// The environment variable naming a prebuilt wasm.
    pub fn env_var(self) -> &'static str {
        match self {
            Contract::Channel => "AGENTWIRE_CONTRACT_WASM",
            Contract::Token => "AGENTWIRE_TOKEN_WASM",
            Contract::Registrar => "AGENTWIRE_REGISTRAR_WASM",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Contract::Channel => "agentwire_channel.wasm",
            Contract::Token => "agentwire_devnet_token.wasm",
            Contract::Registrar => "agentwire_devnet_registrar.wasm",
        }
    }

    /// The wasm bytes: from the environment variable's file, else built.
    pub fn wasm(self) -> Result<Vec<u8>, String> {
        if let Ok(path) = std::env::var(self.env_var()) {
            return std::fs::read(&path).map_err(|e| format!("{}={path}: {e}", self.env_var()));
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = root.join("target").join("contract-for-tests");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-C link-arg=-s --cfg near")
            .args(["build", "-p", self.package(), "--target", "wasm32-unknown-unknown", "--profile", "contract"])
            .status()
            .map_err(|e| format!("cannot run cargo to build {}: {e}", self.package()))?;
        if !status.success() {
            return Err(format!("building {} for wasm32 failed", self.package()));
        }
        let path = target.join("wasm32-unknown-unknown/contract").join(self.file());
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    }
}
