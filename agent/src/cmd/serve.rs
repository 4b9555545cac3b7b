//! `agentwire serve --config brand.toml`: a brand agent until Ctrl-C or
//! SIGTERM. `--listen`, `--p2p-listen` and `--metrics` override the
//! configuration's addresses, so moving ports needs no edit of the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use agentwire_agent::brand::{self, BrandError};
use agentwire_agent::config::BrandConfig;
use agentwire_agent::near::ChannelClient;
use agentwire_agent::pay::store::Store;
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::units;
use agentwire_protocol::money::Currency;

use super::{money, progress, CliError};

/// Options of `agentwire serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The brand's TOML configuration (see examples/brand.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// More DHT bootstrap peers (added to the configuration's).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Where agent sessions listen (QUIC), instead of the configuration's `listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where the DHT node listens, instead of the configuration's `p2p_listen` (repeat for several).
    #[arg(long)]
    pub p2p_listen: Vec<String>,
    /// Where Prometheus metrics are served, instead of the configuration's `metrics`.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// PostgreSQL URL of the money store this brand's endpoints share (a
    /// fleet); overrides `payments.store_url`, and AGENTWIRE_STORE_URL overrides the file.
    #[arg(long)]
    pub store_url: Option<String>,
}

/// The configuration with the command line's overrides.
fn configure(args: &ServeArgs) -> Result<BrandConfig, CliError> {
    let mut config = BrandConfig::load(&args.config)
        .map_err(|e| CliError::new("Config", &e, "fix the configuration file (see examples/brand.toml)"))?;
    config.bootstrap.extend(args.bootstrap.iter().cloned());
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.p2p_listen.is_empty() {
        config.p2p_listen = args.p2p_listen.clone();
    }
    if args.metrics.is_some() {
        config.metrics = args.metrics;
    }
    let store_url =
        args.store_url.clone().or_else(|| std::env::var("AGENTWIRE_STORE_URL").ok().filter(|u| !u.is_empty()));
    if let Some(url) = store_url {
        let payments = config.payments.as_mut().ok_or_else(|| {
            CliError::new(
                "Config",
                "--store-url: the configuration has no [payments] section",
                "add a [payments] section (see examples/brand.toml) or drop --store-url",
            )
        })?;
        payments.store_url = Some(url);
    }
    Ok(config)
}

/// A start failure; a payment store in use names the process holding it.
fn start_error(e: BrandError, config: &BrandConfig) -> CliError {
    let store = config.payments.as_ref().and_then(|p| p.store.clone());
    match (&e, store) {
        // The brand says "payments.store DIR: store directory is locked …".
        (BrandError::Config(text), Some(dir)) if text.starts_with("payments.store") && text.contains("locked") => {
            let holder = Store::lock_holder(&dir).unwrap_or_else(|| "another process".into());
            CliError::new(
                "StoreLocked",
                format!("the voucher store {} is in use by {holder}", dir.display()),
                "one brand process per store: stop that one, or give this brand its own `store` in [payments]",
            )
        }
        _ => e.into(),
    }
}

pub fn run(args: ServeArgs, json: bool) -> Result<(), CliError> {
    let config = configure(&args)?;
    let chain = config.payments.as_ref().and_then(|p| ChannelClient::new(&p.near_rpc, &config.channel_contract).ok());
    let rt = super::runtime()?;
    rt.block_on(async {
        if config.payments.is_some() {
            progress(json, format!("checking that {} lists this agent's key in the endpoint registry …", config.near_account));
        }
        let running =
            brand::start(config.clone(), TransportLimits::default()).await.map_err(|e| start_error(e, &config))?;
        let r = running.record.record();
        let p2p = running.dht.listen_addrs().await.map_err(CliError::from)?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "agent_id": r.agent_id().to_string(),
                    "near_account": r.near_account.as_str(),
                    "quic": r.quic_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "p2p": p2p.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "services": r.services.iter().map(|s| serde_json::json!({"name": s.name, "price": s.price.to_string(), "currency": s.currency.as_text()})).collect::<Vec<_>>(),
                    "metrics": running.metrics.map(|m| m.to_string()),
                    "expires_at": r.expires_at,
                })
            );
        } else {
            println!("brand agent {} for {}", r.agent_id(), r.near_account.as_str());
            println!("  sessions on {}", r.quic_addrs[0]);
            for a in &p2p {
                println!("  DHT on {a}   (others bootstrap from it: --bootstrap {a})");
            }
            for s in &config.services {
                let currency = Currency::parse(&s.currency).unwrap_or(Currency::Near);
                let mut price = money::price(chain.as_ref(), s.price.0, &currency).await;
                if s.price.0 > 0 {
                    price.push_str(" per query");
                }
                if let Some(i) = &s.increment {
                    price.push_str(&format!(
                        ", then {} per {} more chunks",
                        money::show(chain.as_ref(), i.price.0, &currency).await,
                        i.chunks
                    ));
                }
                println!("  service {:<12} {price}", s.name);
            }
            if let Some(m) = running.metrics {
                println!("  metrics on http://{m}/metrics");
            }
            if config.payments.is_some() {
                println!("  listed in the endpoint registry of {} for {}", config.channel_contract, config.near_account);
            } else {
                println!(
                    "  no [payments]: free services only, and this key is not listed in the endpoint registry \
                     (users then need --skip-registry-check, or run `agentwire identity register`)"
                );
            }
            println!(
                "  record published on the DHT; republished while this runs (it expires {} if not)",
                units::when(r.expires_at, units::now_secs())
            );
            println!("Ctrl-C stops it (sessions close gracefully).");
        }
        super::shutdown_signal().await;
        if running.payee.is_some() {
            progress(json, "stopping: closing sessions, then claiming what was charged on NEAR …");
        }
        // Closes sessions, then claims everything durable on chain.
        let report = running.shutdown().await;
        // Claims are per channel; amounts read in NEAR when every price is in NEAR.
        let all_near = config.services.iter().all(|s| s.price.0 == 0 || s.currency == "NEAR");
        let near = |v: u128| if all_near { units::near(v) } else { format!("{v} (smallest units)") };
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
                println!("claimed channel {id} on chain: {} in total", near(*total));
            }
            if report.left_to_fleet {
                println!("another endpoint of the fleet makes the claims");
            }
            for (id, amount) in &report.unclaimed {
                println!(
                    "channel {id}: {} not claimed (the claim failed); the voucher is kept and claimed after the next start",
                    near(*amount)
                );
            }
            println!("stopped");
        }
        Ok(())
    })
}
