//! `agentwire query`: find a brand by account or service, connect, ask,
//! and stream the answer to stdout.

use std::io::Write;

use agentwire_agent::near::ChannelClient;
use agentwire_agent::pay::{query, PayError, Payer};
use agentwire_agent::user::Lookup;
use agentwire_protocol::record::SignedRecord;

use super::{money, progress, CliError};

/// Options of `agentwire query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The brand's NEAR account (e.g. bob.devnet).
    #[arg(long, conflicts_with = "find_service")]
    pub account: Option<String>,
    /// Find any agent offering this service (instead of an account).
    #[arg(long = "find-service")]
    pub find_service: Option<String>,
    /// The service to ask (default: the one searched for, or `chat`).
    #[arg(long)]
    pub service: Option<String>,
    /// The question; `-` reads it from stdin.
    pub question: String,
    #[command(flatten)]
    pub user: super::user_args::UserArgs,
}

/// The record's services, as a list for a message.
async fn offers(record: &SignedRecord, chain: Option<&ChannelClient>) -> String {
    let mut list = Vec::new();
    for s in &record.record().services {
        list.push(format!("{} ({})", s.name, money::price(chain, s.price, &s.currency).await));
    }
    list.join(", ")
}

pub fn run(args: QueryArgs, json: bool) -> Result<(), CliError> {
    let lookup = match (&args.account, &args.find_service) {
        (Some(a), None) => Lookup::Account(money::account(a, "--account")?),
        (None, Some(s)) => Lookup::Service(s.clone()),
        _ => return Err(CliError::usage("give --account or --find-service")),
    };
    let service = args.service.clone().or(args.find_service.clone()).unwrap_or_else(|| "chat".into());
    let question = if args.question == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CliError::new("Stdin", format!("reading the question from stdin: {e}"), "pipe text in"))?;
        s
    } else {
        args.question.clone()
    };
    let chain = ChannelClient::new(&args.user.near_rpc, &args.user.contract).ok();
    let rt = super::runtime()?;
    rt.block_on(async {
        let (user, payer) = args.user.start().await?;
        let mut found = user.find(&lookup).await;
        for _ in 0..10 {
            if !found.as_ref().is_err_and(|e| e.retry_may_help()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            found = user.find(&lookup).await;
        }
        let records = found?;
        let record = &records[0];
        let r = record.record();
        let Some(offer) = r.service(&service) else {
            return Err(CliError::new(
                "UnknownService",
                format!(
                    "{} offers no service {service:?}; it offers {}",
                    r.near_account.as_str(),
                    offers(record, chain.as_ref()).await
                ),
                "ask one of those with --service",
            ));
        };
        if let (Some(p), true) = (&payer, offer.price > 0) {
            announce_open(p, record, &offer.currency, offer.price, chain.as_ref(), json).await;
        }
        let conn = user.session(record).await?;
        let outcome = query(&conn, record, &service, question.into_bytes(), payer.as_ref(), |chunk| {
            if !json {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(chunk).and_then(|_| out.flush());
            }
            async {}
        })
        .await?;
        conn.close();
        let mut out = std::io::stdout().lock();
        let written = if json {
            let v = serde_json::json!({
                "agent_id": r.agent_id().to_string(),
                "near_account": r.near_account.as_str(),
                "service": service,
                "answer": String::from_utf8_lossy(&outcome.body),
                "paid": outcome.paid.to_string(),
                "currency": offer.currency.as_text(),
                "receipt_cumulative": outcome.charged_total().map(|(_, c)| c.to_string()),
                "channel_id": outcome.charged_total().map(|(c, _)| c.channel_id),
            });
            writeln!(out, "{v}")
        } else {
            let body = if outcome.streamed { Ok(()) } else { out.write_all(&outcome.body) };
            body.and_then(|_| writeln!(out))
        };
        written.map_err(|e| CliError::new("Stdout", format!("writing the answer: {e}"), "check where stdout goes"))?;
        if let (false, Some((channel, total))) = (json, outcome.charged_total()) {
            eprintln!(
                "paid {} (receipt verified; {} charged in total on channel {})",
                money::show(chain.as_ref(), outcome.paid, &offer.currency).await,
                money::show(chain.as_ref(), total, &offer.currency).await,
                channel.channel_id
            );
        }
        Ok(())
    })
}

/// Says, before the first paid query to a brand, that a channel is being
/// opened on chain (a transaction: the longest wait of a first query).
async fn announce_open(
    payer: &Payer,
    record: &SignedRecord,
    currency: &agentwire_protocol::money::Currency,
    price: u128,
    chain: Option<&ChannelClient>,
    json: bool,
) {
    let payee = record.record().near_account.as_str();
    if let Err(PayError::NoChannel) = payer.load(payee, currency).await {
        let deposit = payer.first_deposit(price, record.record().min_deposit);
        progress(
            json,
            format!(
                "opening a payment channel with {payee} on NEAR: deposit {} ({} queries at {}; --deposit-queries) …",
                money::show(chain, deposit, currency).await,
                payer.config().deposit_queries,
                money::show(chain, price, currency).await,
            ),
        );
    }
}
