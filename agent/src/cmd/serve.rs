//! `agentwire serve --config brand.toml`: a brand agent until Ctrl-C.

use std::path::PathBuf;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::quic::TransportLimits;

/// Options of `agentwire serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The brand's TOML configuration (see README).
    #[arg(long)]
    pub config: PathBuf,
    /// More DHT bootstrap peers (added to the configuration's).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// PostgreSQL URL of the money store this brand's endpoints share (a
    /// fleet); overrides `payments.store_url`, and AGENTWIRE_STORE_URL overrides the file.
    #[arg(long)]
    pub store_url: Option<String>,
}

pub fn run(args: ServeArgs, json: bool) -> Result<(), String> {
    let mut config = BrandConfig::load(&args.config).map_err(|e| e.to_string())?;
    config.bootstrap.extend(args.bootstrap);
    let store_url = args.store_url.or_else(|| std::env::var("AGENTWIRE_STORE_URL").ok().filter(|u| !u.is_empty()));
    if let Some(url) = store_url {
        let payments = config.payments.as_mut().ok_or("--store-url: the configuration has no [payments] section")?;
        payments.store_url = Some(url);
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let running = brand::start(config, TransportLimits::default()).await.map_err(|e| match &e {
            brand::BrandError::Dht(d) => format!("{e}\n  {}", d.action()),
            _ => e.to_string(),
        })?;
        let r = running.record.record();
        let p2p = running.dht.listen_addrs().await.map_err(|e| e.to_string())?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "agent_id": r.agent_id().to_string(),
                    "near_account": r.near_account.as_str(),
                    "quic": r.quic_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "p2p": p2p.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "services": r.services.iter().map(|s| serde_json::json!({"name": s.name, "price": s.price.to_string()})).collect::<Vec<_>>(),
                    "metrics": running.metrics.map(|m| m.to_string()),
                })
            );
        } else {
            println!("brand agent {} for {}", r.agent_id(), r.near_account.as_str());
            println!("  sessions on {}", r.quic_addrs[0]);
            for a in &p2p {
                println!("  DHT on {a}");
            }
            for s in &r.services {
                println!("  service {:<16} price {}", s.name, s.price);
            }
            if let Some(m) = running.metrics {
                println!("  metrics on http://{m}/metrics");
            }
            println!("Ctrl-C stops it (sessions close gracefully).");
        }
        super::shutdown_signal().await;
        // Closes sessions, then claims everything durable on chain.
        let report = running.shutdown().await;
        if json {
            let pairs = |v: &[(u64, u128)]| {
                v.iter().map(|(id, a)| serde_json::json!({"channel": id, "amount": a.to_string()})).collect::<Vec<_>>()
            };
            println!(
                "{}",
                serde_json::json!({"stopped": true, "claimed": pairs(&report.claimed), "unclaimed": pairs(&report.unclaimed), "left_to_fleet": report.left_to_fleet})
            );
        } else {
            for (id, total) in &report.claimed {
                println!("claimed channel {id} on chain: {total} in total");
            }
            if report.left_to_fleet {
                println!("another endpoint of the fleet makes the claims");
            }
            for (id, amount) in &report.unclaimed {
                println!("channel {id}: {amount} not claimed (the claim failed); the voucher is kept and claimed after the next start");
            }
            println!("stopped");
        }
        Ok(())
    })
}
