//! `agentwire`: the AgentWire command.

mod devnet_cmd;
mod walkthrough;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agentwire", version, about = "Private, pay-per-query messaging between AI agents")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Walk through the protocol in-process: record, handshake, encrypted paid query, receipt.
    Walkthrough,
    /// Run a local NEAR devnet with the channel contract, a USDC-like token and funded accounts.
    Devnet(devnet_cmd::DevnetArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Walkthrough => walkthrough::run(),
        Command::Devnet(args) => devnet_cmd::run(args).map_err(Into::into),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
