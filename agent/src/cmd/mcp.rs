//! `agentwire mcp`: AgentWire's tools for an AI assistant over MCP on stdio
//! (see `agentwire_agent::mcp`). Nothing but MCP is written to stdout; logs go to stderr.

use agentwire_agent::mcp::{serve_stdio, AgentWireTools};

use super::error::CliError;

/// Options of `agentwire mcp`.
#[derive(clap::Args, Debug)]
pub struct McpArgs {
    /// Service names `find_services` always looks up on the DHT (besides the words it is given).
    #[arg(long, default_value = "chat", value_delimiter = ',')]
    pub discover: Vec<String>,
    #[command(flatten)]
    pub user: super::user_args::UserArgs,
}

pub fn run(args: McpArgs) -> Result<(), CliError> {
    let rt = super::runtime()?;
    rt.block_on(async {
        let (user, payer) = args.user.start().await?;
        serve_stdio(AgentWireTools::new(user, payer, args.discover)).await.map_err(|e| {
            CliError::new(
                "Mcp",
                e,
                "check the MCP host's configuration for `agentwire mcp`; `--log info` on stderr shows each step",
            )
        })
    })
}
