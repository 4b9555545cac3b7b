//! `agentwire lookup`: what the DHT says about an account or a service:
//! each agent's verified record (when it was published, when it expires),
//! and with `--check` whether the agent answers now. A stopped brand's
//! record stays on the DHT until it expires, so "listed" is not "running".

use std::sync::Arc;
use std::time::Instant;

use agentwire_agent::catalog::{price_text_with, pricing_json};
use agentwire_agent::near::ChannelClient;
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::units;
use agentwire_agent::user::{Lookup, UserAgent, UserConfig};
use agentwire_protocol::identity::LocalIdentity;
use agentwire_protocol::money::Currency;
use agentwire_protocol::record::SignedRecord;
use rand_core::OsRng;
use serde_json::{json, Value};

use super::{money, CliError};

/// Options of `agentwire lookup`.
#[derive(clap::Args, Debug)]
pub struct LookupArgs {
    /// A NEAR account.
    #[arg(long, conflicts_with = "service")]
    pub account: Option<String>,
    /// A service name.
    #[arg(long)]
    pub service: Option<String>,
    /// DHT bootstrap peers.
    #[arg(long, required = true)]
    pub bootstrap: Vec<String>,
    /// Where the DHT client listens (e.g. /ip4/127.0.0.1/udp/0/quic-v1); default: nowhere, it only dials.
    #[arg(long)]
    pub p2p_listen: Vec<String>,
    /// Where the session endpoint binds (for --check).
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
    /// Also open a session to each agent, to see whether it answers now.
    #[arg(long)]
    pub check: bool,
    /// NEAR RPC, only to read the decimals of token-priced services.
    #[arg(long, default_value = "http://127.0.0.1:3030")]
    pub near_rpc: String,
}

/// Whether an agent answered a session attempt, and how fast.
enum Checked {
    Answered(std::time::Duration),
    Silent(String),
}

pub fn run(args: LookupArgs, json: bool) -> Result<(), CliError> {
    let lookup = match (&args.account, &args.service) {
        (Some(a), None) => Lookup::Account(money::account(a, "--account")?),
        (None, Some(s)) => Lookup::Service(s.clone()),
        _ => return Err(CliError::usage("give --account or --service")),
    };
    let chain = ChannelClient::new(&args.near_rpc, "channels.devnet").ok();
    let rt = super::runtime()?;
    rt.block_on(async {
        // A throwaway identity: looking up reveals nothing about the user.
        let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
        let mut config = UserConfig::new(super::multiaddrs(&args.bootstrap)?);
        config.dht.listen = super::multiaddrs(&args.p2p_listen)?;
        config.quic_bind = args.bind;
        let user = UserAgent::start_with(identity, config, None, TransportLimits::default()).await?;
        let mut result = user.find(&lookup).await;
        for _ in 0..6 {
            if !result.as_ref().is_err_and(|e| e.retry_may_help()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            result = user.find(&lookup).await;
        }
        let peers = user.dht().routing_table_size().await.unwrap_or(0);
        let records = result?;
        let mut checks = Vec::new();
        for rec in &records {
            checks.push(if args.check { Some(check(&user, rec).await) } else { None });
        }
        let now = units::now_secs();
        for (rec, checked) in records.iter().zip(&checks) {
            let prices = prices(rec, chain.as_ref()).await;
            if json {
                println!("{}", record_json(rec, &prices, checked.as_ref()));
            } else {
                print_record(rec, &prices, checked.as_ref(), chain.as_ref(), now).await;
            }
        }
        if !json {
            println!("({} record(s); {peers} peer(s) in the routing table)", records.len());
            if !args.check {
                println!(
                    "A record stays on the DHT until it expires, even after its agent stopped: --check asks each agent."
                );
            }
        }
        Ok(())
    })
}

async fn check(user: &UserAgent, rec: &SignedRecord) -> Checked {
    let started = Instant::now();
    match user.session(rec).await {
        Ok(conn) => {
            let took = started.elapsed();
            conn.close();
            Checked::Answered(took)
        }
        Err(e) => Checked::Silent(e.to_string()),
    }
}

/// What each service of `rec` costs, in words and in its currency's units
/// (a token's decimals read from the chain), in the record's order.
async fn prices(rec: &SignedRecord, chain: Option<&ChannelClient>) -> Vec<String> {
    let mut out = Vec::new();
    for s in &rec.record().services {
        let decimals = money::decimals(chain, &s.currency).await;
        out.push(price_text_with(s, |v| units::amount(v, &s.currency, decimals)));
    }
    out
}

/// Everything a client in another language needs to verify the record
/// itself (spec §6): its bytes, keys and signature, plus what was decoded:
/// each service's interface and pricing (amounts as decimal strings in the
/// smallest unit) and its price in words.
fn record_json(rec: &SignedRecord, prices: &[String], checked: Option<&Checked>) -> Value {
    let r = rec.record();
    let mut v = json!({
        "agent_id": r.agent_id().to_string(),
        "near_account": r.near_account.as_str(),
        "identity_key": hex::encode(r.identity.to_bytes()),
        "noise_static": hex::encode(r.noise_static.as_bytes()),
        "quic": r.quic_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "p2p": r.p2p_addrs,
        "services": r.services.iter().zip(prices).map(|(s, text)| json!({
            "name": s.name,
            "description": s.description,
            "price": s.price.to_string(),
            "currency": s.currency.as_text(),
            "interface": s.interface.name(),
            "pricing": pricing_json(s),
            "price_text": text,
        })).collect::<Vec<_>>(),
        "channel_contract": r.channel_contract.as_str(),
        "min_deposit": r.min_deposit.to_string(),
        "seq": r.seq,
        "expires_at": r.expires_at,
        "signature": hex::encode(rec.signature()),
        "record": hex::encode(rec.encoded()),
    });
    match checked {
        Some(Checked::Answered(took)) => {
            v["answered"] = json!(true);
            v["answer_ms"] = json!(took.as_millis() as u64);
        }
        Some(Checked::Silent(why)) => {
            v["answered"] = json!(false);
            v["error"] = json!(why);
        }
        None => {}
    }
    v
}

async fn print_record(
    rec: &SignedRecord,
    prices: &[String],
    checked: Option<&Checked>,
    chain: Option<&ChannelClient>,
    now: u64,
) {
    let r = rec.record();
    println!("agent {} for {}", r.agent_id(), r.near_account.as_str());
    for a in &r.quic_addrs {
        println!("  sessions   {a}");
    }
    for a in &r.p2p_addrs {
        println!("  DHT        {a}");
    }
    // The spec recommends the publication time as the sequence number.
    if (1_000_000_000..=now + 300).contains(&r.seq) {
        println!("  published  {}", units::when(r.seq, now));
    } else {
        println!("  sequence   {}", r.seq);
    }
    println!("  expires    {}", units::when(r.expires_at, now));
    // The least deposit is in the currency the channel is funded in: that of the priced services.
    let currency = r.services.iter().find(|s| s.price > 0).map_or(Currency::Near, |s| s.currency.clone());
    println!(
        "  payments   contract {}, least deposit {}",
        r.channel_contract.as_str(),
        money::show(chain, r.min_deposit, &currency).await
    );
    // What it speaks, then what it costs, in the currency's units.
    for (s, price) in r.services.iter().zip(prices) {
        let about = if s.description.is_empty() { String::new() } else { format!(": {}", s.description) };
        println!("  service    {} ({}){about}", s.name, s.interface.name());
        println!("             {price}");
    }
    match checked {
        Some(Checked::Answered(took)) => println!("  answered   a session opened in {} ms", took.as_millis()),
        Some(Checked::Silent(why)) => println!("  NOT ANSWERING  {why}"),
        None => {}
    }
}
