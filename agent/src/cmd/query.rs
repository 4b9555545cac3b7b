//! `agentwire query`: find a brand by account or service, connect, ask,
//! and stream the answer to stdout.

use std::io::Write;

use agentwire_agent::pay::query;
use agentwire_agent::user::Lookup;
use agentwire_protocol::account::AccountId;

/// Options of `agentwire query`.
#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// The brand's NEAR account (e.g. brand.near).
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

pub fn run(args: QueryArgs, json: bool) -> Result<(), String> {
    let lookup = match (&args.account, &args.find_service) {
        (Some(a), None) => Lookup::Account(AccountId::new(a).map_err(|_| format!("{a:?} is not a NEAR account id"))?),
        (None, Some(s)) => Lookup::Service(s.clone()),
        _ => return Err("give --account or --find-service".into()),
    };
    let service = args.service.clone().or(args.find_service.clone()).unwrap_or_else(|| "chat".into());
    let question = if args.question == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| e.to_string())?;
        s
    } else {
        args.question.clone()
    };
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
        let found = found.map_err(|e| match e {
            agentwire_agent::user::UserError::Registry(e) => format!(
                "{e}\n  the endpoint registry is on NEAR ({}, contract {}): start `agentwire devnet`, \
                 pass --near-rpc/--contract, or --skip-registry-check for pure messaging",
                args.user.near_rpc, args.user.contract
            ),
            other => format!("{other}\n  {}", other.action()),
        });
        let records = found?;
        let record = &records[0];
        let conn = user.session(record).await.map_err(|e| e.to_string())?;
        let outcome = query(&conn, record, &service, question.into_bytes(), payer.as_ref(), |chunk| {
            if !json {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(chunk).and_then(|_| out.flush());
            }
            async {}
        })
        .await
        .map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        if json {
            let r = record.record();
            let v = serde_json::json!({
                "agent_id": r.agent_id().to_string(),
                "near_account": r.near_account.as_str(),
                "service": service,
                "answer": String::from_utf8_lossy(&outcome.body),
                "paid": outcome.paid.to_string(),
                "receipt_cumulative": outcome.charged_total().map(|(_, c)| c.to_string()),
            });
            writeln!(out, "{v}").map_err(|e| e.to_string())?;
        } else {
            if !outcome.streamed {
                out.write_all(&outcome.body).map_err(|e| e.to_string())?;
            }
            writeln!(out).map_err(|e| e.to_string())?;
            if let Some((channel, total)) = outcome.charged_total() {
                eprintln!(
                    "paid {} (receipt verified; cumulative {} on channel {})",
                    outcome.paid, total, channel.channel_id
                );
            }
        }
        conn.close();
        Ok(())
    })
}
