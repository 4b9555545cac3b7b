//! `agentwire channel open|status|top-up|close|finalize|withdraw-storage`:
//! the payer's channels by hand (queries open and top up channels on their
//! own). `status` reads every channel of the account from the chain and
//! the payer's signed totals from its store or from a running gateway;
//! `close`, `finalize` and `withdraw-storage` need only the chain and the
//! account's key, so they work while a gateway holds the store.

use agentwire_agent::near::{ChannelClient, ChannelView, NearAccount};
use agentwire_agent::pay::Payer;
use agentwire_agent::units;

use super::channel_status;
use super::payer_args::PayerArgs;
use super::{money, progress, CliError};

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
    /// Every channel of the account on chain (open, closing, finalizable) with what was signed.
    Status {
        #[command(flatten)]
        chain: ChainArgs,
        /// Read the signed totals through a running gateway (it holds the payment store).
        #[arg(long, value_name = "URL")]
        gateway: Option<String>,
        /// The gateway's bearer token, if it has one.
        #[arg(long, requires = "gateway")]
        token: Option<String>,
    },
    /// Open a channel with a deposit.
    Open {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        which: Which,
        /// Deposit, in the currency's units (e.g. 1.5 for 1.5 NEAR).
        #[arg(long)]
        deposit: String,
    },
    /// Add to a channel's deposit.
    TopUp {
        #[command(flatten)]
        chain: ChainArgs,
        #[command(flatten)]
        which: Which,
        /// Amount, in the currency's units (e.g. 0.5 for 0.5 NEAR).
        #[arg(long)]
        amount: String,
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
        /// The channel id (`agentwire channel status` lists them).
        #[arg(long)]
        channel_id: u64,
    },
    /// Take back the account's unused storage deposit on the channel contract.
    WithdrawStorage {
        #[command(flatten)]
        chain: ChainArgs,
    },
}

/// The paying account and a client of its contract.
pub(crate) fn account(chain: &ChainArgs) -> Result<(ChannelClient, NearAccount), CliError> {
    let name = chain
        .payer
        .near_account
        .as_ref()
        .ok_or_else(|| CliError::usage("give --near-account (and --near-key-file) of the paying account"))?;
    Ok((ChannelClient::new(&chain.near_rpc, &chain.contract)?, chain.payer.near_account(name)?))
}

fn payer(chain: &ChainArgs) -> Result<Payer, CliError> {
    chain
        .payer
        .build(&chain.near_rpc, &chain.contract)?
        .ok_or_else(|| CliError::usage("give --near-account and --near-key-file"))
}

/// The account's open channel with `payee` in `currency`, from the chain.
async fn open_channel(client: &ChannelClient, me: &NearAccount, which: &Which) -> Result<ChannelView, CliError> {
    let currency = money::currency(&which.currency)?;
    let mine = client.channels_of(&me.id).await?;
    mine.into_iter()
        .filter(|c| c.payer == me.id && c.payee.as_str() == which.payee && c.currency == currency)
        .filter(|c| c.closing_since_ns.is_none())
        .max_by_key(|c| c.id)
        .ok_or_else(|| {
            CliError::new(
                "NoChannel",
                format!("{} has no open channel with {} in {}", me.id, which.payee, currency.as_text()),
                "`agentwire channel status` lists the account's channels",
            )
        })
}

/// When a closing channel's challenge period ends, ns (chain time).
pub(crate) fn challenge_end(c: &ChannelView) -> Option<u64> {
    c.closing_since_ns.map(|since| since.saturating_add(c.challenge_period_ns))
}

/// How to skip ahead on the local devnet (only said for a loopback RPC).
pub(crate) fn fast_forward_hint(rpc: &str, secs: u64) -> Option<String> {
    let local = rpc.contains("127.0.0.1") || rpc.contains("localhost") || rpc.contains("[::1]");
    local.then(|| {
        format!(
            "on the local devnet, skip ahead with: curl -s -X POST {rpc} -H 'content-type: application/json' \
             -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox_fast_forward\",\"params\":{{\"delta_height\":{}}}}}'",
            secs + 1
        )
    })
}

pub fn run(cmd: ChannelCmd, json: bool) -> Result<(), CliError> {
    let rt = super::runtime()?;
    rt.block_on(async {
        match cmd {
            ChannelCmd::Status { chain, gateway, token } => {
                channel_status::run(&chain, gateway.as_deref(), token.as_deref(), json).await
            }
            ChannelCmd::Open { chain, which, deposit } => open(&chain, &which, &deposit, json).await,
            ChannelCmd::TopUp { chain, which, amount } => top_up(&chain, &which, &amount, json).await,
            ChannelCmd::Close { chain, which } => close(&chain, &which, json).await,
            ChannelCmd::Finalize { chain, channel_id } => finalize(&chain, channel_id, json).await,
            ChannelCmd::WithdrawStorage { chain } => withdraw_storage(&chain, json).await,
        }
    })
}

async fn open(chain: &ChainArgs, which: &Which, deposit: &str, json: bool) -> Result<(), CliError> {
    let p = payer(chain)?;
    let client = ChannelClient::new(&chain.near_rpc, &chain.contract)?;
    let currency = money::currency(&which.currency)?;
    let deposit = money::parse(&client, deposit, &currency, "--deposit").await?;
    // One channel per payee and currency: a second `open` would silently
    // return the first with its own deposit, not the one asked for.
    if let Ok(existing) = p.load(&which.payee, &currency).await {
        return Err(CliError::new(
            "ChannelAlreadyOpen",
            format!(
                "channel {} with {} is already open, with a deposit of {}",
                existing.channel_id,
                which.payee,
                money::show(Some(&client), existing.deposit, &currency).await
            ),
            format!("add to it: agentwire channel top-up --payee {} --amount <amount>", which.payee),
        ));
    }
    progress(json, format!("opening a channel with {} on NEAR …", which.payee));
    let s = p.open(&which.payee, &currency, deposit).await?;
    if json {
        println!("{}", serde_json::to_value(&s).unwrap_or_default());
    } else {
        println!(
            "channel {} open with {}: deposit {}",
            s.channel_id,
            s.payee,
            money::show(Some(&client), s.deposit, &currency).await
        );
    }
    Ok(())
}

async fn top_up(chain: &ChainArgs, which: &Which, amount: &str, json: bool) -> Result<(), CliError> {
    let p = payer(chain)?;
    let client = ChannelClient::new(&chain.near_rpc, &chain.contract)?;
    let currency = money::currency(&which.currency)?;
    let amount = money::parse(&client, amount, &currency, "--amount").await?;
    let loaded = p.load(&which.payee, &currency).await?;
    progress(
        json,
        format!("adding {} to channel {} …", money::show(Some(&client), amount, &currency).await, loaded.channel_id),
    );
    let deposit = p.top_up(&which.payee, &currency, amount).await?;
    if json {
        println!("{}", serde_json::json!({ "channel_id": loaded.channel_id, "deposit": deposit.to_string() }));
    } else {
        println!("channel {}: deposit now {}", loaded.channel_id, money::show(Some(&client), deposit, &currency).await);
    }
    Ok(())
}

async fn close(chain: &ChainArgs, which: &Which, json: bool) -> Result<(), CliError> {
    let (client, me) = account(chain)?;
    let c = open_channel(&client, &me, which).await?;
    progress(json, format!("starting the close of channel {} with {} on NEAR …", c.id, c.payee));
    let (ends_ns, _) = client.start_close(&me, c.id).await?;
    let now_ns = client.chain_time_ns().await.unwrap_or(ends_ns.saturating_sub(c.challenge_period_ns));
    let left = ends_ns.saturating_sub(now_ns) / 1_000_000_000;
    if json {
        println!(
            "{}",
            serde_json::json!({ "channel_id": c.id, "challenge_ends_ns": ends_ns.to_string(), "seconds_left": left })
        );
    } else {
        println!(
            "channel {} is closing: {} may claim until {} ({} from now, chain time)",
            c.id,
            c.payee,
            units::date(ends_ns / 1_000_000_000),
            units::duration(left)
        );
        println!("then run `agentwire channel finalize --channel-id {}` to take back the rest", c.id);
        if let Some(hint) = fast_forward_hint(&chain.near_rpc, left) {
            println!("{hint}");
        }
    }
    Ok(())
}

async fn finalize(chain: &ChainArgs, id: u64, json: bool) -> Result<(), CliError> {
    let (client, me) = account(chain)?;
    let Some(c) = client.get_channel(id).await? else {
        return Err(CliError::new(
            "NoChannel",
            format!("there is no channel {id} on {} (finalized already, or never opened)", chain.contract),
            "`agentwire channel status` lists the account's channels",
        ));
    };
    let Some(ends_ns) = challenge_end(&c) else {
        return Err(CliError::new(
            "ChannelOpen",
            format!("channel {id} is open: a close has not been started"),
            format!(
                "start one with `agentwire channel close --payee {}`, then finalize after its challenge period",
                c.payee
            ),
        ));
    };
    let now_ns = client.chain_time_ns().await?;
    if now_ns < ends_ns {
        let left = (ends_ns - now_ns).div_ceil(1_000_000_000);
        let mut action =
            format!("wait until {} (chain time), then run this again", units::date(ends_ns.div_ceil(1_000_000_000)));
        if let Some(hint) = fast_forward_hint(&chain.near_rpc, left) {
            action = format!("{action}; {hint}");
        }
        return Err(CliError::new(
            "ChallengePeriod",
            format!(
                "channel {id} is in its challenge period for {} more: {} may still claim",
                units::duration(left),
                c.payee
            ),
            action,
        ));
    }
    progress(json, format!("finalizing channel {id} on NEAR …"));
    let outcome = client.finalize(&me, id).await?;
    let back = c.deposit.saturating_sub(c.claimed);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "finalized": id, "returned": back.to_string(), "claimed": c.claimed.to_string(),
                "currency": c.currency.as_text(), "gas_yocto": outcome.tokens_burnt.to_string(),
            })
        );
    } else {
        println!(
            "channel {id} finalized: {} back to {}, {} claimed by {} (gas {})",
            money::show(Some(&client), back, &c.currency).await,
            c.payer,
            money::show(Some(&client), c.claimed, &c.currency).await,
            c.payee,
            units::near(outcome.tokens_burnt)
        );
        println!("the storage deposit stays with the contract until `agentwire channel withdraw-storage`");
    }
    Ok(())
}

async fn withdraw_storage(chain: &ChainArgs, json: bool) -> Result<(), CliError> {
    let (client, me) = account(chain)?;
    let unused = client.storage_balance_of(&me.id).await?;
    if unused == 0 {
        return Err(CliError::new(
            "NothingToWithdraw",
            format!("{} has no unused storage balance on {}", me.id, chain.contract),
            "nothing to do: open channels keep the storage they use until they are finalized",
        ));
    }
    progress(json, format!("withdrawing {} of storage deposit …", units::near(unused)));
    let before = client.near_balance(&me.id).await?;
    let outcome = client.storage_withdraw(&me, None).await?;
    let after = client.near_balance(&me.id).await?;
    // What came back: the balance's rise plus the gas and the 1 yoctoNEAR the call cost.
    let back = (after + outcome.tokens_burnt + 1).saturating_sub(before);
    if json {
        println!(
            "{}",
            serde_json::json!({ "withdrawn": back.to_string(), "gas_yocto": outcome.tokens_burnt.to_string() })
        );
    } else {
        println!(
            "{} of storage deposit back to {} (gas {})",
            units::near(back),
            me.id,
            units::near(outcome.tokens_burnt)
        );
    }
    Ok(())
}
