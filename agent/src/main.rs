//! `agentwire`: the AgentWire command.

mod cmd;
mod demo;
mod devnet_cmd;
mod steps;
mod walkthrough;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: under a multi-thread runtime, buffers
/// freed on another worker than the one that allocated them made glibc's
/// arena locks the largest cost of a busy session (BENCHMARKS.md, sessions).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "agentwire", version, about = "Private, pay-per-query messaging between AI agents")]
struct Cli {
    /// Machine-readable JSON output instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log verbosity (error, warn, info, debug, trace); also RUST_LOG.
    #[arg(long, global = true, default_value = "warn,libp2p_kad=error")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything on this machine, no set-up: devnet, DHT, a brand, a user; paid queries, claim, close.
    Demo(demo::DemoArgs),
    /// Walk through the protocol in-process: record, handshake, encrypted paid query, receipt.
    Walkthrough,
    /// Run a local NEAR devnet with the channel contract, a USDC-like token and funded accounts.
    Devnet(devnet_cmd::DevnetArgs),
    /// Create or show an agent identity.
    #[command(subcommand)]
    Identity(cmd::identity::IdentityCmd),
    /// Run a DHT bootstrap node.
    Bootstrap(cmd::bootstrap::BootstrapArgs),
    /// Run a brand agent from a TOML configuration.
    Serve(cmd::serve::ServeArgs),
    /// Ask a brand agent something (found by NEAR account or service) and print the answer.
    Query(cmd::query::QueryArgs),
    /// Show what the DHT holds for an account or a service.
    Lookup(cmd::lookup::LookupArgs),
    /// The payer's payment channels: open, status, top-up, close, finalize.
    #[command(subcommand)]
    Channel(cmd::channel::ChannelCmd),
    /// A localhost HTTP API for agents in any language (discovery, encryption, payment behind it).
    Gateway(cmd::gateway::GatewayArgs),
    /// An MCP server on stdio: tools to find services, ask brands and show channels.
    #[cfg(feature = "mcp")]
    Mcp(cmd::mcp::McpArgs),
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.log.as_str()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let json = cli.json;
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, json).map_err(|e| {
            cmd::CliError::new("Demo", format!("the demo failed: {e}"), "run it again; `--log info` shows each step")
        }),
        Command::Walkthrough => walkthrough::run(json).map_err(|e| {
            cmd::CliError::new(
                "Walkthrough",
                format!("the walkthrough failed: {e}"),
                "report it: it runs in-process and should not fail",
            )
        }),
        Command::Devnet(args) => devnet_cmd::run(args, json),
        Command::Identity(c) => cmd::identity::run(c, json),
        Command::Bootstrap(a) => cmd::bootstrap::run(a, json),
        Command::Serve(a) => cmd::serve::run(a, json),
        Command::Query(a) => cmd::query::run(a, json),
        Command::Lookup(a) => cmd::lookup::run(a, json),
        Command::Channel(c) => cmd::channel::run(c, json),
        Command::Gateway(a) => cmd::gateway::run(a, json),
        #[cfg(feature = "mcp")]
        Command::Mcp(a) => cmd::mcp::run(a),
    };
    if let Err(e) = result {
        e.print(json);
        std::process::exit(1);
    }
}
