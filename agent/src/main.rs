//! `agentwire`: the AgentWire command.

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
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Walkthrough => walkthrough::run(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
