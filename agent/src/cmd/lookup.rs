//! `agentwire lookup`: inspect what the DHT says about an account or a
//! service (records, verified), and the routing table's size.

use std::sync::Arc;

use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{Lookup, UserAgent, UserConfig};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::LocalIdentity;
use rand_core::OsRng;

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
}

pub fn run(args: LookupArgs, json: bool) -> Result<(), String> {
    let lookup = match (&args.account, &args.service) {
        (Some(a), None) => Lookup::Account(AccountId::new(a).map_err(|_| format!("{a:?} is not a NEAR account id"))?),
        (None, Some(s)) => Lookup::Service(s.clone()),
        _ => return Err("give --account or --service".into()),
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        // A throwaway identity: looking up reveals nothing about the user.
        let identity = Arc::new(LocalIdentity::generate(&mut OsRng));
        let mut config = UserConfig::new(super::multiaddrs(&args.bootstrap)?);
        config.dht.listen = super::multiaddrs(&args.p2p_listen)?;
        let user = UserAgent::start_with(identity, config, None, TransportLimits::default())
            .await
            .map_err(|e| format!("{e}\n  {}", e.action()))?;
        let mut result = user.find(&lookup).await;
        for _ in 0..6 {
            if !result.as_ref().is_err_and(|e| e.retry_may_help()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            result = user.find(&lookup).await;
        }
        let peers = user.dht().routing_table_size().await.unwrap_or(0);
        let records = result.map_err(|e| format!("{e}\n  {}", e.action()))?;
        for rec in &records {
            let r = rec.record();
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "agent_id": r.agent_id().to_string(),
                        "near_account": r.near_account.as_str(),
                        "quic": r.quic_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                        "p2p": r.p2p_addrs,
                        "services": r.services.iter().map(|s| serde_json::json!({"name": s.name, "price": s.price.to_string(), "description": s.description})).collect::<Vec<_>>(),
                        "seq": r.seq,
                        "expires_at": r.expires_at,
                    })
                );
            } else {
                println!("{}  {}  seq {}  expires {}", r.agent_id(), r.near_account.as_str(), r.seq, r.expires_at);
                for a in &r.quic_addrs {
                    println!("  quic {a}");
                }
                for s in &r.services {
                    println!("  service {:<16} price {}  {}", s.name, s.price, s.description);
                }
            }
        }
        if !json {
            println!("({} record(s); {peers} peer(s) in the routing table)", records.len());
        }
        Ok(())
    })
}
