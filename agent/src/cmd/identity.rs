//! `agentwire identity create|show`.

use std::path::PathBuf;

use agentwire_agent::keyfile;

/// Identity subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum IdentityCmd {
    /// Create a new identity (never overwrites one).
    Create {
        /// Key file (default ~/.agentwire/agent.key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Show an identity's agent id and public keys.
    Show {
        /// Key file (default ~/.agentwire/agent.key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

pub fn run(cmd: IdentityCmd, json: bool) -> Result<(), String> {
    let (path, identity) = match cmd {
        IdentityCmd::Create { key } => {
            let path = key.unwrap_or_else(|| super::default_key_path("agent"));
            let id = keyfile::create(&path).map_err(|e| e.to_string())?;
            (path, id)
        }
        IdentityCmd::Show { key } => {
            let path = key.unwrap_or_else(|| super::default_key_path("agent"));
            let id = keyfile::load(&path).map_err(|e| e.to_string())?;
            (path, id)
        }
    };
    let agent = identity.agent_id().to_string();
    let key = hex::encode(identity.identity.public().to_bytes());
    let noise = hex::encode(identity.noise.public().as_bytes());
    if json {
        println!(
            "{}",
            serde_json::json!({ "key_file": path, "agent_id": agent, "identity_key": key, "noise_static_key": noise })
        );
    } else {
        println!("agent id          {agent}");
        println!("identity key      {key}   (register it with `register_endpoint` for your NEAR account)");
        println!("noise static key  {noise}");
        println!("key file          {}", path.display());
    }
    Ok(())
}
