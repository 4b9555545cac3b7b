//! near-api-js, the JavaScript client most NEAR apps use, drives the devnet
//! unchanged: `tests/js/devnet_near_api_js.mjs` (near-api-js pinned by
//! `tests/js/package-lock.json`, installed by `scripts/test.sh` with `npm ci`)
//! reads balances, transfers, creates an account through the root's registrar,
//! calls the channel contract with deposits, fails a call, has a stale nonce refused and retried, sends six transactions from
//! one key at once, and reads receipts, blocks, chunks and validators — every
//! NEAR balance checked to the yoctoNEAR. This test starts a provisioned
//! devnet on a free loopback port, hands the script the keys, and checks its
//! report against the chain.
//!
//! Without `node` or `tests/js/node_modules` the test prints a SKIPPED line
//! and passes, unless `AGENTWIRE_REQUIRE_NODE=1` (set by `scripts/test.sh`
//! once it has installed them), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentwire_agent::devnet::provision;
use agentwire_devnet::{Devnet, DevnetConfig, ONE_NEAR};
use serde_json::{json, Value};

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Why the script cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("`node` is not on PATH".into()),
    }
    let installed = js_dir().join("node_modules/near-api-js/package.json");
    if !installed.exists() {
        return Some(format!("{} is missing (run `npm ci` in tests/js)", installed.display()));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_api_js_drives_the_devnet_as_it_drives_near() {
    if let Some(why) = missing_prerequisite() {
        let required = std::env::var("AGENTWIRE_REQUIRE_NODE").is_ok_and(|v| v == "1");
        assert!(!required, "the near-api-js test cannot run: {why}");
        eprintln!("SKIPPED near_api_js_drives_the_devnet_as_it_drives_near: {why}");
        println!("SKIPPED near_api_js_drives_the_devnet_as_it_drives_near: {why}");
        return;
    }
    let devnet = Devnet::start(DevnetConfig::default()).expect("devnet starts");
    let ready = provision(&devnet, &["alice", "bob"], 100 * ONE_NEAR, 0).await.expect("provisioned");
    let [alice, bob] = [&ready.users[0], &ready.users[1]];

    let dir = std::env::temp_dir().join(format!("agentwire-near-api-js-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    let keys = json!({
        "rpc": devnet.rpc_url(),
        "root": devnet.root().account_id,
        "channels": ready.channels.to_string(),
        "alice": { "id": alice.account_id, "key": alice.secret_key.to_string() },
        "bob": { "id": bob.account_id, "key": bob.secret_key.to_string() },
    });
    std::fs::write(&config, keys.to_string()).unwrap();

    let script = js_dir().join("devnet_near_api_js.mjs");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(&script).arg(&config).current_dir(js_dir()).output().expect("node runs")
    })
    .await
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the near-api-js script failed:\n{stdout}\n{stderr}");

    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report in:\n{stdout}\n{stderr}"));
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(10), "every check ran: {report}");
    assert_eq!(report["errors_seen"]["InvalidNonceError"].as_u64().map(|n| n >= 2), Some(true), "{report}");
    // What the script saw is what the chain holds.
    assert_eq!(report["alice"], devnet.balance(alice.account_id.as_str()).to_string());
    assert_eq!(report["bob"], devnet.balance(bob.account_id.as_str()).to_string());
    let channel = report["channel_id"].as_str().expect("channel id").to_owned();
    let view = {
        let chain = devnet.chain();
        let args = json!({ "channel_id": channel }).to_string();
        chain.call_view(&ready.channels.as_str().parse().unwrap(), "get_channel", args.as_bytes()).unwrap().0
    };
    let view: Value = serde_json::from_slice(&view).unwrap();
    assert_eq!(view["deposit"], ONE_NEAR.to_string());
    assert_eq!(view["payer"], alice.account_id.as_str());
    println!("near-api-js: {report}");
}
