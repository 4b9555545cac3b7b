//! `agentwire channel open|status|top-up|close|finalize`: the payer's
//! channels by hand (queries open and top up channels on their own).

use agentwire_agent::pay::{ChannelStatus, Payer};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::record::Currency;

use super::payer_args::PayerArgs;

/// Where the channels live.
#[derive(clap::Args, Debug)]
pub struct ChainArgs {
    /// NEAR RPC.
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    pub near_rpc: String,
    /// The channel contract.
    #[arg(long, default_value = "channels.devnet")]
    pub contract: String,
    #[command(flatten)]
    pub payer: PayerArgs,
}

/// Which channel.
#[derive(clap::Args, Debug)]
pub struct Which {
    /// The brand's NEAR account.
    #[arg(long)]
    pub payee: String,
    /// `NEAR` or a NEP-141 token account.
    #[arg(long, default_value = "NEAR")]
    pub currency: String,
}

/// `agentwire channel …`
#[derive(clap::Subcommand, Debug)]
pub enum ChannelCmd {
    /// List the payer's channels.
    Status {
        #[command(flatten)]
        chain: ChainArgs,
    },
    /// Open a channel with a deposit (smallest unit).
    Open {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        which: Which,
        /// Deposit, in the currency's smallest unit.
        #[arg(long)]
        deposit: u128,
    },
    /// Add to a channel's deposit.
    TopUp {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        which: Which,
        /// Amount, in the currency's smallest unit.
        #[arg(long)]
        amount: u128,
    },
    /// Start a unilateral close: the brand may still claim during the challenge period.
    Close {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        which: Which,
    },
    /// After the challenge period: take back what the brand did not claim.
    Finalize {
        #[command(flatten)]
        chain: ChainArgs,
        /// The channel id.
        #[arg(long)]
        channel_id: u64,
    },
}

fn currency(text: &str) -> Result<Currency, String> {
    if text == "NEAR" {
        Ok(Currency::Near)
    } else {
        AccountId::new(text).map(Currency::Token).map_err(|_| format!("{text:?} is neither NEAR nor a token account"))
    }
}

fn payer(chain: &ChainArgs) -> Result<Payer, String> {
    chain.payer.build(&chain.near_rpc, &chain.contract)?.ok_or_else(|| "give --near-account and --near-key-file".into())
}

fn print(list: &[ChannelStatus], json: bool) {
    if json {
        println!("{}", serde_json::to_string(list).unwrap_or_default());
        return;
    }
    if list.is_empty() {
        println!("no channels");
    }
    for s in list {
        println!(
            "channel {:>4}  epoch {}  payee {:<24} {:<12} deposit {:>28}  signed {}{:>28}",
            s.channel_id,
            s.epoch,
            s.payee,
            s.currency,
            s.deposit,
            if s.signed_unconfirmed { "at least " } else { "" },
            s.signed
        );
    }
}

pub fn run(cmd: ChannelCmd, json: bool) -> Result<(), String> {
    let rt = super::runtime()?;
    rt.block_on(async {
        match cmd {
            ChannelCmd::Status { chain } => print(&payer(&chain)?.status().await.map_err(|e| e.to_string())?, json),
            ChannelCmd::Open { chain, which, deposit } => {
                let s = payer(&chain)?
                    .open(&which.payee, &currency(&which.currency)?, deposit)
                    .await
                    .map_err(|e| e.to_string())?;
                print(&[s], json);
            }
            ChannelCmd::TopUp { chain, which, amount } => {
                let p = payer(&chain)?;
                let c = currency(&which.currency)?;
                p.load(&which.payee, &c).await.map_err(|e| e.to_string())?;
                let deposit = p.top_up(&which.payee, &c, amount).await.map_err(|e| e.to_string())?;
                if json {
                    println!("{}", serde_json::json!({ "deposit": deposit.to_string() }));
                } else {
                    println!("deposit now {deposit}");
                }
            }
            ChannelCmd::Close { chain, which } => {
                let p = payer(&chain)?;
                let c = currency(&which.currency)?;
                p.load(&which.payee, &c).await.map_err(|e| e.to_string())?;
                let (id, ends) = p.start_close(&which.payee, &c).await.map_err(|e| e.to_string())?;
                if json {
                    println!("{}", serde_json::json!({ "channel_id": id, "challenge_ends_ns": ends.to_string() }));
                } else {
                    println!(
                        "closing channel {id}; the brand may claim until {ends} (ns); then run `agentwire channel finalize --channel-id {id}`"
                    );
                }
            }
            ChannelCmd::Finalize { chain, channel_id } => {
                let gas = payer(&chain)?.finalize(channel_id).await.map_err(|e| e.to_string())?;
                if json {
                    println!("{}", serde_json::json!({ "finalized": channel_id, "gas_yocto": gas.to_string() }));
                } else {
                    println!("channel {channel_id} finalized; the unclaimed rest went back to the payer");
                }
            }
        }
        Ok(())
    })
}
