//! `agentwire demo`: the whole protocol on this machine with no set-up. A
//! local NEAR devnet with the channel contract, a DHT bootstrap node, a
//! brand agent with priced services and a user agent. The user discovers the
//! brand, checks it in the endpoint registry, opens a channel, runs paid
//! queries (one a metered stream), and verifies every receipt. The brand
//! claims, the user closes the channel, and the balances before and after
//! show where every yoctoNEAR went. `--serve` then keeps the network running
//! with a gateway for the README's Python example.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use agentwire_agent::brand;
use agentwire_agent::config::BrandConfig;
use agentwire_agent::devnet::provision;
use agentwire_agent::dht::Dht;
use agentwire_agent::gateway::{self, Gateway};
use agentwire_agent::near::{ChannelClient, NearAccount};
use agentwire_agent::pay::store::{Store, StoreConfig};
use agentwire_agent::pay::{query, Payer, PayerConfig, QueryOutcome};
use agentwire_agent::quic::TransportLimits;
use agentwire_agent::user::{Lookup, UserAgent};
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use agentwire_protocol::account::AccountId;
use agentwire_protocol::identity::{Keypair, LocalIdentity};
use agentwire_protocol::record::Currency;
use rand_core::OsRng;
use serde_json::json;

use crate::steps::{raw, Steps};
use crate::walkthrough::near;

type Error = Box<dyn std::error::Error>;

/// Options of `agentwire demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// After the demo, keep the network running with a gateway on this address (for the Python example).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8402")]
    pub serve: Option<SocketAddr>,
}

fn short(h: &[u8; 32]) -> String {
    hex::encode(&h[..6])
}

const BRAND_TOML: &str = r#"identity = "brand.key"
near_account = "brand.devnet"
listen = "127.0.0.1:0"
p2p_listen = ["/ip4/127.0.0.1/udp/0/quic-v1"]
bootstrap = ["BOOT"]

[payments]
near_rpc = "RPC"
near_key_file = "brand.near-key"
store = "brand-vouchers"
watch_every_secs = 1

[[service]]
name = "chat"
description = "Ask the brand (echo)"
price = "10000000000000000000000"
handler = { kind = "echo" }

[[service]]
name = "story"
description = "A story, word by word (metered: 0.005 NEAR per 3 more words)"
price = "20000000000000000000000"
increment = { chunks = 3, price = "5000000000000000000000" }
handler = { kind = "words" }

[[service]]
name = "hours"
description = "Opening hours (free)"
handler = { kind = "static", text = "Mon-Fri 9:00-18:00" }
"#;

fn print_receipt(out: Steps, o: &QueryOutcome) {
    if let Some(r) = &o.receipt {
        let c = &r.receipt;
        out.say(
            "receipt",
            format!(
                "     receipt: request {}…  response {}…  cumulative {}  channel {}  signed by the brand, verified",
                short(&c.request_hash),
                short(&c.response_hash),
                near(c.cumulative),
                c.channel_id
            ),
            json!({"request_hash": hex::encode(c.request_hash), "response_hash": hex::encode(c.response_hash),
                   "cumulative": raw(c.cumulative), "channel_id": c.channel_id, "verified": true}),
        );
    }
    if let Some(p) = &o.proof {
        let e = &p.entry;
        out.say(
            "receipt",
            format!(
                "     receipt: request {}…  response {}…  cumulative {}  channel {}  leaf {} of {} in the brand's signed batch {}, verified",
                short(&e.request_hash),
                short(&e.response_hash),
                near(e.cumulative),
                p.channel.channel_id,
                p.index + 1,
                p.count,
                p.seq
            ),
            json!({"request_hash": hex::encode(e.request_hash), "response_hash": hex::encode(e.response_hash),
                   "cumulative": raw(e.cumulative), "channel_id": p.channel.channel_id, "batch": p.seq,
                   "leaf": p.index, "leaves": p.count, "verified": true}),
        );
    }
}

/// The demo's temporary directory (keys, stores, the brand's TOML): removed
/// when the demo ends however it ends, a signal or a failed write included
/// (only SIGKILL leaves it).
struct DemoDir(std::path::PathBuf);

impl Drop for DemoDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the demo. SIGINT or SIGTERM stops it (its directory removed); a
/// closed stdout (SIGPIPE is ignored by Rust) fails a write and unwinds the same way.
pub fn run(args: DemoArgs, json: bool) -> Result<(), Error> {
    let out = Steps::new(json);
    let dir = DemoDir(std::env::temp_dir().join(format!("agentwire-demo-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    // Declared after `dir`, so dropped first: every task using the directory ends before it goes.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        tokio::select! {
            r = demo(args, &dir.0, out) => r,
            _ = crate::cmd::shutdown_signal() => {
                if !out.is_json() {
                    eprintln!("stopped; {} removed", dir.0.display());
                }
                Ok(())
            }
        }
    })
}

async fn demo(args: DemoArgs, dir: &std::path::Path, out: Steps) -> Result<(), Error> {
    let started = Instant::now();

    out.say(
        "start",
        "AgentWire demo: a local NEAR devnet, a DHT bootstrap node, a brand agent and a user agent\n",
        json!({"dir": dir.display().to_string()}),
    );
    let devnet = Devnet::start(DevnetConfig::default())?;
    let ready = provision(&devnet, &["brand", "alice"], 10 * ONE_NEAR, 0).await?;
    let secret = |who: &str| {
        ready.users.iter().find(|u| u.account_id.as_str() == who).map(|u| u.secret_key.to_string()).ok_or("account")
    };
    let chain = ChannelClient::new(&ready.rpc_url, ready.channels.as_str())?;
    out.say(
        "chain",
        format!(
            "1. Chain: devnet JSON-RPC on {}\n   channel contract {}, accounts brand.devnet and alice.devnet (10 NEAR each)",
            ready.rpc_url, ready.channels
        ),
        json!({"rpc_url": ready.rpc_url, "contract": ready.channels.as_str(),
               "accounts": ["brand.devnet", "alice.devnet"], "each": raw(10 * ONE_NEAR)}),
    );

    let (boot, boot_addr) = Dht::loopback_bootstrap().await?;
    let boot_addr = boot_addr.to_string();
    out.say("bootstrap", format!("2. DHT bootstrap node on {boot_addr}"), json!({"bootstrap": boot_addr}));

    agentwire_agent::keyfile::write_secret(&dir.join("brand.near-key"), &secret("brand.devnet")?)?;
    let toml = BRAND_TOML.replace("BOOT", &boot_addr).replace("RPC", &ready.rpc_url);
    std::fs::write(dir.join("brand.toml"), toml)?;
    let running = brand::start(BrandConfig::load(&dir.join("brand.toml"))?, TransportLimits::default()).await?;
    let mut text = format!(
        "3. Brand agent {} for brand.devnet ({})",
        running.identity.agent_id(),
        dir.join("brand.toml").display()
    );
    let mut services = Vec::new();
    for s in &running.record.record().services {
        let price = if s.price == 0 { "free".to_string() } else { near(s.price) };
        text.push_str(&format!("\n   {:<6} {:<12} {}", s.name, price, s.description));
        services.push(json!({"name": s.name, "price": raw(s.price), "description": s.description}));
    }
    text.push_str("\n   on start it registered its agent key for brand.devnet in the contract's endpoint registry");
    out.say(
        "brand",
        text,
        json!({"agent_id": running.identity.agent_id().to_string(), "account": "brand.devnet",
               "services": services, "registered": true}),
    );

    let alice_before = devnet.balance("alice.devnet");
    let brand_before = devnet.balance("brand.devnet");
    out.say(
        "balances_before",
        format!("4. Balances before: alice {}, brand {}", near(alice_before), near(brand_before)),
        json!({"alice": raw(alice_before), "brand": raw(brand_before)}),
    );

    let user = UserAgent::start(
        Arc::new(LocalIdentity::generate(&mut OsRng)),
        vec![boot_addr.parse()?],
        Some(chain.clone()),
        TransportLimits::default(),
    )
    .await?;
    let store = Store::open(&dir.join("alice-payer"), StoreConfig::default())?;
    let alice = NearAccount::new("alice.devnet", &secret("alice.devnet")?)?;
    let payer =
        Payer::near(chain.clone(), alice.clone(), Keypair::generate(&mut OsRng), store, PayerConfig::default())?;
    let lookup = Lookup::Account(AccountId::new("brand.devnet")?);
    let t = Instant::now();
    let mut found = user.find(&lookup).await;
    for _ in 0..50 {
        if found.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        found = user.find(&lookup).await;
    }
    let record = found?.into_iter().next().ok_or("no record")?;
    let found_ms = t.elapsed().as_millis();
    out.say(
        "found",
        format!(
            "5. Alice's agent found brand.devnet on the DHT in {found_ms} ms: agent {}, record signature valid, listed in the registry",
            record.record().agent_id()
        ),
        json!({"account": "brand.devnet", "agent_id": record.record().agent_id().to_string(), "ms": found_ms,
               "record_valid": true, "registered": true}),
    );
    let t = Instant::now();
    let conn = user.session(&record).await?;
    let session_ms = t.elapsed().as_millis();
    out.say(
        "session",
        format!("6. Session: QUIC + TLS 1.3, Noise IK bound to it, in {session_ms} ms"),
        json!({"handshake": "IK", "ms": session_ms}),
    );

    let status = payer.open("brand.devnet", &Currency::Near, ONE_NEAR).await?;
    out.say(
        "channel_open",
        format!(
            "7. Channel {} opened on chain: deposit {} from alice to brand.devnet",
            status.channel_id,
            near(status.deposit)
        ),
        json!({"channel_id": status.channel_id, "deposit": raw(status.deposit), "payer": "alice.devnet",
               "payee": "brand.devnet"}),
    );

    out.say(
        "paid_queries",
        "8. Paid queries (a voucher per query, persisted by the brand before it answers):",
        json!({}),
    );
    let mut paid = 0u128;
    for q in ["What's new?", "Do you ship to Lisbon?", "Thanks!"] {
        let o = query(&conn, &record, "chat", q.as_bytes().to_vec(), Some(&payer), |_| async {}).await?;
        let answer = String::from_utf8_lossy(&o.body);
        out.say(
            "answer",
            format!("   chat {q:?} -> {answer:?}  paid {}", near(o.paid)),
            json!({"service": "chat", "query": q, "answer": answer, "paid": raw(o.paid)}),
        );
        print_receipt(out, &o);
        paid += o.paid;
    }
    let free = query(&conn, &record, "hours", Vec::new(), Some(&payer), |_| async {}).await?;
    let answer = String::from_utf8_lossy(&free.body);
    out.say(
        "answer",
        format!("   hours -> {answer:?}  (free: no voucher, no receipt)"),
        json!({"service": "hours", "query": "", "answer": answer, "paid": raw(0)}),
    );
    if !out.is_json() {
        print!("   story (streamed, 0.005 NEAR per 3 more words): ");
    }
    let story = b"Once upon a time two agents met on a DHT and paid each other by the word".to_vec();
    let o = query(&conn, &record, "story", story, Some(&payer), |c| {
        use std::io::Write;
        let text = String::from_utf8_lossy(c);
        if out.is_json() {
            out.say("chunk", "", json!({"service": "story", "text": text}));
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        async {}
    })
    .await?;
    out.say(
        "answer",
        format!("\n     paid {} (price plus the increments the brand asked for mid-stream)", near(o.paid)),
        json!({"service": "story", "answer": String::from_utf8_lossy(&o.body), "streamed": true, "paid": raw(o.paid)}),
    );
    print_receipt(out, &o);
    paid += o.paid;

    let payee = running.payee.clone().ok_or("brand has no payee")?;
    let claims = payee.claim_due(true).await;
    let claimed: u128 = claims.iter().map(|c| c.1).sum();
    out.say(
        "claim",
        format!(
            "9. The brand claims its highest voucher on chain: {} (gas {})",
            near(claimed),
            near(payee.gas_burnt())
        ),
        json!({"claimed": raw(claimed), "gas": raw(payee.gas_burnt())}),
    );

    payer.start_close("brand.devnet", &Currency::Near).await?;
    devnet.fast_forward(3_601)?;
    payer.finalize(status.channel_id).await?;
    chain.storage_withdraw(&alice, None).await?;
    out.say(
        "channel_closed",
        "10. Alice closes the channel: start_close, the devnet skips the 1 h challenge period, finalize\n    \
         returns the unspent deposit; storage_withdraw returns the channel's storage deposit",
        json!({"channel_id": status.channel_id, "finalized": true, "storage_withdrawn": true}),
    );

    let alice_after = devnet.balance("alice.devnet");
    let brand_after = devnet.balance("brand.devnet");
    // Checked: a chain that paid more than the receipts add up to is a failure to report, not a panic.
    let alice_gas = alice_before.checked_sub(alice_after).and_then(|spent| spent.checked_sub(paid));
    let brand_gas = (brand_before + claimed).checked_sub(brand_after);
    let (Some(alice_gas), Some(brand_gas)) = (alice_gas, brand_gas) else {
        return Err(format!(
            "balances do not add up: alice {alice_before} -> {alice_after} after paying {paid}, \
             brand {brand_before} -> {brand_after} after claiming {claimed} (yoctoNEAR)"
        )
        .into());
    };
    if claimed != paid {
        return Err(format!("claimed {claimed} but alice paid {paid}").into());
    }
    out.say(
        "balances_after",
        format!(
            "11. Balances after: alice {}, brand {}\n    alice paid {} for answers + {} gas\n    \
             brand received {} − {} gas for the claim = {}\n    \
             the chain paid the brand exactly what alice's receipts add up to ({paid} yoctoNEAR)",
            near(alice_after),
            near(brand_after),
            near(paid),
            near(alice_gas),
            near(claimed),
            near(brand_gas),
            near(claimed - brand_gas)
        ),
        json!({"alice": raw(alice_after), "brand": raw(brand_after), "paid": raw(paid), "alice_gas": raw(alice_gas),
               "claimed": raw(claimed), "brand_gas": raw(brand_gas), "claimed_equals_paid": true}),
    );
    let secs = started.elapsed().as_secs_f64();
    out.say("done", format!("\nDone in {secs:.1} s."), json!({"seconds": secs}));

    if let Some(addr) = args.serve {
        let gw_payer = Payer::near(
            chain.clone(),
            alice.clone(),
            Keypair::generate(&mut OsRng),
            Store::open(&dir.join("gateway-payer"), StoreConfig::default())?,
            PayerConfig::default(),
        )?;
        let gw_user = UserAgent::start(
            Arc::new(LocalIdentity::generate(&mut OsRng)),
            vec![boot_addr.parse()?],
            Some(chain.clone()),
            TransportLimits::default(),
        )
        .await?;
        let local = gateway::start(Arc::new(Gateway::new(gw_user, Some(gw_payer), None)), addr, false).await?;
        out.say(
            "serving",
            format!(
                "\nStill running: gateway on http://{local} paying from alice.devnet. Try:\n  \
                 curl -s -X POST http://{local}/v1/query/brand.devnet/chat -d 'hello'\n  \
                 curl -N -X POST -H 'Accept: text/event-stream' http://{local}/v1/query/brand.devnet/story -d 'one two three four'\n  \
                 python3 examples/gateway.py brand.devnet http://{local}\nCtrl-C stops it."
            ),
            json!({"gateway": format!("http://{local}"), "payer": "alice.devnet", "brand": "brand.devnet"}),
        );
        // The signal ends `run`'s select, which drops all of this and removes the directory.
        std::future::pending::<()>().await;
    }
    conn.close();
    running.shutdown().await;
    drop(boot);
    Ok(())
}
