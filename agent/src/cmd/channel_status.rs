//! `agentwire channel status`: every channel the account pays into, as the
//! chain has it (open, closing with the time left, finalizable), with what
//! this payer signed on each, read from its store or through a running
//! gateway. It never guesses: if the chain cannot be read it says so and
//! fails.

use std::collections::HashMap;

use agentwire_agent::near::{ChannelClient, ChannelView};
use agentwire_agent::pay::ChannelStatus;
use agentwire_agent::units;
use serde_json::{json, Value};

use super::channel::{challenge_end, fast_forward_hint, ChainArgs};
use super::{money, CliError};

/// What the payer signed on a channel, as its store (or a gateway) says.
#[derive(Clone, Debug)]
struct Signed {
    signed: u128,
    unconfirmed: bool,
    charged: u128,
}

/// Where a channel is in its life.
enum State {
    Open,
    Closing { ends_ns: u64, left_secs: u64 },
    Finalizable { since_ns: u64 },
}

fn state(c: &ChannelView, now_ns: u64) -> State {
    match challenge_end(c) {
        None => State::Open,
        Some(ends_ns) if now_ns < ends_ns => {
            State::Closing { ends_ns, left_secs: (ends_ns - now_ns).div_ceil(1_000_000_000) }
        }
        Some(since_ns) => State::Finalizable { since_ns },
    }
}

/// The payer's signed totals by channel id: from its store (needs the key
/// file) or through a gateway; `None` when neither was given.
async fn signed_totals(
    chain: &ChainArgs,
    gateway: Option<&str>,
    token: Option<&str>,
) -> Result<Option<HashMap<u64, Signed>>, CliError> {
    let list: Vec<ChannelStatus> = if let Some(url) = gateway {
        from_gateway(url, token).await?
    } else if chain.payer.near_key_file.is_some() {
        let payer = chain
            .payer
            .build(&chain.near_rpc, &chain.contract)?
            .ok_or_else(|| CliError::usage("give --near-account"))?;
        payer.status().await?
    } else {
        return Ok(None);
    };
    Ok(Some(
        list.into_iter()
            .map(|s| (s.channel_id, Signed { signed: s.signed, unconfirmed: s.signed_unconfirmed, charged: s.charged }))
            .collect(),
    ))
}

/// A gateway's `GET /v1/channels`.
async fn from_gateway(url: &str, token: Option<&str>) -> Result<Vec<ChannelStatus>, CliError> {
    let endpoint = format!("{}/v1/channels", url.trim_end_matches('/'));
    let unreachable = |e: &dyn std::fmt::Display| {
        CliError::new(
            "GatewayUnreachable",
            format!("the gateway at {url} did not answer: {e}"),
            "start it (`agentwire gateway …`) or pass its --listen address as --gateway http://ADDR",
        )
    };
    let mut req = reqwest::Client::new().get(&endpoint).timeout(std::time::Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| unreachable(&e))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| unreachable(&e))?;
    if !status.is_success() {
        let e = &body["error"];
        return Err(CliError::new(
            e["code"].as_str().unwrap_or("GatewayError"),
            format!("the gateway answered {status}: {}", e["message"].as_str().unwrap_or("no message")),
            e["action"].as_str().unwrap_or("see the gateway's log"),
        ));
    }
    let list = body["channels"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|c| {
            let amount = |k: &str| c[k].as_str().and_then(|s| s.parse().ok()).unwrap_or(0u128);
            Ok(ChannelStatus {
                payee: c["payee"].as_str().unwrap_or_default().to_owned(),
                currency: c["currency"].as_str().unwrap_or_default().to_owned(),
                channel_id: c["channel_id"].as_u64().ok_or_else(|| unreachable(&"a channel without an id"))?,
                epoch: c["epoch"].as_u64().unwrap_or(0),
                deposit: amount("deposit"),
                signed: amount("signed"),
                charged: amount("charged"),
                signed_unconfirmed: c["signed_unconfirmed"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

pub(crate) async fn run(
    chain: &ChainArgs,
    gateway: Option<&str>,
    token: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let name = chain
        .payer
        .near_account
        .as_ref()
        .ok_or_else(|| CliError::usage("give --near-account: the account whose channels to list"))?;
    let client = ChannelClient::new(&chain.near_rpc, &chain.contract)?;
    let account: near_api::AccountId =
        name.parse().map_err(|_| CliError::usage(format!("--near-account {name:?} is not a NEAR account id")))?;
    // The chain is the truth: without it nothing is said (a listing from
    // the store alone could hide a channel, or show a closed one as open).
    let not_read = |e: agentwire_agent::near::NearError| {
        let action = format!("{}; nothing is listed without the chain", e.action());
        CliError::new(e.code(), format!("cannot read {name}'s channels from NEAR: {e}"), action)
    };
    let views: Vec<ChannelView> =
        client.channels_of(&account).await.map_err(not_read)?.into_iter().filter(|c| c.payer == account).collect();
    let now_ns = client.chain_time_ns().await.map_err(not_read)?;
    let storage = client.storage_balance_of(&account).await.map_err(not_read)?;
    let signed = signed_totals(chain, gateway, token).await?;

    if json {
        let list: Vec<Value> = views.iter().map(|c| channel_json(c, now_ns, signed.as_ref())).collect();
        println!(
            "{}",
            json!({ "account": name, "channels": list, "storage_balance": storage.to_string(), "chain_time_ns": now_ns.to_string() })
        );
        return Ok(());
    }
    if views.is_empty() {
        println!("{name} pays into no channel on {}", chain.contract);
    }
    for c in &views {
        print_channel(&client, c, now_ns, signed.as_ref(), &chain.near_rpc).await;
    }
    if signed.is_none() && !views.is_empty() {
        println!("(what was signed on each: give --near-key-file, or --gateway URL while a gateway runs)");
    }
    if storage > 0 {
        let open = views.iter().any(|c| c.closing_since_ns.is_none());
        println!(
            "unused storage deposit on {}: {}{}",
            chain.contract,
            units::near(storage),
            if open { "" } else { " (`agentwire channel withdraw-storage` takes it back)" }
        );
    }
    Ok(())
}

fn channel_json(c: &ChannelView, now_ns: u64, signed: Option<&HashMap<u64, Signed>>) -> Value {
    let (state, ends) = match state(c, now_ns) {
        State::Open => ("open", None),
        State::Closing { ends_ns, .. } => ("closing", Some(ends_ns)),
        State::Finalizable { since_ns } => ("finalizable", Some(since_ns)),
    };
    let mut v = json!({
        "channel_id": c.id,
        "epoch": c.epoch,
        "payee": c.payee.as_str(),
        "currency": c.currency.as_text(),
        "deposit": c.deposit.to_string(),
        "claimed": c.claimed.to_string(),
        "state": state,
        "closing_since_ns": c.closing_since_ns.map(|n| n.to_string()),
        "challenge_ends_ns": ends.map(|n| n.to_string()),
    });
    if let Some(s) = signed.and_then(|m| m.get(&c.id)) {
        v["signed"] = json!(s.signed.to_string());
        v["signed_unconfirmed"] = json!(s.unconfirmed);
        v["charged"] = json!(s.charged.to_string());
    }
    v
}

async fn print_channel(
    client: &ChannelClient,
    c: &ChannelView,
    now_ns: u64,
    signed: Option<&HashMap<u64, Signed>>,
    rpc: &str,
) {
    let show = |v: u128| money::show(Some(client), v, &c.currency);
    let what = match state(c, now_ns) {
        State::Open => "open".to_string(),
        State::Closing { ends_ns, left_secs } => format!(
            "closing: {} may claim until {} ({} left)",
            c.payee,
            units::date(ends_ns / 1_000_000_000),
            units::duration(left_secs)
        ),
        State::Finalizable { .. } => "closed, challenge period over: finalize it".to_string(),
    };
    println!("channel {}  to {}  {}", c.id, c.payee, what);
    let mut line = format!("  deposit {}, claimed by {} {}", show(c.deposit).await, c.payee, show(c.claimed).await);
    if let Some(s) = signed.and_then(|m| m.get(&c.id)) {
        let at_least = if s.unconfirmed { "at least " } else { "" };
        line.push_str(&format!(", signed {at_least}{}, charged {}", show(s.signed).await, show(s.charged).await));
    }
    println!("{line}");
    match state(c, now_ns) {
        State::Open => println!("  next: queries pay from it; `agentwire channel close --payee {}` ends it", c.payee),
        State::Closing { left_secs, .. } => {
            println!("  next: `agentwire channel finalize --channel-id {}` once the period is over", c.id);
            if let Some(hint) = fast_forward_hint(rpc, left_secs) {
                println!("  {hint}");
            }
        }
        State::Finalizable { .. } => println!("  next: `agentwire channel finalize --channel-id {}`", c.id),
    }
}
